"""The gates: pure functions `(request, history, now) -> Decision`, no SQL, no clock, no I/O.

A flapping alert must not restart a service every minute; a refusal is recorded on the run
(status `skipped`, with the reason) so on-call sees that automation held back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from engine.durations import format_duration
from engine.models import Mode, Policy
from engine.policy.decisions import ALLOW, Approve, Decision, Hold
from engine.policy.request import RunHistory, RunRequest

Gate = Callable[[RunRequest, RunHistory, datetime], Decision]


#: The window `max_runs` counts in when a code gives no `per`.
DEFAULT_PER = timedelta(hours=1)


APPROVAL_REASON = "mode: approval"


def cooldown(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.cooldown`: no new run until this long after the last one."""
    policy = request.policy
    if policy is None or not policy.cooldown or not history.runs:
        return ALLOW
    last = max(history.runs)
    if now - last >= policy.cooldown:
        return ALLOW
    ago = format_duration(timedelta(seconds=int((now - last).total_seconds())))
    return Hold(f"policy: cooldown {format_duration(policy.cooldown)} (last run {ago} ago)")


def max_runs(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.max_runs` per `policy.per` (1 h when not given), for this code and target."""
    policy = request.policy
    if policy is None or not policy.max_runs:
        return ALLOW
    per = policy.per or DEFAULT_PER
    if sum(1 for at in history.runs if now - at < per) < policy.max_runs:
        return ALLOW
    return Hold(f"policy: at most {policy.max_runs} runs per {format_duration(per)} for this code and target")


def approval(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """A code in `mode: approval` waits for a person once every other gate lets it through."""
    return Approve(APPROVAL_REASON) if request.mode is Mode.approval else ALLOW


def lookback(policy: Policy | None) -> timedelta | None:
    """How far back the gates read history for this policy (None: they need none)."""
    if policy is None:
        return None
    spans = [policy.cooldown] if policy.cooldown else []
    if policy.max_runs:
        spans.append(policy.per or DEFAULT_PER)
    return max(spans) if spans else None
