"""Maintenance windows from config.yaml: while one covers an incident, no automatic run starts.

A window is one-off (`from`/`until`) or recurring (`cron` + `duration` in a `timezone`). A cron
window is computed in its own time zone, so `0 2 * * 0` in Europe/Berlin stays at 02:00 local
across daylight saving time (on the spring-forward night croniter fires at 03:00, the first local
time that exists; on the fall-back night it fires at both 02:00s and the window spans both).
Pure: the gate looks at `now` only; a window remembers its last computed span because croniter
costs far more than one alert's other gates, and the answer is the same until the next firing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import croniter

from engine.policy.decisions import ALLOW, Decision, Hold
from engine.policy.matchers import Matchers, Subject, compile_matchers
from engine.policy.request import RunHistory, RunRequest
from engine.records import MaintenanceEntry

if TYPE_CHECKING:
    from engine.config import MaintenanceConfig

#: Firings that overlap the window before them extend it at most this many times (a cron that
#: fires more often than its duration would otherwise never end).
_MAX_OVERLAPS = 50
#: croniter's `get_prev` is strictly before its start: a firing exactly at `now` counts.
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _Span:
    """What a cron window looks like between two firings: for `prev <= t < next`, the window is
    active while `t < end`."""

    prev: datetime | None
    next: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """One entry of `maintenance:`; either `starts`/`until`, or `cron`/`duration` in `timezone`."""

    name: str
    matchers: Matchers
    starts: datetime | None = None
    until: datetime | None = None
    cron: str | None = None
    duration: timedelta | None = None
    timezone: str = "UTC"
    #: The last computed `_Span` (one slot, replaced whole: safe across threads).
    _cache: list[_Span | None] = field(
        default_factory=lambda: [None], init=False, repr=False, compare=False, hash=False
    )

    def ends_at(self, now: datetime) -> datetime | None:
        """When the window that covers `now` ends; None when `now` is outside every occurrence.
        A window includes its start and excludes its end."""
        if self.cron is None:
            if self.starts is not None and self.until is not None and self.starts <= now < self.until:
                return self.until
            return None
        span = self._span(now)
        return span.end if span.end is not None and now < span.end else None

    def next_start(self, now: datetime) -> datetime | None:
        """When the window next begins after `now` (None: a one-off window that has begun or ended)."""
        if self.cron is None:
            return self.starts if self.starts is not None and now < self.starts else None
        return self._span(now).next

    def _span(self, now: datetime) -> _Span:
        cached = self._cache[0]
        if cached is not None and (cached.prev is None or cached.prev <= now) and now < cached.next:
            return cached
        span = self._compute(now)
        self._cache[0] = span
        return span

    def _compute(self, now: datetime) -> _Span:
        assert self.cron is not None and self.duration is not None
        zone = ZoneInfo(self.timezone)
        following = _utc(croniter(self.cron, now.astimezone(zone)).get_next(datetime))
        try:
            # In UTC, then local: local arithmetic would lose which of two equal wall times (`fold`).
            prev = _utc(croniter(self.cron, (now + _TICK).astimezone(zone)).get_prev(datetime))
        except (ValueError, KeyError):  # no firing before now that croniter can find
            return _Span(None, following, None)
        end = prev + self.duration
        later = croniter(self.cron, following.astimezone(zone))
        firing = following
        for _ in range(_MAX_OVERLAPS):
            if firing > end:
                break
            end = max(end, firing + self.duration)
            firing = _utc(later.get_next(datetime))
        return _Span(prev, following, end)

    def entry(self, now: datetime) -> MaintenanceEntry:
        """The window as `suture status` shows it."""
        end = self.ends_at(now)
        return MaintenanceEntry(
            name=self.name,
            match=self.matchers.as_dict(),
            active=end is not None,
            ends_at=end,
            next_start=None if end is not None else self.next_start(now),
        )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def configured_windows(entries: Iterable[MaintenanceConfig]) -> tuple[MaintenanceWindow, ...]:
    """The `maintenance:` entries of a loaded config as windows (config validated them already)."""
    found = []
    for index, entry in enumerate(entries):
        where = f"maintenance.{index}.match"
        found.append(
            MaintenanceWindow(
                name=entry.name,
                matchers=compile_matchers(entry.match, where),
                starts=entry.starts,
                until=entry.until,
                cron=entry.cron,
                duration=entry.duration,
                timezone=entry.timezone,
            )
        )
    return tuple(found)


def in_maintenance(
    windows: Sequence[MaintenanceWindow], subject: Subject, now: datetime
) -> tuple[MaintenanceWindow, datetime] | None:
    """The window covering `subject` at `now` that ends last (the first of those in config order),
    with its end; None when no window covers it."""
    found: tuple[MaintenanceWindow, datetime] | None = None
    for window in windows:
        if not window.matchers.matches(subject):
            continue
        end = window.ends_at(now)
        if end is not None and (found is None or end > found[1]):
            found = (window, end)
    return found


def status_entries(windows: Sequence[MaintenanceWindow], now: datetime) -> list[MaintenanceEntry]:
    """Every configured window for `suture status`, active ones first, each in config order."""
    entries = [window.entry(now) for window in windows]
    return sorted(entries, key=lambda entry: not entry.active)


def maintenance(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """No automatic run for an incident a maintenance window covers; the incident says which."""
    if not history.windows:
        return ALLOW
    found = in_maintenance(history.windows, request.subject(), now)
    if found is None:
        return ALLOW
    window, end = found
    return Hold(
        reason=f"maintenance {window.name} until {iso(end)}",
        gate="maintenance",
        silenced_by=f"maintenance {window.name}",
    )


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with `Z`, as every time in Suture's JSON."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
