"""The reads replay needs: the stored alerts of a period in arrival order, each with what it did
(its code, its incident, that incident's first run), streamed; and from the scratch store a replay
writes into, what each replayed alert did. Plain SQL; what it means is engine.intake.replay's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from engine.models import Alert, AlertStatus, RunDecision
from engine.store.db import Database
from engine.store.tables import alerts, incidents, runs, silences

#: Rows fetched at a time from the period's alerts.
STREAM_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Arrival:
    """A stored alert and what it did: its code, its incident (if any) and whether it opened it
    (`opened`: its incident opened at this alert's arrival, within the period)."""

    alert_id: int
    event_id: int
    received_at: datetime
    alert: Alert
    code: str
    incident_id: int | None
    incident_code: str | None
    incident_opened_at: datetime | None
    first_run: RunDecision


def _first_run_of(incident_id: Any) -> Any:
    earlier = runs.alias("earlier")
    return select(func.min(earlier.c.id)).where(earlier.c.incident_id == incident_id).scalar_subquery()


def arrivals(db: Database, since: datetime, until: datetime) -> Iterator[Arrival]:
    """The alerts received in [since, until), in arrival order, streamed."""
    a, i, r = alerts.c, incidents.c, runs.c
    query = (
        select(
            a.id,
            a.event_id,
            a.received_at,
            a.source,
            a.name,
            a.fingerprint,
            a.status,
            a.labels,
            a.annotations,
            a.starts_at,
            a.ends_at,
            a.code,
            a.incident_id,
            i.code,
            i.opened_at,
            r.status,
            r.trigger,
            r.not_before,
            r.reason,
        )  # fmt: skip
        .select_from(
            alerts.outerjoin(incidents, i.id == a.incident_id).outerjoin(
                runs, r.id == _first_run_of(a.incident_id)
            )
        )
        .where(a.received_at >= since, a.received_at < until)
        .order_by(a.received_at, a.event_id, a.id)
    )
    with db.read() as conn:
        for row in conn.execution_options(yield_per=STREAM_ROWS).execute(query):
            (alert_id, event_id, received_at, source, name, fingerprint, status, labels, annotations,
             starts_at, ends_at, code, incident_id, incident_code, opened_at,
             run_status, trigger, not_before, reason) = row  # fmt: skip
            alert = Alert.trusted(
                source, name, fingerprint, AlertStatus(status), labels, annotations, starts_at, ends_at, None
            )
            yield Arrival(
                alert_id,
                event_id,
                received_at,
                alert,
                code,
                incident_id,
                incident_code,
                opened_at,
                RunDecision.of_run(run_status, trigger, not_before, reason),
            )


def stored_after(conn: Connection, alert_id: int) -> list[tuple[int, str, int | None]]:
    """(id, code, incident id) of the alerts stored after `alert_id`, in id order (the scratch store)."""
    query = select(alerts.c.id, alerts.c.code, alerts.c.incident_id).where(alerts.c.id > alert_id)
    return [(n, code, incident) for n, code, incident in conn.execute(query.order_by(alerts.c.id))]


def first_runs(conn: Connection, incident_ids: Sequence[int]) -> dict[int, tuple[str, RunDecision]]:
    """Each incident's code and the decision its first run records (the scratch store)."""
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


def copy_silences(source: Database, target: Database, since: datetime, until: datetime) -> int:
    """The silences in force at some time of [since, until), copied as they were made."""
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
    return len(rows)
