"""Stats, effectiveness and the handover report: pure functions over the facts engine.store.history reads.

`read_stats` is the one place that asks the store: it has the window counted in SQL and hands the
counts to the pure code, so the CLI and the API compute the same numbers the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from engine.analytics.effectiveness import DEFAULT_WINDOWS, windows
from engine.analytics.stats import TOP_RECURRING, stats_of
from engine.models import Code
from engine.records import Stats
from engine.store.history import History


def read_stats(history: History, codes: Mapping[str, Code], since: datetime, until: datetime) -> Stats:
    """The stats of incidents opened in [since, until), as of `until`."""
    summary = history.summary(
        since,
        until,
        until,
        windows({name: code.policy for name, code in codes.items()}),
        DEFAULT_WINDOWS,
        known=codes.keys(),
        recurring_limit=TOP_RECURRING,
    )
    return stats_of(summary, codes)


__all__ = ["read_stats"]
