"""Durations as written in config and YAML: `30s`, `5m`, `2h`, `7d`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from engine.errors import InvalidArgument

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: Any) -> timedelta:
    """Accept `30s`-style strings, plain seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 2h or 7d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"expected a duration like 30s, 5m, 2h or 7d, got {value!r}")


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


#: Nothing Suture stores is older; earlier bounds are clamped so every backend can compare.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`--since` / `?since=`: a duration back from now or an ISO 8601 time; InvalidArgument otherwise."""
    if not value:
        return None
    problem = f"since: expected a duration like 7d or an ISO 8601 time, got {value!r}"
    try:
        return (now or datetime.now(UTC)) - parse_duration(value)
    except ValueError:
        pass
    except OverflowError:
        raise InvalidArgument(f"since: {value!r} reaches back further than any date") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return max(parsed.astimezone(UTC), EARLIEST)
    except (ValueError, OverflowError):
        raise InvalidArgument(problem) from None
