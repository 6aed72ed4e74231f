"""Pages of incidents and runs through the cursor the API hands out, on SQLite and PostgreSQL: newest
first by (time, id), every row exactly once across pages even where many share a time, and a cursor
whose row is gone still pages on by id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from engine.store import Store
from engine.store.db import Database
from engine.store.tables import incidents
from tests.support.incidents import open_incident

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def opened(db: Database, at: datetime, code: str = "DISK-001") -> int:
    with db.write() as conn:
        return open_incident(conn, at, code)


def test_pages_hold_every_incident_once_newest_first(db: Database) -> None:
    # Ids out of time order, and runs of equal times: the cursor must page on (time, id).
    ids = [opened(db, T0 + timedelta(minutes=(n * 7) % 5)) for n in range(23)]
    opened(db, T0, code="NET-002")  # another code: never on these pages
    store = Store(db)

    pages, cursor = [], None
    while True:
        page = store.list_incidents(code="DISK-001", limit=4, before_id=cursor)
        if not page:
            break
        pages.append(page)
        cursor = page[-1].id

    seen = [incident.id for page in pages for incident in page]
    assert sorted(seen) == sorted(ids)
    assert len(pages) == 6
    keys = [(incident.opened_at, incident.id) for page in pages for incident in page]
    assert keys == sorted(keys, reverse=True)


def test_a_cursor_whose_incident_is_gone_pages_on_by_id(db: Database) -> None:
    ids = [opened(db, T0 + timedelta(minutes=n)) for n in range(6)]
    with db.write() as conn:
        conn.execute(delete(incidents).where(incidents.c.id == ids[3]))

    page = Store(db).list_incidents(limit=10, before_id=ids[3])

    assert [incident.id for incident in page] == [ids[2], ids[1], ids[0]]
