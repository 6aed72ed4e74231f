"""Retention on a real SQLite file and a real PostgreSQL database: old raw webhook bodies and old
step output are emptied a bounded batch at a time; events, alerts, incidents and run summaries
stay, and `incidents show` / `runs show` still answer.

Alerts go through intake's own classification and commit; rows are made old by moving their
stored time back (the store stamps them with the real time), and the cutoff is passed explicitly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select, update

from engine.catalog.loader import load_catalog
from engine.clock import ManualClock
from engine.config import RetentionConfig
from engine.intake.classify import CatalogView, Intake
from engine.models import Alert, AlertStatus, RunStatus
from engine.records import Receipt
from engine.scheduler import PruneJob
from engine.store import Store
from engine.store.db import Database
from engine.store.retention import Retention, batch_query
from engine.store.tables import alerts, events, step_results
from tests.conftest import TEST_CATALOG, run_cli, write_config
from tests.support.plans import explain

VIEW = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
#: DISK-001 in tests/catalog: opens an incident and queues a run.
DISK = "NodeFilesystemAlmostOutOfSpace"
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)
EVENTS_CUTOFF = NOW - timedelta(days=30)


def alert(instance: str = "db-1:9100") -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": DISK,
            "fingerprint": uuid.uuid4().hex[:16],
            "status": AlertStatus.firing,
            "labels": {"alertname": DISK, "instance": instance, "mountpoint": "/"},
            "starts_at": NOW - timedelta(minutes=5),
        }
    )


def send(store: Store, *batch: Alert) -> Receipt:
    """One webhook body with these alerts, committed by intake: one event row."""
    intake = Intake(store, VIEW)
    body = orjson.dumps({"alerts": [a.model_dump(mode="json") for a in batch]}).decode()
    [outcome] = intake.commit([intake.prepare("alertmanager", body, list(batch))])
    assert isinstance(outcome, Receipt), outcome
    return outcome


def event_ids_of(db: Database, incident_id: int) -> list[int]:
    with db.read() as conn:
        return list(
            conn.execute(select(alerts.c.event_id).where(alerts.c.incident_id == incident_id)).scalars()
        )


def make_old(db: Database, event_ids: list[int], at: datetime = OLD) -> None:
    with db.write() as conn:
        conn.execute(update(events).where(events.c.id.in_(event_ids)).values(received_at=at))


def bodies(db: Database) -> dict[int, str]:
    with db.read() as conn:
        return {row.id: row.body for row in conn.execute(select(events.c.id, events.c.body))}


def count(db: Database, table: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def old_events(store: Store, n: int) -> list[int]:
    """`n` webhook bodies received 40 days ago, each opening an incident; their event ids."""
    ids = []
    for i in range(n):
        [incident_id] = send(store, alert(f"old-{i}:9100")).opened
        ids.extend(event_ids_of(store.db, incident_id))
    make_old(store.db, ids)
    return ids


# ---------------------------------------------------------------------- events


def test_old_event_bodies_are_emptied_and_everything_else_stays(db: Database, tmp_path: Path) -> None:
    store = Store(db)
    [old_incident] = send(store, alert("db-1:9100"), alert("db-2:9100")).opened[:1]
    [old_event] = set(event_ids_of(db, old_incident))
    make_old(db, [old_event])
    [new_incident] = send(store, alert("db-3:9100")).opened
    [new_event] = event_ids_of(db, new_incident)
    before = bodies(db)
    alert_count, incident_count = count(db, alerts), store.incident(old_incident).occurrences

    pruned = Retention(db).prune_events(EVENTS_CUTOFF)

    assert pruned == 1
    after = bodies(db)
    assert after[old_event] == "" and "db-1:9100" in before[old_event]
    assert after[new_event] == before[new_event] and "db-3:9100" in after[new_event]
    assert count(db, alerts) == alert_count == 3
    old = store.get_incident(old_incident)
    assert old.occurrences == incident_count and old.status == "open"
    assert sorted(a.labels["instance"] for a in old.alerts) == ["db-1:9100"]
    # Nothing left to prune: a second pass finds nothing, and the event rows are all still there.
    assert Retention(db).prune_events(EVENTS_CUTOFF) == 0
    assert count(db, events) == 2

    shown = run_cli("incidents", "show", str(old_incident), "--json", config=write_config(tmp_path, db.url))
    assert shown["id"] == old_incident and shown["code"] == "DISK-001"
    assert [a["labels"]["instance"] for a in shown["alerts"]] == ["db-1:9100"]


def test_a_batch_empties_at_most_its_size_oldest_first(db: Database) -> None:
    store = Store(db)
    ids = old_events(store, 5)
    with db.write() as conn:  # the first two arrived earliest
        for offset, event_id in enumerate(ids):
            conn.execute(
                update(events)
                .where(events.c.id == event_id)
                .values(received_at=OLD + timedelta(hours=offset))
            )
    retention = Retention(db)

    assert retention.prune_events(EVENTS_CUTOFF, batch=2) == 2
    assert [event_id for event_id, body in sorted(bodies(db).items()) if body == ""] == ids[:2]
    assert retention.prune_events(EVENTS_CUTOFF, batch=2) == 2
    assert retention.prune_events(EVENTS_CUTOFF, batch=2) == 1  # short: nothing older left
    assert retention.prune_events(EVENTS_CUTOFF, batch=2) == 0
    assert set(bodies(db).values()) == {""}


def test_each_batch_finds_its_rows_through_the_partial_indexes(db: Database) -> None:
    events_plan = explain(db, batch_query("events", EVENTS_CUTOFF, 1000))
    steps_plan = explain(db, batch_query("step_output", EVENTS_CUTOFF, 1000))

    assert "ix_events_unpruned" in events_plan, events_plan
    assert "ix_step_results_with_output" in steps_plan, steps_plan
    assert "TEMP B-TREE" not in events_plan + steps_plan  # SQLite: no sort of every match


# ----------------------------------------------------------------- step output


def run_with_steps(store: Store, started: datetime) -> int:
    """A finished run of DISK-001 with two recorded steps started at `started`; the run's id."""
    [incident_id] = send(store, alert(f"host-{uuid.uuid4().hex[:6]}:9100")).opened
    claimed = store.claim_run("worker-1")
    while claimed is not None and claimed.incident_id != incident_id:  # runs of earlier incidents
        claimed = store.claim_run("worker-1")
    assert claimed is not None
    for seq, (status, exit_code) in enumerate([("succeeded", 0), ("failed", 3)], start=1):
        store.record_step(
            claimed.id,
            {
                "seq": seq,
                "name": f"step-{seq}",
                "phase": "diagnose",
                "action": "ssh",
                "status": status,
                "params": {"command": f"df -h /var/{seq}"},
                "exit_code": exit_code,
                "http_status": None,
                "stdout": f"/dev/sda1 91% /var/{seq}\n",
                "stderr": "warning: slow disk\n" if seq == 2 else "",
                "error": None,
                "started_at": started + timedelta(seconds=seq),
                "duration_ms": 120 * seq,
                "attempt": 1,
            },
        )
    store.finish_run(claimed.id, RunStatus.failed, "step 'step-2' exit 3", remediated=False)
    return claimed.id


def test_old_step_output_is_emptied_and_the_run_summary_stays(db: Database, tmp_path: Path) -> None:
    store = Store(db)
    old_run = run_with_steps(store, NOW - timedelta(days=100))
    new_run = run_with_steps(store, NOW - timedelta(days=10))
    kept = store.get_run(new_run)

    pruned = Retention(db).prune_step_output(NOW - timedelta(days=90))

    assert pruned == 2
    old = store.get_run(old_run)
    assert old.status == "failed" and old.error == "step 'step-2' exit 3"
    assert [(s.seq, s.status, s.exit_code, s.duration_ms) for s in old.steps] == [
        (1, "succeeded", 0, 120),
        (2, "failed", 3, 240),
    ]
    assert [s.params for s in old.steps] == [{"command": "df -h /var/1"}, {"command": "df -h /var/2"}]
    assert [(s.stdout, s.stderr) for s in old.steps] == [("", ""), ("", "")]
    assert store.get_run(new_run) == kept
    assert kept.steps[1].stderr == "warning: slow disk\n"
    assert Retention(db).prune_step_output(NOW - timedelta(days=90)) == 0

    shown = run_cli("runs", "show", str(old_run), "--json", config=write_config(tmp_path, db.url))
    assert [(s["status"], s["exit_code"], s["stdout"]) for s in shown["steps"]] == [
        ("succeeded", 0, ""),
        ("failed", 3, ""),
    ]


def test_step_output_batches_are_bounded(db: Database) -> None:
    store = Store(db)
    run_with_steps(store, NOW - timedelta(days=100))
    run_with_steps(store, NOW - timedelta(days=100))
    retention = Retention(db)
    cutoff = NOW - timedelta(days=90)

    assert [retention.prune_step_output(cutoff, batch=3) for _ in range(3)] == [3, 1, 0]
    with db.read() as conn:
        left = conn.execute(select(step_results.c.stdout, step_results.c.stderr)).all()
    assert len(left) == 4 and set(left) == {("", "")}


# ------------------------------------------------------------- the scheduled job


def test_the_prune_job_works_through_the_backlog_in_batches(db: Database) -> None:
    store = Store(db)
    old_events(store, 5)
    run_with_steps(store, NOW - timedelta(days=100))
    clock = ManualClock(NOW)
    job = PruneJob(Retention(db), RetentionConfig(), clock=clock, batch=2, max_batches=2)

    # The steps' events are new; five old events need three batches, the job does two a turn.
    assert job() == {"events": 4, "step_output": 2}
    assert job() == {"events": 1, "step_output": 0}
    assert job() == {"events": 0, "step_output": 0}
    assert sum(body == "" for body in bodies(db).values()) == 5


def test_a_null_retention_prunes_nothing(db: Database) -> None:
    store = Store(db)
    old_events(store, 2)
    run_with_steps(store, NOW - timedelta(days=1000))
    before = bodies(db)
    job = PruneJob(Retention(db), RetentionConfig(events=None, step_output=None), clock=ManualClock(NOW))

    assert not job.enabled
    assert job() == {}
    assert bodies(db) == before
    with db.read() as conn:
        assert "" not in set(conn.execute(select(step_results.c.stdout)).scalars())
