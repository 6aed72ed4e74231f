"""What every run decision of a moment shares: the switch, silences, windows, breakers, budgets.

Intake reads it once per batch and a worker once per claim and per step; both build it here from
what the store returned and what config.yaml declares, so the two paths cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from engine.config import Config
from engine.policy.maintenance import MaintenanceWindow, configured_windows
from engine.policy.request import NO_BUDGET, Budget, RunHistory
from engine.policy.silences import SilenceRule, rules_of
from engine.records import Silence


@dataclass(frozen=True, slots=True)
class Rails:
    """The guard rails config.yaml declares: maintenance windows and fleet budgets."""

    windows: tuple[MaintenanceWindow, ...] = ()
    budget: Budget = NO_BUDGET

    @classmethod
    def of(cls, config: Config) -> Rails:
        automation = config.automation
        per_target = automation.per_target
        budget = Budget(
            per_minute=automation.max_runs_per_minute,
            per_target=per_target.max_runs if per_target else None,
            per_target_window=per_target.per if per_target else NO_BUDGET.per_target_window,
        )
        return cls(configured_windows(config.maintenance), budget)


NO_RAILS = Rails()


@dataclass(frozen=True, slots=True)
class Guards:
    paused: bool = False
    silences: tuple[SilenceRule, ...] = ()
    windows: tuple[MaintenanceWindow, ...] = ()
    open_breakers: Mapping[tuple[str, int], str] = field(default_factory=dict)
    budget: Budget = NO_BUDGET

    def history(
        self,
        runs: tuple[datetime, ...] = (),
        changes: tuple[datetime, ...] = (),
        storm: int = 0,
        fleet: tuple[datetime, ...] = (),
        target_runs: tuple[datetime, ...] = (),
    ) -> RunHistory:
        """A request's history: these guards plus what is its own (runs, changes, counts)."""
        return RunHistory(
            runs=runs,
            paused=self.paused,
            silences=self.silences,
            windows=self.windows,
            open_breakers=self.open_breakers,
            changes=changes,
            storm=storm,
            fleet=fleet,
            target_runs=target_runs,
            budget=self.budget,
        )


NO_GUARDS = Guards()


def guards(
    paused: bool, silences: Iterable[Silence], open_breakers: Mapping[tuple[str, int], str], rails: Rails
) -> Guards:
    return Guards(paused, rules_of(silences), rails.windows, dict(open_breakers), rails.budget)
