"""The reads replay needs: the stored alerts of a period in arrival order, each with what it did
(its code, its incident), streamed; and from either store, the decision each incident's first run
records. Plain SQL; what it means is engine.intake.replay's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, func, insert, select

from engine.alertfields import maker
from engine.models import Alert, RunDecision
from engine.store.bulk import select_rows
from engine.store.db import Database
from engine.store.sqltime import sqlite_utc_datetime, sqlite_utc_text
from engine.store.tables import ALERT_COLUMNS, alerts, incidents, runs, silences

#: Rows fetched at a time from the period's alerts.
STREAM_ROWS = 5000


@dataclass(slots=True)
class Arrival:
    """A stored alert and what it did: its code and its incident (if any). The decision of that
    incident's first run is read apart (`first_runs`), for the incidents the period opened only: a
    subquery per alert was a probe of the runs for each of a million alerts.

    Not frozen: a frozen dataclass costs a microsecond more to build, once per replayed alert."""

    alert_id: int
    event_id: int
    received_at: datetime
    alert: Alert
    code: str
    incident_id: int | None
    incident_code: str | None
    incident_opened_at: datetime | None


def _first_run_of(incident_id: Any) -> Any:
    earlier = runs.alias("earlier")
    return select(func.min(earlier.c.id)).where(earlier.c.incident_id == incident_id).scalar_subquery()


def _arrivals_query(since: datetime, until: datetime) -> Select[Any]:
    a, i = alerts.c, incidents.c
    return (
        select(*_COLUMNS)
        .select_from(alerts.outerjoin(incidents, i.id == a.incident_id))
        .where(a.received_at >= since, a.received_at < until)
        .order_by(a.received_at, a.event_id, a.id)
    )


#: What each arrival reads besides the alert's own stored fields, which come last.
_ABOUT = (
    alerts.c.id, alerts.c.event_id, alerts.c.received_at, alerts.c.code, alerts.c.incident_id,
    incidents.c.code, incidents.c.opened_at,
)  # fmt: skip
_COLUMNS = (*_ABOUT, *(alerts.c[name] for name in ALERT_COLUMNS))
_ALERT_AT = len(_ABOUT)

#: The same query on SQLite, run through the driver: SQLAlchemy's processing of each row's
#: times and JSON was most of what reading a month of alerts cost.
_SQLITE_ARRIVALS = (
    "SELECT a.id, a.event_id, a.received_at, a.code, a.incident_id, i.code, i.opened_at, "
    + ", ".join(f"a.{name}" for name in ALERT_COLUMNS)
    + " FROM alerts AS a LEFT OUTER JOIN incidents AS i ON i.id = a.incident_id"
    " WHERE a.received_at >= ? AND a.received_at < ?"
    " ORDER BY a.received_at, a.event_id, a.id"
)

#: An alert from its stored columns: as the Core query gives them, or as SQLite's texts.
_alert_of_row = maker(ALERT_COLUMNS)
_alert_of_text = maker(ALERT_COLUMNS, load_map=orjson.loads)


def arrivals(db: Database, since: datetime, until: datetime) -> Iterator[Arrival]:
    """The alerts received in [since, until), in arrival order, streamed."""
    with db.read() as conn:
        if db.is_sqlite:
            yield from _sqlite_arrivals(conn, since, until)
            return
        at, make = _ALERT_AT, _alert_of_row
        for row in conn.execution_options(yield_per=STREAM_ROWS).execute(_arrivals_query(since, until)):
            alert_id, event_id, received_at, code, incident_id, incident_code, opened_at = row[:at]
            alert = make(row[at:], _same)
            yield Arrival(alert_id, event_id, received_at, alert, code, incident_id, incident_code, opened_at)


def _sqlite_arrivals(conn: Connection, since: datetime, until: datetime) -> Iterator[Arrival]:
    """The same rows through the driver, its texts made what the Core query gives (aware times,
    parsed JSON), fetched STREAM_ROWS at a time."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_SQLITE_ARRIVALS, (sqlite_utc_text(since), sqlite_utc_text(until)))
        at, make = _ALERT_AT, _alert_of_text
        while chunk := cursor.fetchmany(STREAM_ROWS):
            for row in chunk:
                alert_id, event_id, received_at, code, incident_id, incident_code, opened_at = row[:at]
                yield Arrival(
                    alert_id, event_id, sqlite_utc_datetime(received_at), make(row[at:], _time), code,
                    incident_id, incident_code, _time(opened_at),
                )  # fmt: skip
    finally:
        cursor.close()


def _same(value: datetime | None) -> datetime | None:
    return value


def _time(text: str | None) -> datetime | None:
    return None if text is None else sqlite_utc_datetime(text)


def first_runs(conn: Connection, incident_ids: Sequence[int]) -> dict[int, tuple[str, RunDecision]]:
    """Each incident's code and the decision its first run records (the stored history's, or
    the scratch store's)."""
    if conn.dialect.name == "sqlite":
        return _sqlite_first_runs(conn, incident_ids)
    i, r = incidents.c, runs.c
    found: dict[int, tuple[str, RunDecision]] = {}
    for start in range(0, len(incident_ids), 500):
        chosen = incident_ids[start : start + 500]
        query = (
            select(i.id, i.code, r.status, r.trigger, r.not_before, r.reason)
            .select_from(incidents.outerjoin(runs, r.id == _first_run_of(i.id)))
            .where(i.id.in_(chosen))
        )
        for incident_id, code, status, trigger, not_before, reason in conn.execute(query):
            found[incident_id] = (code, RunDecision.of_run(status, trigger, not_before, reason))
    return found


#: On SQLite through the driver, over the id range of the incidents asked for (a replay asks for
#: nearly every incident of its scratch store, and of the period's, in id order): one range scan,
#: not an IN list, and no per-row processing by SQLAlchemy, for a third of a million incidents at
#: the bench's size.
_SQLITE_FIRST_RUNS = (
    "SELECT i.id, i.code, r.status, r.trigger, r.not_before, r.reason"
    " FROM incidents AS i LEFT OUTER JOIN runs AS r ON r.id ="
    " (SELECT min(earlier.id) FROM runs AS earlier WHERE earlier.incident_id = i.id)"
    " WHERE i.id >= ? AND i.id <= ?"
)


def _sqlite_first_runs(conn: Connection, incident_ids: Sequence[int]) -> dict[int, tuple[str, RunDecision]]:
    wanted = set(incident_ids)
    if not wanted:
        return {}
    found: dict[int, tuple[str, RunDecision]] = {}
    for low, high in id_ranges(sorted(wanted)):
        for incident_id, code, status, trigger, not_before, reason in select_rows(
            conn, _SQLITE_FIRST_RUNS, [low, high]
        ):
            if incident_id in wanted:
                found[incident_id] = (code, RunDecision.of_run(status, trigger, _time(not_before), reason))
    return found


#: Ids this close together are read in one range, the ones between them read for nothing.
RANGE_GAP = 64


def id_ranges(ids: Sequence[int], gap: int = RANGE_GAP) -> Iterator[tuple[int, int]]:
    """Sorted ids as (low, high) ranges that skip no more than `gap` ids at a time: a few ids far
    from the rest must not make one range scan read everything between them."""
    if not ids:
        return
    low = high = ids[0]
    for incident_id in ids[1:]:
        if incident_id - high > gap:
            yield low, high
            low = incident_id
        high = incident_id
    yield low, high


def copy_silences(
    source: Database, target: Database, since: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """The silences in force at some time of [since, until), copied as they were made; when each
    starts and ends."""
    with source.read() as conn:
        rows = [
            dict(row._mapping)
            for row in conn.execute(
                select(silences).where(silences.c.starts_at < until, silences.c.ends_at > since)
            )
        ]
    if rows:
        with target.write() as conn:
            conn.execute(insert(silences), rows)
    return [(row["starts_at"], row["ends_at"]) for row in rows]
