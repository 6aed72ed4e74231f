"""The counts `/metrics` reads from the database at every scrape: open incidents by code and
severity, overdue incidents, queued runs and runs awaiting approval.

Read at scrape time rather than kept by hooks because they are states, not events: a counter
kept in memory would be wrong after a restart, a reload or a change made by another process
(an intake helper, `suture incidents resolve`). Three indexed aggregates in one read, so a
scrape every 15 s costs the database next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select

from engine.models import IncidentStatus, RunStatus
from engine.store.db import Database
from engine.store.tables import incidents, runs


@dataclass(frozen=True, slots=True)
class StoreGauges:
    #: Open incidents by (code, severity); codes with none open are absent.
    open_incidents: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Open incidents past their respond-by (not acknowledged) or resolve-by deadline.
    overdue_incidents: int = 0
    runs_queued: int = 0
    runs_awaiting_approval: int = 0


def read_gauges(db: Database, now: datetime) -> StoreGauges:
    """The counts as of `now`; raises StoreUnavailable when the database cannot be read."""
    open_ = incidents.c.status == IncidentStatus.open.value
    overdue = and_(
        open_,
        or_(
            and_(incidents.c.respond_by <= now, incidents.c.acknowledged_at.is_(None)),
            incidents.c.due_at <= now,
        ),
    )
    waiting = (RunStatus.queued.value, RunStatus.awaiting_approval.value)
    with db.read() as conn:
        by_code = {
            (str(code), str(severity)): int(count)
            for code, severity, count in conn.execute(
                select(incidents.c.code, incidents.c.severity, func.count())
                .where(open_)
                .group_by(incidents.c.code, incidents.c.severity)
            )
        }
        overdue_count = conn.execute(select(func.count()).select_from(incidents).where(overdue)).scalar()
        by_status = {
            str(status): int(count)
            for status, count in conn.execute(
                select(runs.c.status, func.count()).where(runs.c.status.in_(waiting)).group_by(runs.c.status)
            )
        }
    return StoreGauges(
        open_incidents=by_code,
        overdue_incidents=int(overdue_count or 0),
        runs_queued=by_status.get(RunStatus.queued.value, 0),
        runs_awaiting_approval=by_status.get(RunStatus.awaiting_approval.value, 0),
    )
