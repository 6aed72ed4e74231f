"""The gates asked again on the worker's side: when a run is claimed, and before every step.

Intake decided on what it had read before its commit; by the time a worker takes the run, a
person may have paused automation, silenced the target or a maintenance window begun, another
run of the code and target may have started, the alert may have resolved. A remediation must
never act on a problem that has gone away, so each check reads the incident and the guard
context afresh (two small reads) and asks the same pure chain intake asked."""

from __future__ import annotations

from datetime import datetime

from engine.clock import Clock
from engine.models import IncidentStatus, Mode, Policy
from engine.policy import chain
from engine.policy.decisions import Allow, Decision, Hold, refusal
from engine.policy.guards import Guards, Rails, guards
from engine.policy.request import RunRequest
from engine.records import ClaimedRun
from engine.store import Store
from engine.store.store import RunSubject

RESOLVED = "the incident was resolved"


class RunChecks:
    """The checks of one claimed run (built once per run, asked at claim and between steps)."""

    def __init__(
        self, store: Store, rails: Rails, clock: Clock, run: ClaimedRun, policy: Policy | None
    ) -> None:
        self.store = store
        self.rails = rails
        self.clock = clock
        self.run = run
        self.policy = policy

    @property
    def applies(self) -> bool:
        """A run a person started by hand, or one without an incident, is theirs to stop."""
        return self.run.trigger != Mode.manual.value and self.run.incident_id is not None

    def at_claim(self) -> Hold | None:
        """Why the claimed run must not start after all (None: it may)."""
        if not self.applies:
            return None
        subject = self._subject()
        if subject is None or subject.status != IncidentStatus.open.value:
            return Hold(f"{RESOLVED} before the run started", gate="resolved")
        request, now = self._request(subject), self.clock.now()
        history = self._guards().history(runs=self._runs(request, now))
        decision = chain.recheck(request, history, now)
        return decision if isinstance(decision, Hold) else None

    def before_step(self) -> str | None:
        """Why the started run must stop before its next step (None: go on)."""
        subject = self._subject()
        if subject is None or subject.status != IncidentStatus.open.value:
            return RESOLVED
        request, now = self._request(subject), self.clock.now()
        return _why(chain.step_check(request, self._guards().history(), now))

    def _subject(self) -> RunSubject | None:
        assert self.run.incident_id is not None
        return self.store.run_subject(self.run.incident_id)

    def _guards(self) -> Guards:
        context = self.store.guard_context()
        return guards(context.paused, context.silences, context.open_breakers, self.rails)

    def _runs(self, request: RunRequest, now: datetime) -> tuple[datetime, ...]:
        span = chain.lookback(self.policy)
        if span is None:
            return ()
        recent = self.store.recent_runs([request.code], now - span, claimed=self.run.id)
        return tuple(recent.get((request.code, request.target), ()))

    def _request(self, subject: RunSubject) -> RunRequest:
        run = self.run
        return RunRequest(
            code=subject.code,
            target=subject.target,
            playbook=run.playbook,
            version=run.playbook_version,
            mode=Mode(run.trigger),
            dry_run=run.dry_run,
            policy=self.policy,
            incident_id=run.incident_id,
            fingerprint=(run.context.get("alert") or {}).get("fingerprint"),
            severity=subject.severity,
            source=subject.source,
            alertname=subject.alertname,
            labels=subject.labels,
        )


def _why(decision: Decision) -> str | None:
    return None if isinstance(decision, Allow) else refusal(decision)
