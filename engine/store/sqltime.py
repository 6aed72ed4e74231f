"""Aware UTC datetimes as SQLite's DATETIME text and back, without SQLAlchemy: the light
readers (engine.store.pages) and the intake's raw reads use the same format as `UtcDateTime`."""

from __future__ import annotations

from datetime import UTC, datetime

_TEXTS: dict[datetime, str] = {}


def sqlite_utc_text(value: datetime) -> str:
    """An aware datetime as SQLite's DATETIME text in UTC, remembered: a batch of alerts binds
    the same few times (its `now`, a shared startsAt) thousands of times."""
    text = _TEXTS.get(value)
    if text is None:
        if len(_TEXTS) >= 4096:
            _TEXTS.clear()
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
        text = _TEXTS[value] = (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
        )
    return text


_TIMES: dict[str, datetime] = {}


def sqlite_utc_datetime(text: str) -> datetime:
    """The inverse of `sqlite_utc_text`, remembered the same way, for the intake's raw reads."""
    value = _TIMES.get(text)
    if value is None:
        if len(_TIMES) >= 4096:
            _TIMES.clear()
        parsed = datetime.fromisoformat(text)
        value = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        _TIMES[text] = value
    return value
