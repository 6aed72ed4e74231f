"""Stats, effectiveness and the handover report: pure functions over the facts engine.store.history reads.

`read_stats` and `read_handover` are the places that ask the store: the window is counted in SQL and
the counts go to the pure code, so the CLI, the API and the console compute the same numbers the
same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.analytics.effectiveness import DEFAULT_WINDOWS, windows
from engine.analytics.handover import HandoverFacts
from engine.analytics.rollout import shadow_report, verdict, versions
from engine.analytics.stats import TOP_RECURRING, stats_of
from engine.models import Code
from engine.records import Stats
from engine.store.history import History, Summary
from engine.store.tallies import Windows


def read_stats(history: History, codes: Mapping[str, Code], since: datetime, until: datetime) -> Stats:
    """The stats of incidents opened in [since, until), as of `until`."""
    return stats_of(_summary(history, codes, since, until), codes)


def _summary(history: History, codes: Mapping[str, Code], since: datetime, until: datetime) -> Summary:
    """[since, until) counted as of `until`, with the catalog's effectiveness windows."""
    return history.summary(
        since,
        until,
        until,
        catalog_windows(codes),
        DEFAULT_WINDOWS,
        known=codes.keys(),
        recurring_limit=TOP_RECURRING,
    )


def catalog_windows(codes: Mapping[str, Code]) -> dict[str, Windows]:
    """Each code's effectiveness windows, as the counted hours are keyed by."""
    return windows({name: code.policy for name, code in codes.items()})


def count_hours(history: History, codes: Mapping[str, Code], now: datetime) -> int:
    """Count the past hours stats reads whole (engine.store.buckets), with the catalog's windows:
    the daemon's `count_hours` job. How many hours were counted."""
    return history.buckets.refresh(now, catalog_windows(codes), DEFAULT_WINDOWS)


def read_rollout(
    history: History, codes: Mapping[str, Code], code: Code, live: tuple[str, int] | None,
    since: datetime, until: datetime,
) -> dict[str, Any]:  # fmt: skip
    """`suture rollout status`: the code's playbook versions in [since, until) and the verdict."""
    shown = versions(code, live, _summary(history, codes, since, until).runs)
    return {
        "code": code.code,
        "since": since,
        "until": until,
        "versions": [v.as_json() for v in shown],
        "shadow": shadow_report(code, history.shadow_runs(code.code, since, until)),
        "verdict": verdict(shown),
    }


def read_handover(
    history: History, codes: Mapping[str, Code], since: datetime, now: datetime
) -> HandoverFacts:
    """What the handover report since `since` needs (`suture report handover`, the console's page)."""
    open_incidents, open_runs = history.open_incidents()
    return HandoverFacts(
        now=now,
        since=since,
        open_incidents=open_incidents,
        open_runs=open_runs,
        awaiting=history.awaiting_approval(),
        stats=read_stats(history, codes, since, now),
        previous=read_stats(history, codes, since - (now - since), since),
        changes=history.catalog_changes(since, now),
        notes=history.notes(since, now),
    )


__all__ = ["catalog_windows", "count_hours", "read_handover", "read_rollout", "read_stats"]
