"""What the gates look at: the run that would start, and what came before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.models import Mode, Policy


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run that would start for an incident of `code` on `target`."""

    code: str
    target: str
    playbook: str
    version: int
    mode: Mode
    dry_run: bool = False
    policy: Policy | None = None
    #: None while the incident is being opened in the same write.
    incident_id: int | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class RunHistory:
    """What the gates may look back on for the request's code and target.

    `runs` holds when earlier runs of that code on that target were queued, skipped ones left
    out (a held-back run did not act), in no particular order; the caller reads at least as
    far back as `chain.lookback` of the request's policy.
    """

    runs: tuple[datetime, ...] = ()


#: No earlier runs.
NO_HISTORY = RunHistory()
