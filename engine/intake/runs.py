"""The run a newly opened incident gets: asked of the policy chain, worded for the timeline.

The intake writer reads the run history a batch's gates look back on before its write
transaction, and hands the store a `RunPlanner` over that history; the store asks it once
per incident it opens and writes the answer. The planner counts the runs it gave earlier in
the batch, so two incidents of one code and target in one commit meet the same cooldown."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.models import AlertStatus, ClassifiedAlert, Mode, RunStatus, Submission
from engine.policy import chain, gates
from engine.policy.decisions import Allow, Approve, Decision, Defer, Hold, refusal
from engine.policy.guards import NO_GUARDS, Guards
from engine.policy.request import Budget, RunRequest
from engine.store.guards import NO_FACTS, STORM_KEY, GuardFacts, GuardQuery
from engine.store.ingest import NewRun

RunKey = tuple[str, str]  # (code, target)


@dataclass(frozen=True, slots=True)
class RunNote:
    """A new run's timeline entry: `run <id> <text>`."""

    kind: str
    text: str

    def message(self, run_id: int) -> str:
        return f"run {run_id} {self.text}"


def history_spans(batch: Sequence[Submission]) -> dict[str, timedelta]:
    """How far back each code of the batch that may queue a run needs history (codes that
    limit nothing need none, so a batch of them reads nothing)."""
    spans: dict[str, timedelta] = {}
    for item in runnable(batch):
        if (span := chain.lookback(item.policy)) is not None:
            spans[item.code] = max(span, spans.get(item.code, span))
    return spans


def runnable(batch: Sequence[Submission]) -> list[ClassifiedAlert]:
    """The alerts of the batch that may open an incident with an automatic run."""
    return [
        item
        for submission in batch
        for item in submission.alerts
        if item.playbook is not None
        and item.mode is not Mode.manual
        and item.alert.status is not AlertStatus.resolved
    ]


def guard_query(items: Sequence[ClassifiedAlert], budget: Budget) -> GuardQuery:
    """What the guard rails of these alerts need read: storm counts, flapping changes, budgets."""
    storm: dict[str, timedelta] = {}
    flapping: dict[str, timedelta] = {}
    for item in items:
        policy = item.policy
        if policy is None:
            continue
        if policy.storm is not None:
            storm[item.code] = max(policy.storm.within, storm.get(item.code, policy.storm.within))
        if policy.flapping is not None:
            fingerprint = item.alert.fingerprint
            flapping[fingerprint] = max(
                policy.flapping.within, flapping.get(fingerprint, policy.flapping.within)
            )
    per_target = budget.per_target is not None
    return GuardQuery(
        storm=storm,
        flapping=flapping,
        fleet=gates.MINUTE if budget.per_minute is not None else None,
        targets={item.target for item in items} if per_target else (),
        target_window=budget.per_target_window if per_target else None,
    )


Reads = tuple[Mapping[RunKey, Sequence[datetime]], Guards, GuardFacts]


class BatchReads:
    """What one batch's gates look back on, read when the first incident with a run is opened and
    kept for every attempt of that batch: a batch that only counts repeats reads nothing."""

    def __init__(self, read: Callable[[], Reads]) -> None:
        self._read = read
        self._value: Reads | None = None

    def get(self) -> Reads:
        if self._value is None:
            self._value = self._read()
        return self._value


class BatchPlanner:
    """The runs of one write attempt: the chain's decision for each incident it opens.

    `history` and `facts` were read before the transaction; what this attempt adds (runs given,
    incidents opened, storms announced) is kept apart from them, so an attempt that is rolled
    back and retried starts from the same history.
    """

    def __init__(
        self,
        history: Mapping[RunKey, Sequence[datetime]],
        guards: Guards = NO_GUARDS,
        facts: GuardFacts = NO_FACTS,
        reads: BatchReads | None = None,
    ) -> None:
        self.history = history
        self.guards = guards
        self.facts = facts
        #: When given, history, guards and facts come from it, read when first needed.
        self.reads = reads
        self.added: dict[RunKey, list[datetime]] = {}
        self.fleet: list[datetime] = []
        self.on_target: dict[str, list[datetime]] = {}
        self.opened: dict[str, int] = {}
        self.changed: dict[str, list[datetime]] = {}
        self.announced: set[str] = set(facts.storm_announced)

    def __call__(
        self, item: ClassifiedAlert, now: datetime, occurrences: int = 1, opening: bool = True
    ) -> NewRun | None:
        """The run for an incident being opened, or (`opening` false) for an open one whose
        alert was just delivered for the `occurrences`-th time (`policy.min_occurrences`)."""
        playbook = item.playbook
        if playbook is None or item.mode is Mode.manual:
            return None
        if self.reads is not None:
            self.history, self.guards, self.facts = self.reads.get()
            self.reads = None
        key = (item.code, item.target)
        alert = item.alert
        policy = item.policy
        if opening:
            self.opened[item.code] = self.opened.get(item.code, 0) + 1
        guards, facts, budget = self.guards, self.facts, self.guards.budget
        changes: tuple[datetime, ...] = ()
        if policy is not None and policy.flapping is not None:  # only what a gate will read is built
            if opening:
                self.changed.setdefault(alert.fingerprint, []).append(now)  # this opening is a change
            changes = (*facts.changes.get(alert.fingerprint, ()), *self.changed.get(alert.fingerprint, ()))
        history = guards.history(
            runs=(*self.history.get(key, ()), *self.added.get(key, ())),
            changes=changes,
            storm=facts.storm.get(item.code, 0) + self.opened.get(item.code, 0),
            fleet=(*facts.fleet, *self.fleet) if budget.per_minute is not None else (),
            target_runs=(*facts.target_runs.get(item.target, ()), *self.on_target.get(item.target, ()))
            if budget.per_target is not None
            else (),
        )
        request = RunRequest(
            code=item.code,
            target=item.target,
            playbook=playbook[0],
            version=playbook[1],
            mode=item.mode,
            dry_run=item.dry_run,
            policy=policy,
            fingerprint=alert.fingerprint,
            severity=item.severity.value,
            source=alert.source,
            alertname=alert.name,
            labels=alert.labels,
            occurrences=occurrences,
        )
        decision = NO_TARGET if not item.target else chain.decide(request, history, now)
        run = new_run(item, request, decision, now)
        if item.shadow is not None:
            run.companion = shadow_run(item, item.shadow, now)
        if not isinstance(decision, Hold):
            # A run that will count for the next one, in every window that counts runs.
            self.added.setdefault(key, []).append(now)
            self.fleet.append(now)
            self.on_target.setdefault(item.target, []).append(now)
        if policy is not None and policy.storm is not None:
            run.state = self._storm_state(item.code, decision)
            if run.state is not None and run.state[1]:
                run.events += (("storm", decision_reason(decision)),)
        return run

    def _storm_state(self, code: str, decision: Decision) -> tuple[str, bool] | None:
        """Announce a storm once (`storm:<code>` set), and forget it once a run passes again."""
        key = STORM_KEY + code
        in_storm = isinstance(decision, Hold) and decision.gate == "storm"
        if in_storm and code not in self.announced:
            self.announced.add(code)
            return (key, True)
        if not in_storm and not isinstance(decision, Hold) and code in self.announced:
            self.announced.discard(code)
            return (key, False)
        return None


def decision_reason(decision: Decision) -> str:
    return "" if isinstance(decision, Allow) else refusal(decision)


#: A code's target template that rendered nothing (a label the alert lacks): acting would mean
#: guessing the host, so the run is held and the log says why (`target_template_failed`).
NO_TARGET = Hold("target: the code's target template rendered nothing for this alert", gate="target")

#: Gates whose hold silences the incident (`silenced_by`) and is told as `silenced` in its timeline.
SILENCING = frozenset({"silence", "maintenance"})


def new_run(item: ClassifiedAlert, request: RunRequest, decision: Decision, now: datetime) -> NewRun:
    """The run `decision` makes of `request`: queued (now or later), awaiting approval, or skipped
    with the reason; with what it marks on the incident and which events it raises."""
    status, error, reason, not_before = RunStatus.queued, None, None, None
    marks: dict[str, Any] = {}
    events: tuple[tuple[str, str], ...] = ()
    of = f"of {request.playbook}@{request.version}"
    if isinstance(decision, Allow):
        note = RunNote("run_queued", of)
    elif isinstance(decision, Approve):
        status, reason = RunStatus.awaiting_approval, decision.reason
        note = RunNote("run_awaiting_approval", of)
    elif isinstance(decision, Defer):
        not_before, reason = decision.until, refusal(decision)
        note = RunNote("run_queued", f"{of}, not before {decision.until.isoformat()} ({decision.reason})")
    else:
        status = RunStatus.skipped
        error = reason = refusal(decision)
        kind = "run_skipped"
        if decision.gate in SILENCING:
            kind, marks["silenced_by"] = "silenced", decision.silenced_by
        elif decision.gate == "flapping":
            kind, marks["flapping"] = "flapping", True
            events = (("flapping", reason),)
        note = RunNote(kind, f"not started: {reason}")
    context = run_context(item, 0, now)
    if request.policy is not None and request.policy.concurrency is not None:
        context["limits"] = {"concurrency": request.policy.concurrency}  # read by the claim
    return NewRun(
        playbook=request.playbook,
        version=request.version,
        status=status,
        trigger=request.mode.value,
        dry_run=request.dry_run,
        context=context,
        note=note,
        error=error,
        finished=status is RunStatus.skipped,
        reason=reason,
        not_before=not_before,
        marks=marks,
        events=events,
        gate=decision.gate if isinstance(decision, Hold) else None,
    )


def shadow_run(item: ClassifiedAlert, version: tuple[str, int], now: datetime) -> NewRun:
    """The code's shadow version for this incident: queued as a dry run that no gate holds, so a
    worker renders every step against the same context and executes none."""
    name, number = version
    return NewRun(
        playbook=name,
        version=number,
        status=RunStatus.queued,
        trigger="shadow",
        dry_run=True,
        context=run_context(item, 0, now),
        note=RunNote(
            "run_queued", f"of {name}@{number}, a shadow: rendered beside the live run, never executed"
        ),
        shadow=True,
    )


def run_context(item: ClassifiedAlert, incident_id: int | None, now: datetime) -> dict[str, Any]:
    """Everything the executor needs to render and run the playbook, frozen at queue time."""
    alert = item.alert
    return {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "target": item.target,
        "alert": {
            "name": alert.name,
            "source": alert.source,
            "status": alert.status.value,
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
            "generator_url": alert.generator_url,
        },
        "code": {"code": item.code, "title": item.title, "severity": item.severity.value},
        "incident": {"id": incident_id, "opened_at": now.isoformat(), "fingerprint": alert.fingerprint},
    }
