"""What the gates look at: the run that would start, and what came before it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from engine.models import Mode, Policy
from engine.policy.matchers import Subject

if TYPE_CHECKING:
    from engine.policy.maintenance import MaintenanceWindow
    from engine.policy.silences import SilenceRule


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
    severity: str = ""
    source: str = ""
    alertname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Deliveries of the alert so far (`policy.min_occurrences`).
    occurrences: int = 1

    def subject(self) -> Subject:
        """The facts silences and maintenance windows match on."""
        return Subject(self.code, self.target, self.severity, self.source, self.alertname, self.labels)


@dataclass(frozen=True, slots=True)
class Budget:
    """The fleet-wide budgets of config.yaml's `automation:` (None: no such limit)."""

    per_minute: int | None = None
    per_target: int | None = None
    per_target_window: timedelta = timedelta(hours=1)

    @property
    def limits(self) -> bool:
        return self.per_minute is not None or self.per_target is not None


#: No fleet-wide limits.
NO_BUDGET = Budget()


@dataclass(frozen=True, slots=True)
class RunHistory:
    """What the gates may look back on for the request, read by the store (and config) once per batch.

    `runs` holds when earlier runs of that code on that target were queued, skipped ones left
    out (a held-back run did not act), in no particular order; the caller reads at least as
    far back as `chain.lookback` of the request's policy.
    """

    runs: tuple[datetime, ...] = ()
    #: The global kill switch (`suture pause`).
    paused: bool = False
    #: People's silences that have not ended (the gate checks start and end against `now`).
    silences: tuple[SilenceRule, ...] = ()
    #: The maintenance windows of config.yaml.
    windows: tuple[MaintenanceWindow, ...] = ()
    #: Open breakers: (playbook, version) -> why it opened.
    open_breakers: Mapping[tuple[str, int], str] = field(default_factory=dict)
    #: When this alert (fingerprint) changed between firing and resolved, within the flapping window.
    changes: tuple[datetime, ...] = ()
    #: Open incidents of this code opened within the storm window, the request's own included.
    storm: int = 0
    #: When runs were queued across every code and target, within the last minute.
    fleet: tuple[datetime, ...] = ()
    #: When runs were queued on this target across every code, within the per-target window.
    target_runs: tuple[datetime, ...] = ()
    budget: Budget = NO_BUDGET


#: No earlier runs.
NO_HISTORY = RunHistory()
