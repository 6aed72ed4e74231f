"""`--since 7d` or an ISO timestamp, to an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.durations import parse_duration


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    if not value:
        return None
    try:
        return (now or datetime.now(UTC)) - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: expected a duration like 7d or an ISO 8601 time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
