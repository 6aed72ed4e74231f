"""`incidents list` and `runs list` read their page on the driver's own connection (no SQLAlchemy),
on SQLite and PostgreSQL: the same records as the daemon's Store for every filter, and the Store
instead wherever the direct reader cannot vouch for the database (no file yet, schema behind)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text, update

from engine.store import Store
from engine.store.db import Database, open_database
from engine.store.direct import open_direct
from engine.store.tables import incidents, runs
from tests.support.incidents import open_incident

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _history(db: Database) -> None:
    """Incidents of two codes, some resolved and with a deadline; a run on every third one."""
    with db.write() as conn:
        for n in range(30):
            at = T0 + timedelta(minutes=n // 2)  # pairs share a time: the order is (time, id)
            incident = open_incident(conn, at, code=("DISK-001", "NET-002")[n % 2], target=f"db-{n % 4}")
            if n % 5 == 0:
                conn.execute(
                    update(incidents)
                    .where(incidents.c.id == incident)
                    .values(status="resolved", resolved_at=at + timedelta(minutes=3), resolution="manual",
                            due_at=at + timedelta(hours=4), flapping=True)
                )  # fmt: skip
            if n % 3 == 0:
                conn.execute(
                    insert(runs).values(
                        incident_id=incident, playbook=("disk-cleanup", "noop")[n % 2], playbook_version=1,
                        status=("succeeded", "failed")[n % 2], trigger="auto", dry_run=n % 2 == 1,
                        queued_at=at, started_at=at, effective=None if n % 2 else True, context={},
                    )
                )  # fmt: skip


def test_the_direct_reader_gives_the_stores_pages_for_every_filter(db: Database) -> None:
    _history(db)
    store = Store(db)
    direct = open_direct(db.url)
    assert direct is not None
    try:
        since = T0 + timedelta(minutes=4)
        for filters in (
            {},
            {"status": "resolved"},
            {"code": "NET-002", "limit": 4},
            {"since": since},
            {"status": "open", "code": "DISK-001", "since": since, "limit": 3},
        ):
            page = direct.list_incidents(**filters)  # type: ignore[arg-type]
            assert page == store.list_incidents(**filters), filters  # type: ignore[arg-type]
        everything = direct.list_incidents()
        assert len(everything) == 30
        assert sum(i.status == "resolved" for i in everything) == 6
        assert all(i.flapping == (i.status == "resolved") for i in everything)
        assert all(i.opened_at.tzinfo == UTC for i in everything)
        for filters in ({}, {"status": "failed"}, {"playbook": "disk-cleanup", "since": since}):
            found = direct.list_runs(**filters)  # type: ignore[arg-type]
            assert found == store.list_runs(**filters), filters  # type: ignore[arg-type]
        assert len(direct.list_runs()) == 10
        assert {run.dry_run for run in direct.list_runs(status="failed")} == {True}
    finally:
        direct.close()


def test_the_stores_pages_honour_owner_codes_and_the_cursor(db: Database) -> None:
    _history(db)
    store = Store(db)
    assert store.list_incidents(codes=[]) == []
    mine = store.list_incidents(codes=["NET-002"], limit=100)
    assert len(mine) == 15 and {i.code for i in mine} == {"NET-002"}
    first = store.list_incidents(limit=7)
    rest = store.list_incidents(limit=100, before_id=first[-1].id)
    assert [i.id for i in first + rest] == [i.id for i in store.list_incidents(limit=100)]


def test_a_sqlite_file_not_made_yet_is_left_to_the_store(tmp_path: Path) -> None:
    missing = tmp_path / "suture.db"
    assert open_direct(f"sqlite:///{missing}") is None
    assert not missing.exists()
    assert open_direct("sqlite://") is None
    assert open_direct(f"sqlite:///{missing}?mode=ro") is None


def test_a_schema_behind_this_version_is_left_to_the_store(db_url: str) -> None:
    db = open_database(db_url, upgrade=True)
    try:
        direct = open_direct(db_url)
        assert direct is not None
        direct.close()
        with db.write() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0008'"))
    finally:
        db.dispose()
    assert open_direct(db_url) is None
