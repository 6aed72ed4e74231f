"""Stats, effectiveness and the handover report: pure functions over the facts engine.store.history reads.

`read_stats` is the one place that asks the store: it reads a window and hands it to the pure code,
so the CLI and the API compute the same numbers the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from engine.analytics.effectiveness import recurrence_window
from engine.analytics.stats import build_stats
from engine.models import Code
from engine.records import Stats
from engine.store.history import History


def read_stats(history: History, codes: Mapping[str, Code], since: datetime, until: datetime) -> Stats:
    """The stats of incidents opened in [since, until), as of `until`."""
    reach = max((recurrence_window(code.policy) for code in codes.values()), default=recurrence_window(None))
    return build_stats(history.window(since, until, until + reach), codes, until)


__all__ = ["read_stats"]
