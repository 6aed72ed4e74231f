"""The four scenarios of `all`, and `history` (bench/history.py), run only by name. Each starts its
own servers in a fresh directory, drives them with the client process, reads the outcome back from
SQLite and returns Figures.

Timestamps: the client records the wall-clock time of each send; the daemon stores its
own wall-clock times (same host, same clock). In the engine, `events.received_at`,
`alerts.received_at` and `runs.queued_at` are all one value taken by the intake writer
when its write transaction begins (after HTTP parsing, classification and the wait for
the writer), `runs.started_at` is the claim, and `step_results.started_at` is the moment
the first step's action began.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import daemon
from bench.client import LoadResult, LoadSpec, run_in_subprocess
from bench.report import Figure, percentile

MB = 1024 * 1024
UNFINISHED = ("queued", "running", "awaiting_approval")


@dataclass(frozen=True)
class Sizes:
    ingest_bodies: int = 2000  # per window
    ingest_windows: int = 3  # Suture and the ceiling take turns, one window each
    ingest_per_body: int = 10
    ingest_runs: int = 3
    warmup_bodies: int = 2000  # as long as the measured load: Suture starts its intake helper under load
    latency_alerts: int = 500
    latency_runs: int = 3
    storm_alerts: int = 100_000
    storm_fingerprints: int = 1000
    storm_per_body: int = 100
    storm_runs: int = 3
    footprint_starts: int = 5
    lookup_large: int = 40_000  # intake lookup (bench/lookup.py): one batch of this many alerts ...
    lookup_small: int = 4_000  # ... against one of this many
    lookup_runs: int = 3
    deadline_s: float = 120.0  # per load and per wait; a scenario never hangs


FULL = Sizes()
#: `bench ingest --db postgresql`: Suture stores a few times fewer alerts a second there than on
#: SQLite on this machine, so shorter windows (warm-up as long) keep the run within minutes.
FULL_PG = Sizes(ingest_bodies=800, warmup_bodies=800)
QUICK = Sizes(
    ingest_bodies=60,
    ingest_windows=1,
    ingest_runs=1,
    warmup_bodies=10,
    latency_alerts=20,
    latency_runs=1,
    storm_alerts=2000,
    storm_fingerprints=50,
    storm_runs=1,
    footprint_starts=1,
    lookup_large=4000,
    lookup_small=400,
    lookup_runs=1,
    deadline_s=30.0,
)


def _ts(text: str) -> float:
    """A stored naive-UTC timestamp as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _prefix_count(conn: sqlite3.Connection, table: str, prefix: str) -> int:
    query = f"SELECT COUNT(*) FROM {table} WHERE fingerprint >= ? AND fingerprint < ?"
    return int(conn.execute(query, (prefix + "-", prefix + ".")).fetchone()[0])


def _server_errors(result: LoadResult) -> int:
    return sum(n for status, n in result.statuses.items() if status.startswith("5")) + result.errors


def _load(server: daemon.Server, sizes: Sizes, **kwargs: object) -> LoadResult:
    spec = LoadSpec(port=server.port, deadline_s=sizes.deadline_s, **kwargs)  # type: ignore[arg-type]
    return run_in_subprocess(spec)


def _wait_runs_done(server: daemon.Server, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    query = f"SELECT COUNT(*) FROM runs WHERE status IN ({','.join('?' * len(UNFINISHED))})"
    with server.db() as conn:
        while time.monotonic() < deadline:
            if not conn.execute(query, UNFINISHED).fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


# ---------------------------------------------------------------- ingest


#: What each load of `bench ingest --load` sends (bench/client.py), for the figures' notes.
LOAD_NOTES = {
    "sequential": "load sequential (fingerprints prefix-00000001..., 4 labels, one fixed startsAt)",
    "realistic": "load realistic (random 16-hex fingerprints, 8-12 node-exporter labels,"
    " startsAt in the last 10 min)",
}
#: Share of the ceiling Suture should reach, by (backend, load).
SHARE_TARGETS = {("sqlite", "sequential"): 50, ("sqlite", "realistic"): 80}
PG_SHARE_TARGET = 60


def ingest(
    sizes: Sizes, work: Path, synchronous: str = "full", db: str = "sqlite", load: str = "realistic"
) -> list[Figure]:
    """Suture and its ceiling under the same load, window by window; `db` is the backend of both
    (sqlite: bench/ceiling.py; postgresql: bench/ceiling_pg.py, each on its own throwaway database)."""
    pg = db == "postgresql"
    tag = "ingest[postgresql]" if pg else "ingest"
    # The absolute rate's target was set for the sequential load; the realistic load is judged by
    # its share of the ceiling under the same load.
    absolute = not pg and load == "sequential"
    rate = Figure(
        f"{tag}: durable alerts/s",
        "alerts/s",
        op=">=" if absolute else None,
        target=10_000 if absolute else None,
    )
    ceiling = Figure(
        f"{tag}: ceiling alerts/s",
        "alerts/s",
        note="bare FastAPI + pydantic + psycopg, bench/ceiling_pg.py: per body one event row and its"
        " alert rows in one transaction, synchronous_commit=on, 8 connections"
        if pg
        else "bare FastAPI + pydantic + SQLite, bench/ceiling.py",
    )
    ratio = Figure(
        f"{tag}: share of ceiling",
        "%",
        op=">=",
        target=PG_SHARE_TARGET if pg else SHARE_TARGETS[(db, load)],
        note="Suture and the ceiling alternate windows of the same load, side by side; " + LOAD_NOTES[load],
    )
    p50 = Figure(f"{tag}: webhook p50, full load", "ms")
    p99 = Figure(f"{tag}: webhook p99, full load", "ms", op="<=" if pg else None, target=50 if pg else None)
    ceiling_p99 = Figure(f"{tag}: ceiling p99, full load", "ms")
    half_p50 = Figure(f"{tag}: webhook p50, half load", "ms")
    half_p99 = Figure(
        f"{tag}: webhook p99, half load",
        "ms",
        op="<=",
        target=50,
        note="open loop at half of the same run's measured rate, 16 senders, latency from the due time",
    )
    half_lag = Figure(f"{tag}: client send lag p99, half load", "ms", note="send time minus due time")
    lost = Figure(f"{tag}: bodies not answered 202", "", op="==", target=0, note="full + half load + ceiling")
    body = {"alertname": daemon.INGEST_ALERTNAME, "per_body": sizes.ingest_per_body, "load": load}
    for run in range(sizes.ingest_runs):
        # Both servers run side by side (the idle one uses no CPU) and take turns under the same
        # load, window by window: this machine's speed drifts over seconds, and alternating
        # lets Suture and the ceiling meet the same drift instead of one of them alone.
        with ExitStack() as stack:
            if pg:
                server = daemon.suture(
                    work / f"ingest-{run}", pg_name=stack.enter_context(daemon.pg_database())
                )
                bare = daemon.ceiling_pg(work / f"ceiling-{run}", stack.enter_context(daemon.pg_database()))
            else:
                server = daemon.suture(work / f"ingest-{run}", synchronous=synchronous)
                bare = daemon.ceiling(work / f"ceiling-{run}", synchronous)
            stack.enter_context(server)  # stopped before its database is dropped
            stack.enter_context(bare)
            server.start()
            bare.start()
            now = time.time()  # the realistic load's startsAt: the same bodies for both servers
            _load(server, sizes, prefix="w", bodies=sizes.warmup_bodies, now=now, **body)
            _load(bare, sizes, prefix="w", bodies=sizes.warmup_bodies, now=now, **body)
            # Stored alerts counted from the databases: what the windows added to the warm-up's.
            before, top_before = server.count("alerts"), bare.count("alerts")
            fulls: list[LoadResult] = []
            tops: list[LoadResult] = []
            for window in range(sizes.ingest_windows):
                now = time.time()
                spec: dict[str, object] = {
                    "prefix": f"i{window}",
                    "bodies": sizes.ingest_bodies,
                    "now": now,
                    **body,
                }
                fulls.append(_load(server, sizes, **spec))
                tops.append(_load(bare, sizes, **spec))
            stored = server.count("alerts") - before
            top_stored = bare.count("alerts") - top_before
            elapsed = sum(r.elapsed_s for r in fulls)
            top_elapsed = sum(r.elapsed_s for r in tops)
            bodies_per_s = sum(r.sent for r in fulls) / elapsed if elapsed else float("nan")
            half = _load(
                server, sizes, prefix="h", bodies=sizes.ingest_bodies, rate=bodies_per_s / 2, now=now, **body
            )
        suture_rate = stored / elapsed if elapsed else float("nan")
        top_rate = top_stored / top_elapsed if top_elapsed else float("nan")
        rate.values.append(suture_rate)
        ceiling.values.append(top_rate)
        ratio.values.append(100 * suture_rate / top_rate)
        latencies = [ms for r in fulls for ms in r.latencies_ms]
        p50.values.append(percentile(latencies, 50))
        p99.values.append(percentile(latencies, 99))
        ceiling_p99.values.append(percentile([ms for r in tops for ms in r.latencies_ms], 99))
        half_p50.values.append(percentile(half.latencies_ms, 50))
        half_p99.values.append(percentile(half.latencies_ms, 99))
        half_lag.values.append(percentile(half.lags_ms, 99))
        lost.values.append(sum(sizes.ingest_bodies - r.statuses.get("202", 0) for r in (*fulls, half, *tops)))
    return [rate, ceiling, ratio, p50, p99, ceiling_p99, half_p50, half_p99, half_lag, lost]


def lookup(sizes: Sizes, work: Path, synchronous: str = "full") -> list[Figure]:
    """The store-level intake lookup figure (bench/lookup.py), SQLite, part of `bench ingest`."""
    from bench.lookup import lookup as store_lookup

    return store_lookup(work, sizes.lookup_large, sizes.lookup_small, sizes.lookup_runs, synchronous)


# --------------------------------------------------------------- latency


def latency(sizes: Sizes, work: Path, synchronous: str = "full") -> list[Figure]:
    p50 = Figure(
        "latency: send to first step, p50",
        "ms",
        op="<=",
        target=20,
        note="client send time (wall clock) to step_results.started_at of step 0",
    )
    p99 = Figure("latency: send to first step, p99", "ms", op="<=", target=100)
    q50 = Figure("latency: queued_at to first step, p50", "ms", note="stored pair: runs.queued_at to step 0")
    q99 = Figure("latency: queued_at to first step, p99", "ms")
    a50 = Figure("latency: send to 202, p50", "ms")
    a99 = Figure("latency: send to 202, p99", "ms")
    missing = Figure("latency: alerts without a first step", "", op="==", target=0)
    auto = {"alertname": daemon.AUTO_ALERTNAME, "per_body": 1, "senders": 1}
    for run in range(sizes.latency_runs):
        with daemon.suture(work / f"latency-{run}", synchronous=synchronous) as server:
            server.start()
            _load(server, sizes, prefix="w", bodies=sizes.warmup_bodies // 10 or 1, **auto)
            _wait_runs_done(server, sizes.deadline_s)
            result = _load(server, sizes, prefix="l", bodies=sizes.latency_alerts, record_sends=True, **auto)
            _wait_runs_done(server, sizes.deadline_s)
            with server.db() as conn:
                rows = conn.execute(
                    "SELECT i.fingerprint, r.queued_at, s.started_at FROM incidents i"
                    " JOIN runs r ON r.incident_id = i.id"
                    " JOIN step_results s ON s.run_id = r.id AND s.seq = 0"
                    " WHERE i.fingerprint >= 'l-' AND i.fingerprint < 'l.'"
                ).fetchall()
        sent_at = dict(result.sends)
        from_send = [(_ts(step) - sent_at[fp]) * 1000 for fp, _queued, step in rows if fp in sent_at]
        from_queue = [(_ts(step) - _ts(queued)) * 1000 for _fp, queued, step in rows]
        p50.values.append(percentile(from_send, 50))
        p99.values.append(percentile(from_send, 99))
        q50.values.append(percentile(from_queue, 50))
        q99.values.append(percentile(from_queue, 99))
        a50.values.append(percentile(result.latencies_ms, 50))
        a99.values.append(percentile(result.latencies_ms, 99))
        missing.values.append(sizes.latency_alerts - len(from_send))
    return [p50, p99, q50, q99, a50, a99, missing]


# ----------------------------------------------------------------- storm


@dataclass
class StormOutcome:
    seconds: float
    stored_seconds: float
    incidents: int
    runs: int
    succeeded: int
    alerts: int
    server_errors: int
    peak_rss: int
    rss_after: int
    problems: list[str]


def _log_summary(server: daemon.Server) -> list[str]:
    """The daemon's log (level warning and up) as counted `event: error` lines."""
    seen: Counter[str] = Counter()
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            detail = entry.get("error") or str(entry.get("exception", "")).strip().rsplit("\n", 1)[-1]
            seen[f"{entry.get('event')}: {detail}"[:200]] += 1
    return [f"log {n}x {text}" for text, n in seen.most_common(5)]


def storm_once(sizes: Sizes, folder: Path, synchronous: str = "full") -> StormOutcome:
    with daemon.suture(folder, synchronous=synchronous) as server:
        server.start()
        result = _load(
            server,
            sizes,
            alertname=daemon.AUTO_ALERTNAME,
            prefix="s",
            bodies=sizes.storm_alerts // sizes.storm_per_body,
            per_body=sizes.storm_per_body,
            fingerprints=sizes.storm_fingerprints,
        )
        finished = _wait_runs_done(server, sizes.deadline_s)
        peak, rss = server.peak_rss(), server.rss()
        with server.db() as conn:
            incidents = conn.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
            runs, succeeded, last = conn.execute(
                "SELECT COUNT(*), SUM(status = 'succeeded'), MAX(finished_at) FROM runs"
            ).fetchone()
            alerts = _prefix_count(conn, "alerts", "s")
            others = conn.execute(
                "SELECT status, substr(coalesce(error, ''), 1, 200), COUNT(*) FROM runs"
                " WHERE status != 'succeeded' GROUP BY 1, 2"
            ).fetchall()
        problems = [f"{n} runs {status}: {error}" for status, error, n in others] + _log_summary(server)
    end = max(result.last_ok_wall, _ts(last) if last else 0.0)
    seconds = end - result.first_send_wall if finished and not result.timed_out else float("nan")
    return StormOutcome(
        seconds=seconds,
        stored_seconds=result.elapsed_s if not result.timed_out else float("nan"),
        incidents=incidents,
        runs=runs,
        succeeded=succeeded or 0,
        alerts=alerts,
        server_errors=_server_errors(result),
        peak_rss=peak,
        rss_after=rss,
        problems=problems,
    )


def storm(sizes: Sizes, work: Path, synchronous: str = "full") -> tuple[list[Figure], list[StormOutcome]]:
    fps = sizes.storm_fingerprints
    figures = {
        "seconds": Figure("storm: all stored and every run finished", "s", op="<=", target=30),
        "stored_seconds": Figure("storm: first send to last 202", "s"),
        "incidents": Figure("storm: incidents", "", op="==", target=fps),
        "runs": Figure("storm: runs", "", op="==", target=fps),
        "succeeded": Figure("storm: runs succeeded", "", op="==", target=fps),
        "alerts": Figure("storm: alerts stored", "", op="==", target=sizes.storm_alerts),
        "server_errors": Figure("storm: 5xx or connection errors", "", op="==", target=0),
        "peak_rss": Figure("storm: daemon peak RSS (VmHWM)", "MB", op="<=", target=300),
    }
    outcomes = [storm_once(sizes, work / f"storm-{run}", synchronous) for run in range(sizes.storm_runs)]
    for run, outcome in enumerate(outcomes):
        if outcome.problems:
            note = f"run {run}: " + "; ".join(outcome.problems)
            figures["succeeded"].note = f"{figures['succeeded'].note} {note}".strip()
        for key, fig in figures.items():
            value = getattr(outcome, key)
            fig.values.append(value / MB if fig.unit == "MB" else float(value))
    return list(figures.values()), outcomes


# ------------------------------------------------------------- footprint


def footprint(
    sizes: Sizes, work: Path, storms: list[StormOutcome], synchronous: str = "full"
) -> list[Figure]:
    ready = Figure(
        "footprint: serve start to /readyz 200", "s", op="<=", target=1.5, note="includes interpreter start"
    )
    idle = Figure("footprint: idle RSS after start", "MB", op="<=", target=120, note="VmRSS 1 s after ready")
    after = Figure("footprint: RSS after the storm", "MB", note="VmRSS once every storm run finished")
    for run in range(sizes.footprint_starts):
        with daemon.suture(work / f"footprint-{run}", synchronous=synchronous) as server:
            server.start()
            time.sleep(1.0)
            ready.values.append(server.ready_seconds)
            idle.values.append(server.rss() / MB)
    if not storms:
        storms = [storm_once(sizes, work / "footprint-storm", synchronous)]
    after.values.extend(s.rss_after / MB for s in storms)
    return [ready, idle, after]


# --------------------------------------------------------------- history


def history(work: Path, backend: str, quick: bool, info: dict[str, object]) -> list[Figure]:
    """The read side over a long history (bench/history.py); its sizes go into `info`."""
    from bench import history as long_history

    sizes = long_history.QUICK if quick else long_history.FULL
    info["history_sizes"] = sizes.__dict__
    return long_history.history(sizes, work, backend)
