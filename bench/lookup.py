"""Intake lookup, store level: one intake batch of many alerts against one of a tenth as many.

The engine's batch apply (`Store.ingest`, i.e. `engine.store.ingest.apply_batch` in one write
transaction, commit included) is timed in this process for one batch of `large` alerts and one
of `small`, each on a fresh, migrated SQLite file: every alert has its own fingerprint and its
own startsAt (realistic labels, bench/client.py), in bodies of 10 as the webhook sends them, of
a manual code (stored, no runs). Linear means the same time per alert at both sizes; the lookup
of what the store knows of the batch's fingerprints (`_lookup`) is timed apart as well.
"""

from __future__ import annotations

import gc
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import daemon
from bench.client import LoadSpec, realistic_alert
from bench.report import Figure

PER_BODY = 10


def batch(size: int, prefix: str) -> list[Any]:
    """`size` distinct alerts (fingerprint and startsAt), as Submissions of PER_BODY alerts."""
    from engine.models import Alert, AlertStatus, ClassifiedAlert, Mode, Severity, Submission

    now = time.time()
    first = datetime.fromtimestamp(now, UTC) - timedelta(minutes=10)
    spec = LoadSpec(0, daemon.INGEST_ALERTNAME, prefix, bodies=0, per_body=PER_BODY, load="realistic")
    submissions = []
    for b in range(0, size, PER_BODY):
        raw = [realistic_alert(spec, n, now) for n in range(b, min(size, b + PER_BODY))]
        items = []
        for n, a in enumerate(raw, start=b):
            alert = Alert.trusted(
                "alertmanager",
                a["labels"]["alertname"],
                a["fingerprint"],
                AlertStatus.firing,
                a["labels"],
                a["annotations"],
                first + timedelta(microseconds=15 * n),  # distinct, within the last ten minutes
                None,
                a["generatorURL"],
            )
            target = a["labels"]["instance"].split(":")[0]
            items.append(
                ClassifiedAlert(
                    alert,
                    "BENCH-002",
                    "Benchmark alert, stored only",
                    Severity.low,
                    target,
                    Mode.manual,
                    ("bench-noop", 1),
                )
            )
        body = orjson.dumps({"version": "4", "status": "firing", "alerts": raw}).decode()
        submissions.append(Submission("alertmanager", body, items))
    return submissions


def _apply(template: Path, folder: Path, size: int, prefix: str, synchronous: str) -> tuple[float, float]:
    """(seconds of the batch apply, seconds of its lookup) for one batch on a fresh store."""
    from engine.intake.runs import BatchPlanner
    from engine.store import Store, open_database
    from engine.store import ingest as store_ingest

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suture.db"
    shutil.copyfile(template, path)
    submissions = batch(size, prefix)
    db = open_database(f"sqlite:///{path}", sqlite_synchronous=synchronous)  # type: ignore[arg-type]
    store = Store(db)
    lookup = store_ingest._lookup
    looked = 0.0

    def timed_lookup(conn: Any, wanted: Any) -> Any:
        nonlocal looked
        began = time.perf_counter()
        try:
            return lookup(conn, wanted)
        finally:
            looked += time.perf_counter() - began

    store_ingest._lookup = timed_lookup  # type: ignore[assignment]
    try:
        gc.collect()
        began = time.perf_counter()
        applied = store.ingest(submissions, lambda _conn: BatchPlanner({}))
        seconds = time.perf_counter() - began
    finally:
        store_ingest._lookup = lookup
        db.dispose()
    stored = sum(r.alerts for r in applied.receipts)
    if stored != size or sum(len(r.opened) for r in applied.receipts) != size:
        raise RuntimeError(f"lookup bench: {stored} of {size} alerts stored, not one incident each")
    return seconds, looked


def lookup(
    work: Path, large: int = 40_000, small: int = 4_000, runs: int = 3, synchronous: str = "full"
) -> list[Figure]:
    from engine.store import open_database

    note = (
        f"SQLite, Store.ingest of one batch (bodies of {PER_BODY}, distinct fingerprints and startsAt,"
        " fresh store), in the bench process"
    )
    big = Figure(f"intake lookup: apply one {large:,}-alert batch", "s", note=note)
    little = Figure(f"intake lookup: apply one {small:,}-alert batch", "s")
    ratio = Figure(
        f"intake lookup: per-alert time, {large:,} / {small:,}",
        "",
        op="<=",
        target=1.5,
        note="(seconds / alerts) of the large batch over the small one's: 1 is linear",
    )
    big_lookup = Figure(f"intake lookup: of which _lookup, {large:,}", "s")
    little_lookup = Figure(f"intake lookup: of which _lookup, {small:,}", "s")
    lookup_ratio = Figure(f"intake lookup: _lookup per-alert time, {large:,} / {small:,}", "")
    template = work / "lookup-template.db"
    work.mkdir(parents=True, exist_ok=True)
    open_database(f"sqlite:///{template}", upgrade=True).dispose()
    for run in range(runs):
        s_apply, s_look = _apply(template, work / f"lookup-{run}-small", small, f"ls{run}", synchronous)
        l_apply, l_look = _apply(template, work / f"lookup-{run}-large", large, f"ll{run}", synchronous)
        big.values.append(l_apply)
        little.values.append(s_apply)
        ratio.values.append((l_apply / large) / (s_apply / small))
        big_lookup.values.append(l_look)
        little_lookup.values.append(s_look)
        lookup_ratio.values.append((l_look / large) / (s_look / small) if s_look else float("nan"))
    return [big, little, ratio, big_lookup, little_lookup, lookup_ratio]
