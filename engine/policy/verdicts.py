"""Whether a succeeded run fixed its incident: the verdict a breaker counts, as soon as it is known.

A run is effective when its incident's alert resolved (not by a person) between the run's start and
`policy.effective_within` (default 30m) after it finished; it is ineffective once that time has
passed with the incident still open, or when the incident was closed otherwise. Until then there is
no verdict. The recurrence part of the contract's definition needs the future (a new incident within
`recurrence_window`), so stats apply it over history; a breaker cannot wait a day to count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.models import Policy

EFFECTIVE_WITHIN = timedelta(minutes=30)
MANUAL = "manual"


def effective_within(policy: Policy | None) -> timedelta:
    return policy.effective_within if policy and policy.effective_within is not None else EFFECTIVE_WITHIN


def verdict(
    started_at: datetime,
    finished_at: datetime,
    resolved_at: datetime | None,
    resolution: str | None,
    now: datetime,
    within: timedelta,
) -> bool | None:
    """True (effective), False (ineffective) or None (not known yet)."""
    if resolved_at is not None:
        return resolution != MANUAL and started_at <= resolved_at <= finished_at + within
    return False if now > finished_at + within else None
