"""Whether a new automatic run may start for a code on a target: cooldown and rate limits.

A flapping alert must not restart a service every minute; the refusal is recorded on the
run (status `skipped`, with the reason) so on-call sees that automation held back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from engine.durations import format_duration
from engine.models import Policy

#: The window `max_runs` counts in when a code gives no `per`.
DEFAULT_PER = timedelta(hours=1)


def lookback(policy: Policy) -> timedelta | None:
    """How far back run history matters for this policy (None: it limits nothing)."""
    spans = [policy.cooldown] if policy.cooldown else []
    if policy.max_runs:
        spans.append(policy.per or DEFAULT_PER)
    return max(spans) if spans else None


def refusal(policy: Policy, earlier_runs: Iterable[datetime], now: datetime) -> str | None:
    """Why no new run may start now, given when earlier runs for the same code and target were
    queued; None when it may."""
    times = sorted(earlier_runs)
    if policy.cooldown and times and now - times[-1] < policy.cooldown:
        ago = format_duration(timedelta(seconds=int((now - times[-1]).total_seconds())))
        return f"policy: cooldown {format_duration(policy.cooldown)} (last run {ago} ago)"
    if policy.max_runs:
        per = policy.per or DEFAULT_PER
        recent = [t for t in times if now - t < per]
        if len(recent) >= policy.max_runs:
            return (
                f"policy: at most {policy.max_runs} runs per {format_duration(per)} for this code and target"
            )
    return None
