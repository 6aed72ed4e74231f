"""The load generator: a separate process that POSTs Alertmanager bodies over loopback.

`python -m bench.client` reads one JSON `LoadSpec` on stdin, builds every body before the
clock starts, sends them from `senders` asyncio tasks, each on its own keep-alive HTTP/1.1
connection (a minimal client: pre-encoded requests, Content-Length framing), and prints one
JSON `LoadResult` on stdout. Closed loop (each sender sends its next body when the previous
one is answered) unless `rate` is given: then body i is due at start + i / rate and its
latency counts from that due time, so a slow server cannot hide its queueing
(no coordinated omission).

Two loads: `sequential` (fingerprints f"{prefix}-{n:08d}", four labels, one fixed startsAt) and
`realistic`: what a fleet of node exporters sends through Alertmanager, each alert with a
16-hex-digit fingerprint, 8 to 12 labels and a startsAt of the last ten minutes. Both are
deterministic for a given prefix (seeded), so two servers given the same spec get the same bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

ZERO_TIME = "0001-01-01T00:00:00Z"
STARTS_AT = "2026-11-23T10:00:00Z"
LOADS = ("sequential", "realistic")


@dataclass
class LoadSpec:
    port: int
    alertname: str
    prefix: str  # sequential fingerprints are f"{prefix}-{n:08d}"; realistic ones are seeded by it
    bodies: int
    per_body: int
    senders: int = 16
    #: Cycle fingerprints over this many (the storm); None: every alert is distinct.
    fingerprints: int | None = None
    rate: float | None = None  # bodies per second, None: closed loop
    deadline_s: float = 120.0
    path: str = "/api/v1/alerts/alertmanager"
    #: Return each request's fingerprint and send time (wall clock), for the latency figure.
    record_sends: bool = False
    #: `sequential` or `realistic` (see the module's doc).
    load: str = "sequential"
    #: Realistic load: startsAt falls in the ten minutes before this (epoch seconds); 0: when built.
    now: float = 0.0


@dataclass
class LoadResult:
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    timed_out: bool = False
    first_send_wall: float = 0.0
    last_ok_wall: float = 0.0
    elapsed_s: float = 0.0  # first send to last 2xx answer
    latencies_ms: list[float] = field(default_factory=list)
    #: Open loop only: how late each body left against its due time (the client's own delay).
    lags_ms: list[float] = field(default_factory=list)
    sends: list[tuple[str, float]] = field(default_factory=list)  # (first fingerprint, wall time)


def fingerprint(spec: LoadSpec, n: int) -> str:
    k = n % spec.fingerprints if spec.fingerprints else n
    if spec.load == "realistic":
        return hashlib.blake2b(f"{spec.prefix}-{k}".encode(), digest_size=8).hexdigest()
    return f"{spec.prefix}-{k:08d}"


DEVICES = (
    ("nvme0n1p1", "ext4", "/"),
    ("nvme0n1p2", "xfs", "/var"),
    ("sda1", "ext4", "/boot"),
    ("sdb1", "xfs", "/data"),
    ("dm-0", "ext4", "/home"),
    ("tmpfs", "tmpfs", "/run"),
)
TEAMS = ("storage", "platform", "payments", "search", "identity", "data")
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1")
EXTRA = ("cluster", "region", "env", "prometheus")


def realistic_alert(spec: LoadSpec, n: int, now: float) -> dict[str, Any]:
    """A node-exporter filesystem alert as Alertmanager relays it: 8 to 12 labels, started lately."""
    fp = fingerprint(spec, n)
    rng = random.Random(fp)
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    device, fstype, mountpoint = rng.choice(DEVICES)
    region = rng.choice(REGIONS)
    labels = {
        "alertname": spec.alertname,
        "instance": f"{ip}:9100",
        "job": "node",
        "device": device,
        "fstype": fstype,
        "mountpoint": mountpoint,
        "severity": rng.choice(("warning", "critical")),
        "team": rng.choice(TEAMS),
    }
    extras = {
        "cluster": f"k8s-{region}-{rng.randrange(1, 9)}",
        "region": region,
        "env": rng.choice(("prod", "staging")),
        "prometheus": f"monitoring/prometheus-k8s-{rng.randrange(2)}",
    }
    for name in rng.sample(EXTRA, rng.randint(0, len(EXTRA))):
        labels[name] = extras[name]
    started = datetime.fromtimestamp(now, UTC) - timedelta(seconds=rng.uniform(0, 600))
    left = rng.uniform(1, 15)
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "summary": f"Filesystem on {device} at {ip}:9100 has {left:.1f}% available space left.",
            "description": "Filesystem is predicted to run out of space within the next 24 hours.",
            "runbook_url": "https://runbooks.example.org/node/nodefilesystemspacefillingup",
        },
        "startsAt": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "endsAt": ZERO_TIME,
        "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=node_filesystem_avail_bytes",
        "fingerprint": fp,
    }


def alert(spec: LoadSpec, n: int, now: float = 0.0) -> dict[str, Any]:
    if spec.load == "realistic":
        return realistic_alert(spec, n, now or spec.now or time.time())
    fp = fingerprint(spec, n)
    return {
        "status": "firing",
        "labels": {
            "alertname": spec.alertname,
            "instance": f"host-{fp}:9100",
            "job": "bench",
            "severity": "warning",
        },
        "annotations": {"summary": f"{spec.alertname} on host-{fp}", "description": "benchmark alert"},
        "startsAt": STARTS_AT,
        "endsAt": ZERO_TIME,
        "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up",
        "fingerprint": fp,
    }


def body(spec: LoadSpec, index: int, now: float = 0.0) -> bytes:
    first = index * spec.per_body
    job = "node" if spec.load == "realistic" else "bench"
    return orjson.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{spec.alertname}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "suture",
            "groupLabels": {"alertname": spec.alertname},
            "commonLabels": {"job": job},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.bench:9093",
            "alerts": [alert(spec, first + j, now) for j in range(spec.per_body)],
        }
    )


def request(spec: LoadSpec, payload: bytes) -> bytes:
    head = (
        f"POST {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, bool]:
    """Send one request, read one response; returns (status, server wants the connection closed)."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def run_load(spec: LoadSpec) -> LoadResult:
    now = spec.now or time.time()
    requests = [request(spec, body(spec, i, now)) for i in range(spec.bodies)]
    result = LoadResult()
    next_index = 0
    perf0, wall0 = time.perf_counter(), time.time()
    start = perf0 + 0.05  # let every sender connect first
    stop_at = start + spec.deadline_s
    first_send = float("inf")
    last_ok = 0.0

    async def sender() -> None:
        nonlocal next_index, first_send, last_ok
        reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        try:
            while next_index < len(requests):
                index = next_index
                next_index += 1
                due = start + index / spec.rate if spec.rate else time.perf_counter()
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                if time.perf_counter() > stop_at:
                    result.timed_out = True
                    return
                sent = time.perf_counter()
                first_send = min(first_send, sent)
                if spec.rate:
                    result.lags_ms.append((sent - due) * 1000)
                if spec.record_sends:
                    result.sends.append((fingerprint(spec, index * spec.per_body), wall0 + sent - perf0))
                try:
                    status, close = await asyncio.wait_for(
                        _exchange(reader, writer, requests[index]), max(0.1, stop_at - sent)
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
                    continue
                done = time.perf_counter()
                key = str(status)
                result.statuses[key] = result.statuses.get(key, 0) + 1
                result.sent += 1
                result.latencies_ms.append((done - (due if spec.rate else sent)) * 1000)
                if 200 <= status < 300:
                    last_ok = max(last_ok, done)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(spec.senders)))
    if result.sent:
        result.first_send_wall = wall0 + first_send - perf0
        result.last_ok_wall = wall0 + last_ok - perf0
        result.elapsed_s = max(0.0, last_ok - first_send)
    return result


def run_in_subprocess(spec: LoadSpec) -> LoadResult:
    """Run one load from a fresh `python -m bench.client` process (the client is never the driver)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.client"],
        input=orjson.dumps(asdict(spec)),
        capture_output=True,
        timeout=spec.deadline_s + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
    data = orjson.loads(done.stdout)
    data["sends"] = [tuple(s) for s in data["sends"]]
    return LoadResult(**data)


def main() -> None:
    spec = LoadSpec(**orjson.loads(sys.stdin.buffer.read()))
    result = asyncio.run(run_load(spec))
    sys.stdout.buffer.write(orjson.dumps(asdict(result)))


if __name__ == "__main__":
    main()
