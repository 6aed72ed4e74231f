"""When an incident escalates: pure decisions over its deadlines, acknowledgement and last escalation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.records import Incident


@dataclass(frozen=True, slots=True)
class Escalation:
    #: `respond` (nobody acknowledged in time) or `resolve` (still open past its due time).
    deadline: str
    reason: str


def escalation_due(
    incident: Incident, last_for: str | None, now: datetime, repeat: timedelta
) -> Escalation | None:
    """The escalation `incident` needs now, if any.

    A deadline escalates once when it passes; the resolve deadline outranks the response one.
    While it stays overdue and nobody acknowledged, escalation repeats every `repeat`. An
    acknowledged incident escalates again only when its resolve deadline passes."""
    if incident.status != "open":
        return None
    late_response = (
        incident.respond_by is not None and incident.respond_by <= now and incident.acknowledged_at is None
    )
    late_resolve = incident.due_at is not None and incident.due_at <= now
    if late_resolve:
        deadline, words = "resolve", f"still open past its resolve deadline ({_at(incident.due_at)})"
    elif late_response:
        deadline, words = (
            "respond",
            f"not acknowledged by its first-response deadline ({_at(incident.respond_by)})",
        )
    else:
        return None
    last = incident.escalated_at
    if last is None or last_for != deadline:
        return Escalation(deadline, f"{incident.code} on {incident.target or 'unknown target'} {words}")
    if incident.acknowledged_at is None and now - last >= repeat:
        since = _span(now - incident.opened_at)
        return Escalation(
            deadline,
            f"{incident.code} on {incident.target or 'unknown target'} {words}; open for {since},"
            " nobody has acknowledged it",
        )
    return None


def approval_expired(queued_at: datetime, timeout: timedelta | None, now: datetime) -> bool:
    return timeout is not None and now - queued_at >= timeout


def _at(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value is not None else "?"


def _span(value: timedelta) -> str:
    """A person's reading of a time span, to the minute: `3h 20m`, `2d 1h`, `45m`."""
    minutes = max(int(value.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return " ".join(parts[:2]) or "under a minute"
