"""The scheduled job that judges succeeded runs (engine.policy.verdicts) and counts them for their
breakers: a playbook version that keeps "succeeding" without the alert going away is as broken as
one that fails, and only time tells the two apart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from engine.clock import SYSTEM_CLOCK, Clock
from engine.logging import get_logger
from engine.models import Policy
from engine.policy.verdicts import effective_within, verdict
from engine.store import Store
from engine.store.store import Verdict

log = get_logger("suture.verdicts")

#: A verdict this long overdue (a daemon that was down, a database upgraded) is stored but not
#: counted: a breaker must judge what a playbook version does now, not replay its past.
STALE = timedelta(hours=1)


class RunVerdicts:
    def __init__(
        self, store: Store, policy_of: Callable[[str], Policy | None], clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.store = store
        self.policy_of = policy_of
        self.clock = clock

    def __call__(self) -> int:
        """One turn: the verdicts known now, stored; how many."""
        now = self.clock.now()
        found: list[Verdict] = []
        for run in self.store.undecided_runs():
            policy = self.policy_of(run.code)
            within = effective_within(policy)
            judged = verdict(run.started_at, run.finished_at, run.resolved_at, run.resolution, now, within)
            if judged is None:
                continue
            counts = (
                policy is not None and policy.breaker is not None and now - run.finished_at <= within + STALE
            )
            threshold = policy.breaker.failures if counts and policy and policy.breaker else None
            found.append(Verdict(run.run_id, run.incident_id, run.playbook, run.version, judged, threshold))
        if found:
            for told in self.store.judge_runs(found):
                log.warning("breaker_opened", detail=told)
        return len(found)
