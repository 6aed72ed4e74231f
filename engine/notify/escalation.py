"""The scheduled deadline check: escalate overdue incidents, expire unapproved runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from engine.clock import SYSTEM_CLOCK, Clock
from engine.durations import format_duration
from engine.hooks import NO_HOOKS, Escalated, Hooks
from engine.logging import get_logger
from engine.models import Policy
from engine.notify.deadlines import approval_expired, escalation_due
from engine.store import Store

log = get_logger("suture.escalation")

#: A code's policy in the catalog in force (None for UNCLASSIFIED or a removed code).
PolicyOf = Callable[[str], Policy | None]


class DeadlineCheck:
    """One turn every `escalation.check_every`; safe to run from several replicas (each change is
    a conditional update: the second replica to try finds it done)."""

    def __init__(
        self,
        store: Store,
        repeat: timedelta,
        policy_of: PolicyOf,
        *,
        clock: Clock = SYSTEM_CLOCK,
        hooks: Hooks = NO_HOOKS,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.repeat = repeat
        self.policy_of = policy_of
        self.clock = clock
        self.hooks = hooks
        self.wake = wake

    def __call__(self) -> None:
        escalated = self.escalate()
        expired = self.expire()
        if escalated or expired:
            self.wake()

    def escalate(self) -> list[int]:
        now = self.clock.now()
        done = []
        for incident, last_for in self.store.overdue(now):
            due = escalation_due(incident, last_for, now, self.repeat)
            if due is not None and self.store.escalate(incident, due.deadline, due.reason, now):
                done.append(incident.id)
                log.warning("escalated", incident_id=incident.id, deadline=due.deadline, reason=due.reason)
                self.hooks.emit(Escalated(incident.id, due.deadline))
        return done

    def expire(self) -> list[int]:
        now = self.clock.now()
        done = []
        for run, code, _target in self.store.awaiting_approval():
            policy = self.policy_of(code) if code else None
            timeout = policy.approval_timeout if policy is not None else None
            if timeout is None or not approval_expired(run.queued_at, timeout, now):
                continue
            reason = f"nobody approved it within {format_duration(timeout)}"
            if self.store.expire_approval(run.id, reason, now):
                done.append(run.id)
                log.warning("approval_expired", run_id=run.id, code=code)
        return done
