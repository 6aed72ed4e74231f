"""What the policy chain says about a run that would start: go, hold it back, ask a person, or wait.

Plain frozen values, so a decision can be compared in a test, logged, and handed from the
intake writer (which decides) to the store (which only writes what was decided)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Allow:
    """No gate objects: the run may start."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A gate refused: the run is recorded `skipped`, and `reason` tells on-call which gate.

    `gate` names the gate (metrics count holds by it); `silenced_by` is set by the silence and
    maintenance gates (`silence 4`, `maintenance sunday-db`) and is stored on the incident."""

    reason: str
    gate: str = ""
    silenced_by: str | None = None


@dataclass(frozen=True, slots=True)
class Approve:
    """A person must approve the run before it starts (`awaiting_approval`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Defer:
    """Not yet: ask again at `until` (for gates such as `policy.delay`)."""

    until: datetime
    reason: str = ""
    gate: str = ""


Decision = Allow | Hold | Approve | Defer


#: The one `Allow` the gates return.
ALLOW = Allow()


def refusal(decision: Hold | Approve | Defer) -> str:
    """Why the run does not start now, as the skipped run's `error` and its timeline say it
    (`run N not started: <refusal>` at intake)."""
    if not isinstance(decision, Defer):
        return decision.reason
    until = decision.until.isoformat()
    return f"{decision.reason} (deferred until {until})" if decision.reason else f"deferred until {until}"
