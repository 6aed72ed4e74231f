"""Which runs were effective (DESIGN.md, Vocabulary, "effective run"): pure over history facts.

A run is effective when it succeeded (every verify step it declared passed), its incident's alert then
resolved within the code's `policy.effective_within` (default 30m) after the run finished, and no new
incident of the same code and target opened within `policy.recurrence_window` (default 24h) after that
resolution. A resolution that arrives while the run is still finishing (after it started) counts too:
the run's last step and the monitoring system's "resolved" race by milliseconds. A manual resolution
is a person's fix, never the run's; a dry run fixes nothing.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from engine.models import Policy, RunStatus
from engine.store.history import IncidentFacts, Opening, RunFacts, VerifyStep
from engine.store.tallies import Windows

EFFECTIVE_WITHIN = timedelta(minutes=30)
RECURRENCE_WINDOW = timedelta(hours=24)
#: Step statuses that let a verify step pass; anything else as its last attempt fails it.
_PASSED = frozenset({"succeeded", "skipped"})
MANUAL = "manual"


def effective_within(policy: Policy | None) -> timedelta:
    return policy.effective_within if policy and policy.effective_within is not None else EFFECTIVE_WITHIN


def recurrence_window(policy: Policy | None) -> timedelta:
    return policy.recurrence_window if policy and policy.recurrence_window is not None else RECURRENCE_WINDOW


#: The windows of a code whose policy sets neither.
DEFAULT_WINDOWS = Windows(EFFECTIVE_WITHIN, RECURRENCE_WINDOW)


def windows(policies: Mapping[str, Policy | None]) -> dict[str, Windows]:
    """Each code's effectiveness windows, for the store's SQL count (engine.store.history.summary)."""
    return {code: Windows(effective_within(p), recurrence_window(p)) for code, p in policies.items()}


def verify_failed(steps: Iterable[VerifyStep]) -> set[int]:
    """The runs with a verify step whose last attempt did not pass."""
    last: dict[tuple[int, str], VerifyStep] = {}
    for step in steps:
        key = (step.run_id, step.name)
        if key not in last or step.seq > last[key].seq:
            last[key] = step
    return {run_id for (run_id, _), step in last.items() if step.status not in _PASSED}


def succeeded(run: RunFacts, failed_verify: set[int]) -> bool:
    return (
        run.status == RunStatus.succeeded.value
        and not run.dry_run
        and run.started_at is not None
        and run.id not in failed_verify
    )


def effective_runs(
    incidents: Sequence[IncidentFacts],
    runs: Sequence[RunFacts],
    verify: Iterable[VerifyStep],
    openings: Iterable[Opening],
    policies: Mapping[str, Policy],
) -> set[int]:
    """The ids of the effective runs among `runs`. `openings`: every incident opening the recurrence
    check may meet (the window's own incidents are added here)."""
    by_id = {incident.id: incident for incident in incidents}
    opened: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for incident in incidents:
        opened[(incident.code, incident.target)].append(incident.opened_at)
    for opening in openings:
        opened[(opening.code, opening.target)].append(opening.opened_at)
    for times in opened.values():
        times.sort()
    failed_verify = verify_failed(verify)
    found: set[int] = set()
    for run in runs:
        its = by_id.get(run.incident_id)
        if its is None or not succeeded(run, failed_verify) or run.finished_at is None:
            continue
        resolved = its.resolved_at
        if resolved is None or its.resolution == MANUAL:
            continue
        policy = policies.get(its.code)
        assert run.started_at is not None  # succeeded() checked it
        if not run.started_at <= resolved <= run.finished_at + effective_within(policy):
            continue
        times = opened[(its.code, its.target)]
        # The first opening strictly after the resolution, if it falls inside the recurrence window.
        index = bisect.bisect_right(times, resolved)
        if index < len(times) and times[index] <= resolved + recurrence_window(policy):
            continue
        found.add(run.id)
    return found
