"""The gates: pure functions `(request, history, now) -> Decision`, no SQL, no clock, no I/O.

A flapping alert must not restart a service every minute; a refusal is recorded on the run
(status `skipped`, with the reason) so on-call sees that automation held back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from engine.durations import format_duration
from engine.models import Mode, Policy
from engine.policy.decisions import ALLOW, Approve, Decision, Defer, Hold
from engine.policy.request import RunHistory, RunRequest

Gate = Callable[[RunRequest, RunHistory, datetime], Decision]


#: The window `max_runs` counts in when a code gives no `per`.
DEFAULT_PER = timedelta(hours=1)


APPROVAL_REASON = "mode: approval"
PAUSED_REASON = "paused: no automatic run starts until `suture resume`"
MINUTE = timedelta(minutes=1)


def _within(times: tuple[datetime, ...], now: datetime, span: timedelta) -> int:
    return sum(1 for at in times if now - at < span)


def pause(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """The global kill switch (`suture pause`)."""
    return Hold(PAUSED_REASON, gate="pause") if history.paused else ALLOW


def flapping(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.flapping`: an alert that keeps changing is a monitoring problem, not a host to fix."""
    rule = request.policy.flapping if request.policy else None
    if rule is None:
        return ALLOW
    changes = _within(history.changes, now, rule.within)
    if changes <= rule.changes:
        return ALLOW
    return Hold(
        f"policy: flapping ({changes} changes within {format_duration(rule.within)}, "
        f"more than {rule.changes})",
        gate="flapping",
    )


def storm(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.storm`: many incidents of one code at once point at what they share, not at each host."""
    rule = request.policy.storm if request.policy else None
    if rule is None or history.storm <= rule.incidents:
        return ALLOW
    return Hold(
        f"policy: storm guard ({history.storm} open incidents of {request.code} within "
        f"{format_duration(rule.within)}, more than {rule.incidents})",
        gate="storm",
    )


def fleet_budget(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`automation:` budgets across every code: the fleet per minute, and each target per window."""
    budget = history.budget
    if budget.per_minute is not None and _within(history.fleet, now, MINUTE) >= budget.per_minute:
        return Hold(
            f"automation: at most {budget.per_minute} runs per minute across the fleet", gate="automation"
        )
    if budget.per_target is not None:
        window = budget.per_target_window
        if _within(history.target_runs, now, window) >= budget.per_target:
            return Hold(
                f"automation: at most {budget.per_target} runs per {format_duration(window)} "
                f"on {request.target}",
                gate="automation",
            )
    return ALLOW


def cooldown(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.cooldown`: no new run until this long after the last one."""
    policy = request.policy
    if policy is None or not policy.cooldown or not history.runs:
        return ALLOW
    last = max(history.runs)
    if now - last >= policy.cooldown:
        return ALLOW
    ago = format_duration(timedelta(seconds=int((now - last).total_seconds())))
    return Hold(f"policy: cooldown {format_duration(policy.cooldown)} (last run {ago} ago)", gate="cooldown")


def max_runs(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.max_runs` per `policy.per` (1 h when not given), for this code and target."""
    policy = request.policy
    if policy is None or not policy.max_runs:
        return ALLOW
    per = policy.per or DEFAULT_PER
    if sum(1 for at in history.runs if now - at < per) < policy.max_runs:
        return ALLOW
    return Hold(
        f"policy: at most {policy.max_runs} runs per {format_duration(per)} for this code and target",
        gate="max_runs",
    )


def min_occurrences(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.min_occurrences`: a single delivery may be noise; act once it has come often enough."""
    wanted = request.policy.min_occurrences if request.policy else None
    if wanted is None or request.occurrences >= wanted:
        return ALLOW
    return Hold(
        f"policy: min_occurrences {wanted} (delivered {request.occurrences} time"
        f"{'' if request.occurrences == 1 else 's'} so far)",
        gate="min_occurrences",
    )


def delay(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """`policy.delay`: queue for later; the worker acts only if the incident is still open then."""
    wait = request.policy.delay if request.policy else None
    if not wait:
        return ALLOW
    return Defer(now + wait, f"policy: delay {format_duration(wait)}", gate="delay")


def approval(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """A code in `mode: approval` waits for a person once every other gate lets it through."""
    return Approve(APPROVAL_REASON) if request.mode is Mode.approval else ALLOW


def lookback(policy: Policy | None) -> timedelta | None:
    """How far back the gates read this code and target's runs for this policy (None: not at all)."""
    if policy is None:
        return None
    spans = [policy.cooldown] if policy.cooldown else []
    if policy.max_runs:
        spans.append(policy.per or DEFAULT_PER)
    return max(spans) if spans else None
