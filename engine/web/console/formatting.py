"""How times, durations and states read on a page (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from jinja2 import Environment


def when(value: datetime | None) -> str:
    """An instant in UTC, to the second: what a person compares with their own logs."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(value: timedelta | float | None) -> str:
    """A duration the way on-call says it: `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    negative, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds // 60:.0f} min"
    elif seconds < 86400:
        hours, minutes = divmod(int(seconds) // 60, 60)
        text = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    else:
        days, hours = divmod(int(seconds) // 3600, 24)
        text = f"{days} d {hours} h" if hours else f"{days} d"
    return f"-{text}" if negative else text


def since(value: datetime | None, now: datetime) -> str:
    return "—" if value is None else span(now - value)


def until(value: datetime | None, now: datetime) -> str:
    """Time left to a deadline, or how long ago it passed."""
    if value is None:
        return "no deadline"
    left = value - now
    return f"in {span(left)}" if left.total_seconds() >= 0 else f"{span(-left)} overdue"


def millis(value: int | None) -> str:
    """A step's duration: milliseconds below a second (a 59 ms step is not "0.0 s")."""
    if value is None:
        return "—"
    return f"{value} ms" if value < 1000 else span(value / 1000)


def shown(value: Any) -> str:
    """A step parameter as the playbook would spell it: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def install(env: Environment) -> None:
    env.filters.update(when=when, span=span, percent=percent, millis=millis, shown=shown)
    env.globals.update(since=since, until=until)
