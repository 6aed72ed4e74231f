"""The words every channel shares, so a page reads the same in Slack, PagerDuty and an inbox.

A person woken at 3 a.m. needs, in the message itself: what, where, how bad, since when, the
deadlines, what automation did, why this message is sent now, the first manual step, who owns
the code, and a link. `title` is the one line (subject, header, summary); `fields` the rest,
in that order, leaving out what the notice does not have. Values are plain text, one line each
(an alert's title may carry newlines); each kind escapes them for its own markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.notify.notice import TEST_EVENT, Notice

#: How each event reads after the code: "DISK-001 escalated".
EVENT_WORDS = {
    "incident_opened": "opened",
    "escalation": "escalated",
    "run_failed": "run failed",
    "approval_needed": "needs approval",
    "approval_expired": "approval expired",
    "resolved": "resolved",
    "flapping": "is flapping",
    "breaker_open": "breaker open",
    "storm": "alert storm",
    TEST_EVENT: "test message",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One line of a message: `key` for channels that place it, `label` for people."""

    key: str
    label: str
    value: str


def one_line(value: Any) -> str:
    """Text on one line: alert titles may hold newlines, which would break a header or subject."""
    return " ".join(str(value).split()) if value is not None else ""


def event_words(event: str) -> str:
    return EVENT_WORDS.get(event, event.replace("_", " "))


def title(notice: Notice) -> str:
    """`[CRITICAL] DISK-001 escalated: Filesystem almost full on db-1`."""
    incident = notice.incident
    severity = one_line(incident.get("severity")).upper()
    tag = "TEST" if notice.event == TEST_EVENT else severity or "INFO"
    head = f"[{tag}] {one_line(incident.get('code')) or 'Suture'} {event_words(notice.event)}"
    what = one_line(incident.get("title"))
    where = one_line(incident.get("target"))
    if what and where:
        return f"{head}: {what} on {where}"
    if what or where:
        return f"{head}: {what or where}"
    return head


def moment(value: Any) -> datetime | None:
    """A time from the incident's JSON (ISO 8601 text) or a datetime; naive counts as UTC."""
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, str) and value:
        try:
            found = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def span(delta: timedelta) -> str:
    """`45s`, `12m`, `2h 5m`, `3d 4h`: the two largest units, enough to act on."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    counts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        counts.append((count, unit))
    first = next(i for i, (count, _) in enumerate(counts) if count)
    return " ".join(f"{count}{unit}" for count, unit in counts[first : first + 2] if count)


def utc_text(at: datetime) -> str:
    """ISO 8601 in UTC with `Z`, as the API writes times."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso(value: Any) -> str | None:
    """A time of the incident's JSON as the API writes it, or None when there is none."""
    at = moment(value)
    return utc_text(at) if at else None


def clip(value: str, limit: int) -> str:
    """At most `limit` characters; what was cut is shown by an ellipsis."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def link_text(notice: Notice) -> str:
    return f"Incident {notice.incident_id} in Suture" if notice.incident_id is not None else "Suture"


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def since(value: Any, now: datetime) -> str:
    """`2026-12-01 12:00 UTC (2h 5m ago)`."""
    at = moment(value)
    return f"{stamp(at)} ({span(now - at)} ago)" if at else ""


def deadline(value: Any, now: datetime) -> str:
    """`2026-12-01 12:30 UTC (overdue by 15m)` or `(in 15m)`."""
    at = moment(value)
    if at is None:
        return ""
    return f"{stamp(at)} ({'overdue by ' + span(now - at) if at <= now else 'in ' + span(at - now)})"


def fields(notice: Notice) -> list[Field]:
    """Everything but the title, in reading order; empty values are left out."""
    incident = notice.incident
    now = moment(notice.sent_at) or datetime.now(UTC)
    what = ": ".join(v for v in (one_line(incident.get("code")), one_line(incident.get("title"))) if v)
    if what and notice.incident_id is not None:
        what = f"{what} (incident {notice.incident_id})"
    acked = moment(incident.get("acknowledged_at"))
    resolved = moment(incident.get("resolved_at"))
    rows = [
        Field("what", "What", what),
        Field("where", "Where", one_line(incident.get("target"))),
        Field("severity", "Severity", one_line(incident.get("severity"))),
        Field("since", "Since", since(incident.get("opened_at"), now)),
        Field("respond_by", "Respond by", deadline(incident.get("respond_by"), now) if not acked else ""),
        Field("due_at", "Resolve by", deadline(incident.get("due_at"), now) if not resolved else ""),
        Field(
            "acknowledged",
            "Acknowledged",
            f"{stamp(acked)} by {one_line(incident.get('acknowledged_by')) or 'someone'}" if acked else "",
        ),
        Field(
            "resolved",
            "Resolved",
            f"{stamp(resolved)} ({one_line(incident.get('resolution')) or 'resolved'})" if resolved else "",
        ),
        Field("automation", "Automation", one_line(notice.automation)),
        Field("reason", "Why now", one_line(notice.reason)),
        Field("first_step", "First step", one_line(notice.first_step)),
        Field("owner", "Owner", one_line(notice.owner)),
        Field("link", "Link", one_line(notice.link)),
    ]
    return [row for row in rows if row.value]


def plain(notice: Notice) -> str:
    """The title, a blank line, then `Label: value` lines: the plain-text body of an email."""
    return "\n".join([title(notice), "", *(f"{row.label}: {row.value}" for row in fields(notice))]) + "\n"
