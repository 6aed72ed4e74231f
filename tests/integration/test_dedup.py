"""Which incident an alert instance (fingerprint, startsAt) lands on, whatever order deliveries
come in: the store's intake batch on a real SQLite file and a real PostgreSQL database.

One database per backend for the module; each test uses its own fingerprints and reads their
rows back with SQL. The daemon-level versions are in tests/faults/test_delivery_faults.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from engine.intake.runs import BatchPlanner
from engine.models import Alert, AlertStatus, ClassifiedAlert, Mode, Severity, Submission
from engine.records import Receipt
from engine.store import Store, open_database
from engine.store.tables import alerts, incidents, runs
from tests.conftest import throwaway_database, wait_for

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


@dataclass
class Rows:
    incidents: list[dict[str, Any]]  # id, status, occurrences, starts_at, resolution; by id
    alerts: list[dict[str, Any]]  # status, starts_at, incident_id; by id
    runs: int

    @property
    def statuses(self) -> list[str]:
        return [i["status"] for i in self.incidents]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A migrated database of the backend, through the daemon's own store."""
    for db_url in throwaway_database(request.param, tmp_path_factory.mktemp(f"dedup-{request.param}")):
        db = open_database(db_url, upgrade=True)
        try:
            yield Store(db)
        finally:
            db.dispose()


def _fp() -> str:
    return uuid.uuid4().hex[:16]


def _alert(fingerprint: str, start: datetime | None, status: str = "firing") -> ClassifiedAlert:
    alert = Alert.model_validate(
        {
            "source": "alertmanager",
            "name": "DiskFull",
            "fingerprint": fingerprint,
            "status": AlertStatus(status),
            "labels": {"alertname": "DiskFull", "instance": "db-1:9100"},
            "starts_at": start,
            "ends_at": None if status == "firing" else (start or T2) + timedelta(minutes=5),
        }
    )
    return ClassifiedAlert(alert, "DISK-001", "Disk full", Severity.high, "db-1", Mode.auto, ("noop", 1))


def _send(store: Store, *bodies: list[ClassifiedAlert]) -> list[Receipt]:
    """One intake batch (one transaction) holding one submission per body; runs as intake plans them."""
    batch = [Submission("alertmanager", "{}", body) for body in bodies]
    return store.ingest(batch, lambda _conn: BatchPlanner({})).receipts


def _rows(store: Store, fingerprint: str) -> Rows:
    with store.db.read() as conn:
        found = conn.execute(
            select(
                incidents.c.id,
                incidents.c.status,
                incidents.c.occurrences,
                incidents.c.starts_at,
                incidents.c.resolution,
            )
            .where(incidents.c.fingerprint == fingerprint)
            .order_by(incidents.c.id)
        )
        incident_rows = [dict(r._mapping) for r in found]
        alert_rows = [
            dict(r._mapping)
            for r in conn.execute(
                select(alerts.c.status, alerts.c.starts_at, alerts.c.incident_id)
                .where(alerts.c.fingerprint == fingerprint)
                .order_by(alerts.c.id)
            )
        ]
        run_count = len(
            conn.execute(
                select(runs.c.id).where(runs.c.incident_id.in_([i["id"] for i in incident_rows] or [-1]))
            ).all()
        )
    return Rows(incident_rows, alert_rows, run_count)


def test_resolution_and_then_firing_in_one_batch_open_nothing(store: Store) -> None:
    """A resolved alert and the late firing of its instance, committed together: no incident, no
    run, both alerts kept."""
    fp = _fp()
    _send(store, [_alert(fp, T1, "resolved")], [_alert(fp, T1)])
    rows = _rows(store, fp)
    assert rows.incidents == [] and rows.runs == 0
    assert [(a["status"], a["incident_id"]) for a in rows.alerts] == [("resolved", None), ("firing", None)]


def test_an_instance_resolved_first_stays_over_until_a_newer_one_fires(store: Store) -> None:
    """Resolved first, then its firing twice in later batches: nothing opens; a newer startsAt
    then opens one incident and queues its run."""
    fp = _fp()
    _send(store, [_alert(fp, T1, "resolved")])
    for _ in range(2):
        [receipt] = _send(store, [_alert(fp, T1)])
        assert (receipt.opened, receipt.runs_queued) == ([], [])
    _send(store, [_alert(fp, T0)])  # older still: late as well
    assert _rows(store, fp).incidents == []
    [receipt] = _send(store, [_alert(fp, T2)])
    assert len(receipt.opened) == 1 and len(receipt.runs_queued) == 1
    rows = _rows(store, fp)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("open", 1)]
    assert rows.runs == 1


def test_a_late_older_firing_counts_on_the_newest_incident(store: Store) -> None:
    """Fire T1, resolve, then a firing that started at T0 < T1: counted on T1's incident (its
    occurrences, its alerts), nothing opens or runs."""
    fp = _fp()
    _send(store, [_alert(fp, T1)])
    _send(store, [_alert(fp, T1, "resolved")])
    [receipt] = _send(store, [_alert(fp, T0)])
    rows = _rows(store, fp)
    [incident] = rows.incidents
    assert (incident["status"], incident["occurrences"], rows.runs) == ("resolved", 2, 1)
    assert receipt.updated == [incident["id"]] and receipt.opened == []
    assert [a["incident_id"] for a in rows.alerts] == [incident["id"]] * 3


def test_fire_resolve_and_older_firing_in_one_batch(store: Store) -> None:
    """The same three deliveries committed in one batch: one incident, resolved, one run."""
    fp = _fp()
    _send(store, [_alert(fp, T1)], [_alert(fp, T1, "resolved")], [_alert(fp, T0)])
    rows = _rows(store, fp)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("resolved", 2)]
    assert rows.runs == 1


def test_a_redelivered_older_instance_counts_on_its_own_incident(store: Store) -> None:
    """Two instances came and went (T0, then T1); a redelivery of T0's firing bumps T0's incident,
    not the newer one, and reopens nothing."""
    fp = _fp()
    for start in (T0, T1):
        _send(store, [_alert(fp, start)])
        _send(store, [_alert(fp, start, "resolved")])
    _send(store, [_alert(fp, T0)])
    rows = _rows(store, fp)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("resolved", 2), ("resolved", 1)]
    assert rows.alerts[-1]["incident_id"] == rows.incidents[0]["id"]
    assert rows.runs == 2


def test_a_firing_of_an_instance_only_resolution_told_of_bumps_no_older_incident(store: Store) -> None:
    """T0 came and went; T1's resolution arrives before T1's firing. The late firing of T1 opens
    nothing and is not counted on T0's incident (a different instance)."""
    fp = _fp()
    _send(store, [_alert(fp, T0)])
    _send(store, [_alert(fp, T0, "resolved")])
    _send(store, [_alert(fp, T1, "resolved")])
    _send(store, [_alert(fp, T1)])
    rows = _rows(store, fp)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("resolved", 1)]
    assert [a["incident_id"] for a in rows.alerts[2:]] == [None, None]
    assert rows.runs == 1


def test_alerts_without_startsat_keep_opening_after_resolution(store: Store) -> None:
    """Without a startsAt instances cannot be told apart: a firing after the resolution recurs."""
    fp = _fp()
    _send(store, [_alert(fp, None)])
    _send(store, [_alert(fp, None, "resolved")])
    _send(store, [_alert(fp, None, "resolved")])  # told again: no incident to close, none made
    _send(store, [_alert(fp, None)])
    assert _rows(store, fp).statuses == ["resolved", "open"]


def test_the_open_incident_takes_repeats_of_any_startsat(store: Store) -> None:
    """While an incident is open, firing alerts of the fingerprint only count on it, older or newer."""
    fp = _fp()
    _send(store, [_alert(fp, T1)])
    _send(store, [_alert(fp, T0)], [_alert(fp, T2)], [_alert(fp, T1)])
    rows = _rows(store, fp)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("open", 4)]
    assert rows.runs == 1


# SQLite writers take turns, lookup included: the race exists on PostgreSQL only.
@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_replicas_racing_to_open_one_fingerprint_both_store(store: Store) -> None:
    """Two stores (two replicas) look a new fingerprint up before either commits: one opens the
    incident, the other counts on it; both batches are stored, one run is queued."""
    import psycopg

    url = store.db.engine.url.render_as_string(hide_password=False)
    other = Store(open_database(url))
    fp = _fp()
    try:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as lock, psycopg.connect(dsn, autocommit=True) as probe:
            # Reads pass the lock: both look up, find nothing open and queue on their INSERT.
            lock.execute("LOCK TABLE incidents IN EXCLUSIVE MODE")
            with ThreadPoolExecutor(2) as pool:
                barrier = threading.Barrier(2)

                def send(replica: Store) -> Receipt:
                    barrier.wait(timeout=10)
                    [receipt] = _send(replica, [_alert(fp, T1)])
                    return receipt

                futures = [pool.submit(send, replica) for replica in (store, other)]
                waiting = (
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'INSERT INTO incidents%'"
                )
                wait_for(lambda: probe.execute(waiting).fetchone()[0] >= 2, timeout=20)  # type: ignore[index]
                lock.commit()
                receipts = [future.result(timeout=30) for future in futures]
    finally:
        other.db.dispose()
    assert sorted((len(r.opened), len(r.updated)) for r in receipts) == [(0, 1), (1, 0)]
    rows = _rows(store, fp)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("open", 2)]
    assert rows.runs == 1 and len(rows.alerts) == 2


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_only_the_open_fingerprint_violation_counts_as_a_lost_race(store: Store) -> None:
    """A second open incident of one fingerprint is the race the intake retries; a different
    integrity error (an alert naming no stored event) is not retried."""
    from engine.store.store import _lost_open_race

    fp = _fp()
    now = datetime.now(UTC)
    incident = {
        "code": "DISK-001",
        "title": "Disk full",
        "status": "open",
        "severity": "high",
        "target": "db-1",
        "source": "alertmanager",
        "fingerprint": fp,
        "alertname": "DiskFull",
        "starts_at": T1,
        "labels": {},
        "annotations": {},
        "occurrences": 1,
        "opened_at": now,
        "last_seen": now,
    }
    errors: list[IntegrityError] = []
    for statements in (
        [insert(incidents).values(incident), insert(incidents).values(incident)],
        [
            insert(alerts).values(
                event_id=-1,
                source="alertmanager",
                fingerprint=fp,
                name="DiskFull",
                status="firing",
                labels={},
                annotations={},
                received_at=now,
                code="DISK-001",
            )
        ],
    ):
        with pytest.raises(IntegrityError) as caught, store.db.write() as conn:
            for statement in statements:
                conn.execute(statement)
        errors.append(caught.value)
    assert [_lost_open_race(error) for error in errors] == [True, False]


@pytest.mark.parametrize("together", [False, True], ids=["later batch", "same batch"])
def test_an_alert_that_ended_before_its_incident_opened_resolves_it_when_it_opened(
    store: Store, together: bool
) -> None:
    """A firing delivered late (its endsAt, T0 + 5 min, is days before the store's now): the
    incident cannot have been resolved before it was opened, so no time to resolve is negative."""
    fp = _fp()
    firing, resolved = _alert(fp, T0), _alert(fp, T0, "resolved")
    if together:
        _send(store, [firing, resolved])
    else:
        _send(store, [firing])
        _send(store, [resolved])
    with store.db.read() as conn:
        [(opened_at, resolved_at, status)] = conn.execute(
            select(incidents.c.opened_at, incidents.c.resolved_at, incidents.c.status).where(
                incidents.c.fingerprint == fp
            )
        ).all()
    assert status == "resolved"
    assert resolved_at == opened_at > T0 + timedelta(minutes=5)
