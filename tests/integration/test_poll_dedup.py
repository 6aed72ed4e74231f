"""A poll that returns an unchanged alert changes nothing: no event row, no occurrence counted,
on SQLite and PostgreSQL, through the real intake writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from engine.catalog.loader import load_catalog
from engine.clock import ManualClock
from engine.intake.classify import CatalogView, Intake
from engine.models import Alert, AlertStatus
from engine.scheduler import PollJob
from engine.store import Store
from engine.store.db import Database
from engine.store.tables import events
from tests.conftest import TEST_CATALOG

VIEW = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _disk(starts_at: datetime) -> Alert:
    return Alert(
        source="am-dc1",
        name="NodeFilesystemAlmostOutOfSpace",
        fingerprint="poll-disk-1",
        status=AlertStatus.firing,
        labels={"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "db-1:9100", "mountpoint": "/"},
        starts_at=starts_at,
    )


def _events(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def test_an_unchanged_alert_polled_again_stores_nothing(db: Database) -> None:
    clock = ManualClock(START)
    store = Store(db, clock=clock)
    intake = Intake(store, VIEW)
    intake.start()
    firing = [_disk(START)]
    try:
        job = PollJob("am-dc1", lambda: firing, store, intake, clock=clock)
        job()
        [opened] = store.open_incidents_of_source("am-dc1")
        assert _events(db) == 1
        for _ in range(3):
            clock.advance(timedelta(seconds=30))
            job()
        assert _events(db) == 1
        [incident] = store.list_incidents()
        assert incident.occurrences == 1 and incident.status == "open"
        # A new instance of the alert (it restarted: a later startsAt) is news; so is its absence.
        firing[0] = _disk(START + timedelta(hours=1))
        job()
        assert _events(db) == 2
        firing.clear()
        job()
        assert _events(db) == 3 and store.open_incidents_of_source("am-dc1") == []
        assert opened.fingerprint == "poll-disk-1"
    finally:
        intake.stop()
