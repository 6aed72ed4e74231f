"""The time series the console's dashboard draws and engine.store.history does not give: incidents
opened per UTC day and code, and the times to resolve of each UTC day and severity.

Each read is grouped queries over the window [since, until) of `opened_at` (what every stats
number counts), returning a row per group, never a row per incident; `per_day` takes the days and
hours already counted from engine.store.buckets. The arithmetic (medians, percentiles) is the
caller's, as with engine.store.history.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, Connection, and_, func, select

from engine.store.buckets import Buckets, cover, gaps, same_snapshot
from engine.store.db import Database
from engine.store.sqlfn import collected, micros_between, numbers, utc_day
from engine.store.tables import incidents
from engine.store.tallies import Windows, reach, windows_key


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
        self.buckets = Buckets(db)

    def opened_per_day(self, since: datetime, until: datetime) -> list[DayCount]:
        """Incidents opened in [since, until), per UTC day and code (days and codes with none left out)."""
        with self.db.read() as conn:
            return _opened_by_code(conn, _opened(since, until))

    def resolve_times_per_day(self, since: datetime, until: datetime) -> list[DayResolveTimes]:
        """Times to resolve of the incidents opened in [since, until) and resolved, per UTC day of
        opening and severity (an incident still open is in no list)."""
        with self.db.read() as conn:
            return _resolve_times(conn, _opened(since, until))

    def per_day(
        self, since: datetime, until: datetime, windows: Mapping[str, Windows], default: Windows
    ) -> tuple[list[DayCount], list[DayResolveTimes]]:
        """Both series at once, the counted days and hours (engine.store.buckets, counted with
        these windows) read whole and only the rest counted here."""
        opened: Counter[tuple[date, str]] = Counter()
        times: dict[tuple[date, str], list[int]] = defaultdict(list)
        with self.db.read() as conn:
            same_snapshot(conn)
            key, recurrence = windows_key(windows, default), reach(windows, default)
            kept = cover(since, until, self.buckets.usable(conn, since, until, key, recurrence))
            for bucket in kept:
                day = bucket.starts.date()
                tallies, _, _ = bucket.rows()
                for code, severity, n, *_numbers, ttr_us, _tta_us in tallies:
                    opened[(day, code)] += n
                    times[(day, severity)].extend(ttr_us)
            pending = sorted(incident for bucket in kept for incident in bucket.pending)
            chosen = [_opened(start, end) for start, end in gaps(since, until, kept)]
            chosen += [incidents.c.id.in_(pending[at : at + 500]) for at in range(0, len(pending), 500)]
            for condition in chosen:
                for found in _opened_by_code(conn, condition):
                    opened[(found.day, found.code)] += found.incidents
                for resolved in _resolve_times(conn, condition):
                    times[(resolved.day, resolved.severity)].extend(resolved.ttr_us)
        return (
            [DayCount(day, code, n) for (day, code), n in sorted(opened.items())],
            [DayResolveTimes(day, severity, ttr) for (day, severity), ttr in sorted(times.items())],
        )


def _opened(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(incidents.c.opened_at >= since, incidents.c.opened_at < until)


def _opened_by_code(conn: Connection, chosen: ColumnElement[bool]) -> list[DayCount]:
    """The incidents `chosen` per UTC day and code."""
    i = incidents.c
    query = (
        select(i.code, utc_day(i.opened_at), func.count())
        .where(chosen)
        .group_by(i.code, utc_day(i.opened_at))
    )
    return [DayCount(_day(d), code, int(n)) for code, d, n in conn.execute(query)]


def _resolve_times(conn: Connection, chosen: ColumnElement[bool]) -> list[DayResolveTimes]:
    i = incidents.c
    day = utc_day(i.opened_at).label("day")
    query = (
        select(day, i.severity, collected(micros_between(i.opened_at, i.resolved_at)))
        .where(chosen, i.resolved_at.is_not(None))
        .group_by(utc_day(i.opened_at), i.severity)
    )
    return [DayResolveTimes(_day(d), severity, numbers(ttr)) for d, severity, ttr in conn.execute(query)]
