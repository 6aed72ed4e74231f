"""The reads replay needs: the stored alerts of a period in arrival order, each with what it did
(its code, its incident, that incident's first run), streamed; and from the scratch store a replay
writes into, the decision of each incident it opened. Plain SQL; what it means is
engine.intake.replay's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, func, insert, select

from engine.models import Alert, AlertStatus, RunDecision
from engine.store.bulk import select_rows
from engine.store.db import Database
from engine.store.tables import alerts, incidents, runs, silences, sqlite_utc_datetime, sqlite_utc_text

#: Rows fetched at a time from the period's alerts.
STREAM_ROWS = 5000


@dataclass(slots=True)
class Arrival:
    """A stored alert and what it did: its code, its incident (if any) and that incident's first
    run, as the run's columns (`first_run` makes the decision of them, wanted for few alerts).

    Not frozen: a frozen dataclass costs a microsecond more to build, once per replayed alert."""

    alert_id: int
    event_id: int
    received_at: datetime
    alert: Alert
    code: str
    incident_id: int | None
    incident_code: str | None
    incident_opened_at: datetime | None
    run: tuple[str | None, str | None, datetime | None, str | None]

    @property
    def first_run(self) -> RunDecision:
        return RunDecision.of_run(*self.run)


def _first_run_of(incident_id: Any) -> Any:
    earlier = runs.alias("earlier")
    return select(func.min(earlier.c.id)).where(earlier.c.incident_id == incident_id).scalar_subquery()


def _arrivals_query(since: datetime, until: datetime) -> Select[Any]:
    a, i, r = alerts.c, incidents.c, runs.c
    return (
        select(*_COLUMNS)
        .select_from(
            alerts.outerjoin(incidents, i.id == a.incident_id).outerjoin(
                runs, r.id == _first_run_of(a.incident_id)
            )
        )
        .where(a.received_at >= since, a.received_at < until)
        .order_by(a.received_at, a.event_id, a.id)
    )


_COLUMNS = (
    alerts.c.id, alerts.c.event_id, alerts.c.received_at, alerts.c.source, alerts.c.name,
    alerts.c.fingerprint, alerts.c.status, alerts.c.labels, alerts.c.annotations, alerts.c.starts_at,
    alerts.c.ends_at, alerts.c.code, alerts.c.incident_id, incidents.c.code, incidents.c.opened_at,
    runs.c.status, runs.c.trigger, runs.c.not_before, runs.c.reason,
)  # fmt: skip


#: The same query on SQLite, run through the driver: SQLAlchemy's processing of each row's
#: times and JSON was most of what reading a month of alerts cost.
_SQLITE_ARRIVALS = (
    "SELECT a.id, a.event_id, a.received_at, a.source, a.name, a.fingerprint, a.status, a.labels,"
    " a.annotations, a.starts_at, a.ends_at, a.code, a.incident_id, i.code, i.opened_at,"
    " r.status, r.trigger, r.not_before, r.reason"
    " FROM alerts AS a LEFT OUTER JOIN incidents AS i ON i.id = a.incident_id"
    " LEFT OUTER JOIN runs AS r ON r.id ="
    " (SELECT min(earlier.id) FROM runs AS earlier WHERE earlier.incident_id = a.incident_id)"
    " WHERE a.received_at >= ? AND a.received_at < ?"
    " ORDER BY a.received_at, a.event_id, a.id"
)


def arrivals(db: Database, since: datetime, until: datetime) -> Iterator[Arrival]:
    """The alerts received in [since, until), in arrival order, streamed."""
    with db.read() as conn:
        if db.is_sqlite:
            yield from _sqlite_arrivals(conn, since, until)
            return
        for row in conn.execution_options(yield_per=STREAM_ROWS).execute(_arrivals_query(since, until)):
            yield _arrival(*row)


def _sqlite_arrivals(conn: Connection, since: datetime, until: datetime) -> Iterator[Arrival]:
    """The same rows through the driver, its texts made what the Core query gives (aware times,
    parsed JSON), fetched STREAM_ROWS at a time."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_SQLITE_ARRIVALS, (sqlite_utc_text(since), sqlite_utc_text(until)))
        while chunk := cursor.fetchmany(STREAM_ROWS):
            for (alert_id, event_id, received_at, source, name, fingerprint, status, labels, annotations,
                 starts_at, ends_at, code, incident_id, incident_code, opened_at,
                 run_status, trigger, not_before, reason) in chunk:  # fmt: skip
                yield _arrival(
                    alert_id, event_id, sqlite_utc_datetime(received_at), source, name, fingerprint,
                    status, orjson.loads(labels), orjson.loads(annotations), _time(starts_at),
                    _time(ends_at), code, incident_id, incident_code, _time(opened_at),
                    run_status, trigger, _time(not_before), reason,
                )  # fmt: skip
    finally:
        cursor.close()


def _arrival(
    alert_id: int, event_id: int, received_at: datetime, source: str, name: str, fingerprint: str,
    status: str, labels: dict[str, str], annotations: dict[str, str], starts_at: datetime | None,
    ends_at: datetime | None, code: str, incident_id: int | None, incident_code: str | None,
    opened_at: datetime | None, run_status: str | None, trigger: str | None,
    not_before: datetime | None, reason: str | None,
) -> Arrival:  # fmt: skip
    alert = Alert.trusted(
        source, name, fingerprint, _STATUS[status], labels, annotations, starts_at, ends_at, None
    )
    run = (run_status, trigger, not_before, reason)
    return Arrival(alert_id, event_id, received_at, alert, code, incident_id, incident_code, opened_at, run)


_STATUS = {status.value: status for status in AlertStatus}


def _time(text: str | None) -> datetime | None:
    return None if text is None else sqlite_utc_datetime(text)


def first_runs(conn: Connection, incident_ids: Sequence[int]) -> dict[int, tuple[str, RunDecision]]:
    """Each incident's code and the decision its first run records (the scratch store)."""
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
#: nearly every incident of its scratch store, in id order): one range scan, not an IN list, and
#: no per-row processing by SQLAlchemy, for a third of a million incidents at the bench's size.
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
    rows = select_rows(conn, _SQLITE_FIRST_RUNS, [min(wanted), max(wanted)])
    for incident_id, code, status, trigger, not_before, reason in rows:
        if incident_id in wanted:
            found[incident_id] = (code, RunDecision.of_run(status, trigger, _time(not_before), reason))
    return found


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
