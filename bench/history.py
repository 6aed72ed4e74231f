"""`python -m bench history`: the read side over a long history (1M incidents, 3M alerts, 1M runs,
3M step results over 90 days), on SQLite and PostgreSQL.

The store is migrated by the engine (`open_database(url, upgrade=True)`), then filled directly, not
through the daemon (that would take hours): its secondary indexes are dropped, the rows go in with
multi-row inserts (SQLite: executemany in a few big transactions, synchronous=off only while filling;
PostgreSQL: COPY) and the indexes are rebuilt from the migration's own definitions. Timings are
in-process calls of the real store and analytics functions, median of `repeats`.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import daemon
from bench.client import LoadSpec, run_in_subprocess
from bench.report import Figure

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname={name}"
BACKENDS = ("sqlite", "postgresql")
SEVERITIES = ("critical", "high", "medium", "low")
RESPOND = {"critical": 1800, "high": 7200, "medium": 86400, "low": None}
RESOLVE = {"critical": 4 * 3600, "high": 86400, "medium": 7 * 86400, "low": None}
UNCLASSIFIED = "UNCLASSIFIED"


@dataclass(frozen=True)
class HistorySizes:
    incidents: int = 1_000_000
    alerts_per_incident: int = 3
    steps_per_run: int = 3
    days: int = 90
    codes: int = 50
    targets: int = 5000
    repeats: int = 5
    chunk: int = 50_000  # incidents generated and written at a time
    ingest_bodies: int = 2000  # per window, 10 alerts a body
    ingest_windows: int = 5
    deadline_s: float = 120.0


FULL = HistorySizes()
#: 1/1000 of the full history (codes stay 50, so every code still has incidents).
QUICK = HistorySizes(
    incidents=1000, targets=50, repeats=2, chunk=500, ingest_bodies=60, ingest_windows=1, deadline_s=30.0
)


# ------------------------------------------------------------------ data


def code_name(k: int) -> str:
    return f"HIST-{k:03d}"


def catalog(sizes: HistorySizes) -> dict[str, Any]:
    """The codes in force (engine.models.Code), as the CLI would load them from the catalog."""
    from engine.models import Code

    return {
        code_name(k): Code.model_validate(
            {
                "code": code_name(k),
                "title": f"Synthetic problem {k}",
                "severity": SEVERITIES[k % 4],
                "match": {"source": "alertmanager", "alertname": f"Alert{k:03d}"},
                "playbook": f"pb-{k:03d}",
                "mode": "auto",
                "knowledge": {
                    "summary": f"Problem {k} on a node.",
                    "manual_steps": ["ssh to the node", "look at journalctl -u node_exporter"],
                    "owner": "team-infra",
                },
            }
        )
        for k in range(sizes.codes)
    }


class Clock:
    """Epoch seconds as the engine's SQLite DATETIME text (also read by PostgreSQL in UTC), fast."""

    def __init__(self, start: float, days: int) -> None:
        base = int(start // 86400)
        self.base = base
        self.days = [
            datetime.fromtimestamp((base + d) * 86400, UTC).strftime("%Y-%m-%d") for d in range(days + 40)
        ]

    def __call__(self, t: float) -> str:
        day = int(t // 86400)
        rest = t - day * 86400
        secs = int(rest)
        micro = int((rest - secs) * 1_000_000)
        h, r = divmod(secs, 3600)
        m, s = divmod(r, 60)
        return f"{self.days[day - self.base]} {h:02d}:{m:02d}:{s:02d}.{micro:06d}"


@dataclass
class Chunk:
    events: list[tuple[Any, ...]]
    incidents: list[tuple[Any, ...]]
    alerts: list[tuple[Any, ...]]
    runs: list[tuple[Any, ...]]
    steps: list[tuple[Any, ...]]
    audit: list[tuple[Any, ...]]


EVENT_COLS = ("id", "source", "received_at", "body", "alert_count")
INCIDENT_COLS = (
    "id", "code", "title", "status", "severity", "target", "source", "fingerprint", "alertname",
    "starts_at", "labels", "annotations", "occurrences", "opened_at", "last_seen", "due_at",
    "resolved_at", "resolution", "remediated_at", "respond_by", "acknowledged_at", "acknowledged_by",
)  # fmt: skip
ALERT_COLS = (
    "id", "event_id", "source", "fingerprint", "name", "status", "labels", "annotations", "starts_at",
    "ends_at", "received_at", "code", "incident_id",
)  # fmt: skip
RUN_COLS = (
    "id", "incident_id", "playbook", "playbook_version", "status", "trigger", "dry_run", "queued_at",
    "started_at", "finished_at", "heartbeat_at", "worker", "error", "effective", "context",
)  # fmt: skip
STEP_COLS = (
    "id", "run_id", "seq", "name", "phase", "action", "status", "params", "exit_code", "http_status",
    "stdout", "stderr", "error", "started_at", "duration_ms", "attempt",
)  # fmt: skip
AUDIT_COLS = ("id", "at", "actor", "kind", "incident_id", "run_id", "message")
TABLES = (
    ("events", EVENT_COLS, "events"),
    ("incidents", INCIDENT_COLS, "incidents"),
    ("alerts", ALERT_COLS, "alerts"),
    ("runs", RUN_COLS, "runs"),
    ("step_results", STEP_COLS, "steps"),
    ("audit_log", AUDIT_COLS, "audit"),
)


class Generator:
    """A deterministic 90-day history ending at `now`: ids grow with time, codes follow a Zipf law
    (the top code has ~22 % of the incidents), 1 % UNCLASSIFIED, most incidents resolved within
    minutes, runs mostly succeeded, the last hours still open with a few runs awaiting approval."""

    def __init__(self, sizes: HistorySizes, now: float) -> None:
        self.sizes = sizes
        self.now = now
        self.start = now - sizes.days * 86400
        self.clock = Clock(self.start, sizes.days)
        self.rng = random.Random(14)
        self.weights = [1 / (k + 1) for k in range(sizes.codes)]
        self.v2_at = now - 20 * 86400
        self.events = 0
        self.alerts = 0
        self.steps = 0
        self.audit = 0

    def chunks(self) -> Iterator[Chunk]:
        n = self.sizes.incidents
        for first in range(0, n, self.sizes.chunk):
            yield self._chunk(first, min(n, first + self.sizes.chunk))

    def _chunk(self, first: int, last: int) -> Chunk:
        rng, ts, sizes = self.rng, self.clock, self.sizes
        span = (self.now - 60 - self.start) / sizes.incidents
        out = Chunk([], [], [], [], [], [])
        codes = rng.choices(range(sizes.codes), weights=self.weights, k=last - first)
        recent = sizes.incidents - max(1, sizes.incidents // 500)
        for i in range(first, last):
            iid = i + 1
            opened = self.start + (i + rng.random()) * span
            unclassified = rng.random() < 0.01
            k = codes[i - first]
            code = UNCLASSIFIED if unclassified else code_name(k)
            name = f"Stray{k % 7}" if unclassified else f"Alert{k:03d}"
            severity = "low" if unclassified else SEVERITIES[k % 4]
            target = f"node-{rng.randrange(sizes.targets):04d}"
            fingerprint = f"{rng.getrandbits(64):016x}"
            is_open = (i >= recent and rng.random() < 0.5) or rng.random() < 0.0002
            ttr = min(rng.expovariate(1 / 900), 6 * 86400) + 5
            resolved = None if is_open else opened + ttr
            manual = not is_open and rng.random() < 0.05
            acked = rng.random() < 0.1
            labels = {
                "alertname": name, "instance": f"{target}:9100", "job": "node", "severity": severity,
                "env": "prod", "region": f"r{k % 3}",
            }  # fmt: skip
            labels_text = orjson.dumps(labels).decode()
            annotations = orjson.dumps({"summary": f"{name} on {target}"}).decode()
            respond, resolve = RESPOND[severity], RESOLVE[severity]
            # run
            if unclassified:
                playbook, version, trigger = "diagnose", 1, "manual"
            else:
                playbook, version, trigger = f"pb-{k:03d}", 2 if opened >= self.v2_at else 1, "auto"
            roll = rng.random()
            if is_open:
                status = "awaiting_approval" if roll < 0.3 else "failed"
            else:
                status = (
                    "succeeded" if roll < 0.9 else "failed" if roll < 0.96 else "timed_out" if roll < 0.98
                    else "skipped"
                )  # fmt: skip
            queued = opened + 0.05
            started = None if status == "awaiting_approval" else queued + 0.01
            duration = rng.uniform(1, 40)
            finished = None if started is None else started + duration
            effective = None if finished is None else (status == "succeeded" and ttr < 1800 and not manual)
            remediated = ts(finished) if effective and finished is not None else None
            out.incidents.append(
                (
                    iid, code, f"{name} on {target}", "open" if is_open else "resolved", severity, target,
                    "alertmanager", fingerprint, name, ts(opened), labels_text, annotations, 3, ts(opened),
                    ts(opened + min(ttr, 120)), None if resolve is None else ts(opened + resolve),
                    None if resolved is None else ts(resolved),
                    None if is_open else "manual" if manual else "alert_resolved", remediated,
                    None if respond is None else ts(opened + respond),
                    ts(opened + 300) if acked else None, "alice" if acked else None,
                )
            )  # fmt: skip
            # alerts: two firings and, once resolved, the resolution
            for a in range(sizes.alerts_per_incident):
                self.alerts += 1
                if self.alerts % 10 == 1:
                    self.events += 1
                    out.events.append((self.events, "alertmanager", ts(opened + a * 60), "{}", 10))
                ending = a == sizes.alerts_per_incident - 1 and resolved is not None
                at = resolved if ending and resolved is not None else opened + a * 60
                out.alerts.append(
                    (
                        self.alerts, self.events, "alertmanager", fingerprint, name,
                        "resolved" if ending else "firing", labels_text, annotations, ts(opened),
                        ts(at) if ending else None, ts(at), code, iid,
                    )
                )  # fmt: skip
            out.runs.append(
                (
                    iid, iid, playbook, version, status, trigger, False, ts(queued),
                    None if started is None else ts(started), None if finished is None else ts(finished),
                    None if finished is None else ts(finished), None if started is None else "worker-1",
                    "step restart: exit status 1" if status in ("failed", "timed_out") else None,
                    effective, '{"dry_run": false}',
                )
            )  # fmt: skip
            t = started if started is not None else queued
            for seq in range(sizes.steps_per_run):
                self.steps += 1
                verify = seq == sizes.steps_per_run - 1
                if status == "succeeded":
                    step_status = "succeeded"
                elif status == "awaiting_approval":
                    step_status = "skipped"
                else:
                    step_status = "failed" if seq == 1 else "skipped" if seq > 1 else "succeeded"
                failed = step_status == "failed"
                params = (
                    f'{{"url": "http://{target}:9100/metrics"}}'
                    if verify
                    else f'{{"host": "{target}", "command": "systemctl restart svc-{k}"}}'
                )
                out.steps.append(
                    (
                        self.steps, iid, seq, "verify-up" if verify else f"step-{seq}",
                        "verify" if verify else "steps", "http" if verify else "ssh", step_status, params,
                        None if verify else (1 if failed else 0), (200 if step_status == "succeeded" else 503)
                        if verify else None, "active\n" if not failed else "",
                        "Job failed\n" if failed else "", "exit status 1" if failed else None, ts(t),
                        int(duration * 1000 / sizes.steps_per_run), 1,
                    )
                )  # fmt: skip
                t += duration / sizes.steps_per_run
            if i % 500 == 250:
                self.audit += 1
                out.audit.append(
                    (self.audit, ts(opened + 600), "bob", "note", iid, None, f"restarted by hand on {target}")
                )
        return out

    def catalog_rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """codes and playbook_versions: v1 90 days ago, playbooks v2 20 days ago, a few v3 and
        code v2 inside the last 7 days (the report's catalog changes)."""
        ts = self.clock
        codes_rows: list[tuple[Any, ...]] = []
        playbook_rows: list[tuple[Any, ...]] = []
        models = catalog(self.sizes)
        for k, (name, model) in enumerate(models.items()):
            body = model.model_dump(mode="json", exclude_defaults=True)
            codes_rows.append(
                (len(codes_rows) + 1, name, 1, f"{k:064x}", orjson.dumps(body).decode(), ts(self.start))
            )
            if k < 5:
                body2 = {**body, "title": body["title"] + " (reworded)"}
                changed = ts(self.now - 2 * 86400)
                codes_rows.append(
                    (len(codes_rows) + 1, name, 2, f"{k + 100:064x}", orjson.dumps(body2).decode(), changed)
                )
            for version, at in ((1, self.start), (2, self.v2_at)) + (
                ((3, self.now - 86400),) if k < 3 else ()
            ):
                text = f"name: pb-{k:03d}\nversion: {version}\nsteps:\n  - name: restart\n    ssh: systemctl restart svc-{k} # v{version}\n"  # noqa: E501
                playbook_rows.append((len(playbook_rows) + 1, f"pb-{k:03d}", version, f"{k * 10 + version:064x}", text, ts(at)))  # fmt: skip  # noqa: E501
        playbook_rows.append(
            (len(playbook_rows) + 1, "diagnose", 1, "d" * 64, "name: diagnose\nversion: 1\n", ts(self.start))
        )  # noqa: E501
        return codes_rows, playbook_rows


# ------------------------------------------------------------------ fill


def fill_sqlite(path: Path, gen: Generator) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=MEMORY")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")
        conn.execute("PRAGMA temp_store=MEMORY")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({','.join('?' * len(TABLES))})",
            [t for t, _c, _a in TABLES],
        ).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        inserts = {
            attr: f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for table, cols, attr in TABLES
        }
        conn.execute("BEGIN")
        for n, chunk in enumerate(gen.chunks()):
            for _table, _cols, attr in TABLES:
                conn.executemany(inserts[attr], getattr(chunk, attr))
            if n % 5 == 4:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
        codes_rows, playbook_rows = gen.catalog_rows()
        conn.executemany(
            "INSERT INTO codes (id, code, version, sha256, body, loaded_at) VALUES (?,?,?,?,?,?)", codes_rows
        )
        conn.executemany(
            "INSERT INTO playbook_versions (id, name, version, sha256, body, loaded_at) VALUES (?,?,?,?,?,?)",
            playbook_rows,
        )
        conn.execute("COMMIT")
        for _name, sql in indexes:
            conn.execute(sql)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return str(value)


def fill_postgresql(dbname: str, gen: Generator) -> None:
    import psycopg

    with psycopg.connect(PG_DSN.format(name=dbname), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET session_replication_role = replica")  # no FK triggers while filling
        conn.execute("SET maintenance_work_mem = '1GB'")
        names = [t for t, _c, _a in TABLES] + ["codes", "playbook_versions"]
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public'"
            " AND i.tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
            " WHERE c.conname = i.indexname)",
            (names,),
        ).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        codes_rows, playbook_rows = gen.catalog_rows()
        extra = (
            ("codes", ("id", "code", "version", "sha256", "body", "loaded_at"), codes_rows),
            ("playbook_versions", ("id", "name", "version", "sha256", "body", "loaded_at"), playbook_rows),
        )
        with conn.transaction(), conn.cursor() as cur:
            for chunk in gen.chunks():
                for table, cols, attr in TABLES:
                    _copy(cur, table, cols, getattr(chunk, attr))
            for extra_table, extra_cols, rows in extra:
                _copy(cur, extra_table, extra_cols, rows)
        for _name, sql in indexes:
            conn.execute(sql)
        for table in names:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.execute("SET session_replication_role = DEFAULT")
        # A store that ran 90 days has been analyzed by autovacuum; a fresh COPY has not.
        conn.execute("VACUUM ANALYZE")


def _copy(cur: Any, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
        copy.write(text)


# --------------------------------------------------------------- measure


def _timed(fig: Figure, repeats: int, call: Callable[[int], object]) -> None:
    for n in range(repeats):
        began = time.perf_counter()
        call(n)
        took = time.perf_counter() - began
        fig.values.append(took * 1000 if fig.unit == "ms" else took)


def measure(url: str, backend: str, sizes: HistorySizes, now: datetime, filled_s: float) -> list[Figure]:
    from engine.analytics import count_hours, read_handover, read_stats
    from engine.analytics.handover import render_handover
    from engine.analytics.past import teach
    from engine.store import open_database
    from engine.store.catalog_history import CatalogHistory
    from engine.store.history import History
    from engine.store.store import Store

    tag = f"history[{backend}]"
    codes = catalog(sizes)
    top = code_name(0)
    db = open_database(url)
    store, history, past = Store(db), History(db), CatalogHistory(db)
    repeats = sizes.repeats
    fill = Figure(
        f"{tag}: fill the store", "s", [filled_s], note="migrate, drop indexes, bulk insert, rebuild"
    )
    began = time.monotonic()
    counted = count_hours(history, codes, now)
    hours = Figure(
        f"{tag}: count the past hours", "s", [time.monotonic() - began],
        note=f"{counted} hours: the daemon's count_hours job, as its first turn after start does",
    )  # fmt: skip
    stats = Figure(
        f"{tag}: stats --since 30d", "s", op="<=", target=1.0, note="in-process read_stats(History)"
    )
    page1 = Figure(f"{tag}: incidents page 1 (top code, 90d)", "ms", op="<=", target=50,
                   note=f"list_incidents(code={top}, since=90d, limit=100)")  # fmt: skip
    page50 = Figure(f"{tag}: incidents page 50 (top code, 90d)", "ms", op="<=", target=50,
                    note="cursor before_id followed from page 1")  # fmt: skip
    ratio = Figure(f"{tag}: incidents page 50 / page 1", "", op="<=", target=1.2,
                   note="medians; 'no slower' allowing 20 % noise")  # fmt: skip
    runs1 = Figure(f"{tag}: runs page 1 (succeeded)", "ms", op="<=", target=50,
                   note="list_runs(status=succeeded, limit=100)")  # fmt: skip
    runs50 = Figure(f"{tag}: runs page 50 (succeeded)", "ms", op="<=", target=50)
    show = Figure(f"{tag}: get_incident (random)", "ms", op="<=", target=50)
    teach_fig = Figure(f"{tag}: incidents show (get_incident + previous 3)", "ms", op="<=", target=50,
                       note="as engine/cli/incidents.py: get_incident, previous_incidents, teach")  # noqa: E501  # fmt: skip
    report = Figure(f"{tag}: report handover --since 7d", "s", op="<=", target=2.0,
                    note="built in-process as engine/cli/report.py does, rendered to Markdown")  # fmt: skip
    try:
        until = now
        _timed(stats, repeats, lambda _n: read_stats(history, codes, until - timedelta(days=30), until))
        since90 = until - timedelta(days=90)
        _timed(page1, repeats, lambda _n: store.list_incidents(code=top, since=since90, limit=100))
        cursor: int | None = None
        for _ in range(49):
            page = store.list_incidents(code=top, since=since90, limit=100, before_id=cursor)
            cursor = page[-1].id if page else cursor
        _timed(
            page50,
            repeats,
            lambda _n: store.list_incidents(code=top, since=since90, limit=100, before_id=cursor),
        )
        p1, p50 = page1.median, page50.median
        ratio.values.append(p50 / p1 if p1 and p50 is not None else math.nan)
        _timed(runs1, repeats, lambda _n: store.list_runs(status="succeeded", limit=100))
        rcursor: int | None = None
        for _ in range(49):
            rpage = store.list_runs(status="succeeded", limit=100, before_id=rcursor)
            rcursor = rpage[-1].id if rpage else rcursor
        _timed(runs50, repeats, lambda _n: store.list_runs(status="succeeded", limit=100, before_id=rcursor))
        rng = random.Random(5)
        ids = [rng.randrange(1, sizes.incidents + 1) for _ in range(repeats)]
        _timed(show, repeats, lambda n: store.get_incident(ids[n]))
        ids2 = [rng.randrange(1, sizes.incidents + 1) for _ in range(repeats)]

        def incidents_show(n: int) -> object:
            detail = store.get_incident(ids2[n])
            code = codes.get(detail.code)
            return teach(detail, code.knowledge if code else None, past.previous_incidents(detail))

        _timed(teach_fig, repeats, incidents_show)

        def handover(_n: int) -> str:
            facts = read_handover(history, codes, until - timedelta(days=7), until)
            return render_handover(facts, codes)

        _timed(report, repeats, handover)
        console = console_pages(store, codes, ids2, repeats, tag)
    finally:
        db.dispose()
    return [fill, hours, stats, page1, page50, ratio, runs1, runs50, show, teach_fig, report, *console]


def console_pages(store: Any, codes: dict[str, Any], ids: list[int], repeats: int, tag: str) -> list[Figure]:
    """The console's pages rendered in-process through its own routes (server time: the store's
    reads, the view and the template), on the filled store."""
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from engine.access import AccessControl
    from engine.clock import SYSTEM_CLOCK
    from engine.config import Config
    from engine.web.console import add_console

    entries = [SimpleNamespace(code=code) for code in codes.values()]
    view = SimpleNamespace(catalog=SimpleNamespace(codes=entries, find_code=codes.get, playbooks={}))
    services = SimpleNamespace(
        config=Config(), store=store, intake=SimpleNamespace(view=view), clock=SYSTEM_CLOCK,
        wake_workers=lambda: None,
    )  # fmt: skip
    app = FastAPI()
    app.state.access = AccessControl([], [])  # open reads on loopback, as shipped
    add_console(app, services)
    client = TestClient(app)
    listing = Figure(f"{tag}: console /incidents (open, newest 200)", "ms", op="<=", target=200)
    filtered = Figure(f"{tag}: console /incidents?code=top&since=30d", "ms", op="<=", target=200)
    incident = Figure(f"{tag}: console /incidents/{{id}} (random)", "ms", op="<=", target=200)
    cold = Figure(f"{tag}: console /dashboard, first count of 30d", "s",
                  note="once per window: then shown at once and recounted in the background")  # fmt: skip
    warm = Figure(f"{tag}: console /dashboard (30d board kept)", "ms", op="<=", target=200,
                  note="what every later viewer waits for")  # fmt: skip

    def get(path: str) -> None:
        answer = client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")

    _timed(listing, repeats, lambda _n: get("/incidents"))
    _timed(filtered, repeats, lambda _n: get(f"/incidents?code={code_name(0)}&since=30d&status=all"))
    _timed(incident, repeats, lambda n: get(f"/incidents/{ids[n]}"))
    _timed(cold, 1, lambda _n: get("/dashboard?since=30d"))  # the warm-up at start may have counted it
    _timed(warm, repeats, lambda _n: get("/dashboard?since=30d"))
    return [listing, filtered, incident, cold, warm]


def ingest_ratio(filled: Path, empty: Path, sizes: HistorySizes) -> list[Figure]:
    """The real daemon on the filled SQLite file and on an empty one, side by side, alternating
    windows of the same load (the ingest scenario's helper)."""
    ratio = Figure(
        "history[sqlite]: ingest filled / empty",
        "",
        op=">=",
        target=0.9,
        note="durable alerts/s, real daemon, windows alternate between the two stores",
    )
    full_rate = Figure("history[sqlite]: ingest into the filled store", "alerts/s")
    empty_rate = Figure("history[sqlite]: ingest into an empty store", "alerts/s")
    body = {"alertname": daemon.INGEST_ALERTNAME, "per_body": 10, "deadline_s": sizes.deadline_s}
    with daemon.suture(filled) as big, daemon.suture(empty) as small:
        big.start(timeout=120)
        small.start()
        for server in (big, small):
            run_in_subprocess(LoadSpec(port=server.port, prefix="w", bodies=sizes.ingest_bodies, **body))  # type: ignore[arg-type]
        for window in range(sizes.ingest_windows):
            rates = []
            for server in (big, small):
                result = run_in_subprocess(
                    LoadSpec(port=server.port, prefix=f"i{window}", bodies=sizes.ingest_bodies, **body)  # type: ignore[arg-type]
                )
                with server.db() as conn:
                    stored = conn.execute(
                        "SELECT COUNT(*) FROM alerts WHERE fingerprint >= ? AND fingerprint < ?",
                        (f"i{window}-", f"i{window}."),
                    ).fetchone()[0]
                rates.append(stored / result.elapsed_s if result.elapsed_s else math.nan)
            full_rate.values.append(rates[0])
            empty_rate.values.append(rates[1])
            ratio.values.append(rates[0] / rates[1] if rates[1] else math.nan)
    return [full_rate, empty_rate, ratio]


# ------------------------------------------------------------------ main


def _drop_pg(dbname: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN.format(name="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _log(text: str) -> None:
    print(f"bench: history {text}", file=sys.stderr, flush=True)


def history(sizes: HistorySizes, work: Path, backend: str = "both") -> list[Figure]:
    from engine.store import open_database

    figures: list[Figure] = []
    now_dt = datetime.now(UTC).replace(microsecond=0)
    now = now_dt.timestamp()
    wanted = BACKENDS if backend == "both" else (backend,)
    for name in wanted:
        began = time.monotonic()
        if name == "sqlite":
            folder = work / "history-filled"
            folder.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{folder / 'suture.db'}"
            open_database(url, upgrade=True).dispose()
            fill_sqlite(folder / "suture.db", Generator(sizes, now))
            filled = time.monotonic() - began
            _log(f"sqlite filled in {filled:.0f} s ({(folder / 'suture.db').stat().st_size / 2**20:.0f} MB)")
            figures += measure(url, name, sizes, now_dt, filled)
            _log("sqlite measured; ingest ...")
            empty = work / "history-empty"
            figures += ingest_ratio(folder, empty, sizes)
        else:
            dbname = f"suture_bench_{os.getpid()}"
            import psycopg

            with psycopg.connect(PG_DSN.format(name="postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{dbname}"')
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
                open_database(url, upgrade=True).dispose()
                fill_postgresql(dbname, Generator(sizes, now))
                filled = time.monotonic() - began
                _log(f"postgresql filled in {filled:.0f} s")
                figures += measure(url, name, sizes, now_dt, filled)
            finally:
                _drop_pg(dbname)
    return figures
