"""The time series the console's dashboard draws and engine.store.history does not give: incidents
opened per UTC day and code, and the times to resolve of each UTC day and severity.

Each read is one grouped query over the window [since, until) of `opened_at` (what every stats
number counts), returning a row per group, never a row per incident; the arithmetic (medians,
percentiles) is the caller's, as with engine.store.history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, func, select

from engine.store.db import Database
from engine.store.sqlfn import collected, micros_between, numbers, utc_day
from engine.store.tables import incidents


@dataclass(frozen=True, slots=True)
class DayCount:
    """Incidents of one code opened on one UTC day."""

    day: date
    code: str
    incidents: int


@dataclass(frozen=True, slots=True)
class DayResolveTimes:
    """Incidents of one severity opened on one UTC day and resolved since: resolved_at - opened_at
    of each, in microseconds (unsorted)."""

    day: date
    severity: str
    ttr_us: list[int]


def _day(text: str) -> date:
    return date.fromisoformat(text)


class Trends:
    """Read-only grouped queries over incidents, per UTC day."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def opened_per_day(self, since: datetime, until: datetime) -> list[DayCount]:
        """Incidents opened in [since, until), per UTC day and code (days and codes with none left out)."""
        i = incidents.c
        # Walk the (code, opened_at) index code by code: each code's window is one range of it,
        # which holds all the query reads (no table row is touched). The codes come from a recursive
        # probe of the same index (one step per code), since SQLite cannot skip-scan without ANALYZE.
        step = incidents.alias("step")
        seed = select(func.min(i.code).label("code")).cte("known", recursive=True)
        following = select(func.min(step.c.code)).where(step.c.code > seed.c.code).scalar_subquery()
        known = seed.union_all(select(following).where(seed.c.code.is_not(None)))
        day = utc_day(i.opened_at).label("day")
        query = (
            select(i.code, day, func.count())
            .select_from(known.join(incidents, i.code == known.c.code))
            .where(and_(i.opened_at >= since, i.opened_at < until))
            .group_by(i.code, utc_day(i.opened_at))
        )
        with self.db.read() as conn:
            return [DayCount(_day(d), code, int(n)) for code, d, n in conn.execute(query)]

    def resolve_times_per_day(self, since: datetime, until: datetime) -> list[DayResolveTimes]:
        """Times to resolve of the incidents opened in [since, until) and resolved, per UTC day of
        opening and severity (an incident still open is in no list)."""
        i = incidents.c
        day = utc_day(i.opened_at).label("day")
        query = (
            select(day, i.severity, collected(micros_between(i.opened_at, i.resolved_at)))
            .where(and_(i.opened_at >= since, i.opened_at < until, i.resolved_at.is_not(None)))
            .group_by(utc_day(i.opened_at), i.severity)
        )
        with self.db.read() as conn:
            return [
                DayResolveTimes(_day(d), severity, numbers(ttr)) for d, severity, ttr in conn.execute(query)
            ]
