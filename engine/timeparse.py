"""`--since 7d` or an ISO timestamp, to an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.durations import parse_duration

#: Nothing Suture stores is older; earlier bounds are clamped so every backend can compare.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    if not value:
        return None
    problem = f"since: expected a duration like 7d or an ISO 8601 time, got {value!r}"
    try:
        return (now or datetime.now(UTC)) - parse_duration(value)
    except ValueError:
        pass
    except OverflowError:
        raise ValueError(f"since: {value!r} reaches back further than any date") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return max(parsed.astimezone(UTC), EARLIEST)
    except (ValueError, OverflowError):
        raise ValueError(problem) from None
