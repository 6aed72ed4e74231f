"""The run a newly opened incident gets: asked of the policy chain, worded for the timeline.

The intake writer reads the run history a batch's gates look back on before its write
transaction, and hands the store a `RunPlanner` over that history; the store asks it once
per incident it opens and writes the answer. The planner counts the runs it gave earlier in
the batch, so two incidents of one code and target in one commit meet the same cooldown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.models import AlertStatus, ClassifiedAlert, Mode, RunStatus, Submission
from engine.policy import chain
from engine.policy.decisions import Allow, Approve, Decision, refusal
from engine.policy.request import NO_HISTORY, RunHistory, RunRequest
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
    seen: set[tuple[str, int]] = set()  # a code's policy is one shared object per catalog
    for submission in batch:
        for item in submission.alerts:
            if item.playbook is None or item.mode is Mode.manual or item.alert.status is AlertStatus.resolved:
                continue  # never a run: a resolution opens no incident
            key = (item.code, id(item.policy))
            if key in seen:
                continue
            seen.add(key)
            if (span := chain.lookback(item.policy)) is not None:
                spans[item.code] = max(span, spans.get(item.code, span))
    return spans


class BatchPlanner:
    """The runs of one write attempt: the chain's decision for each incident it opens.

    `history` was read before the transaction; the runs given in this attempt are kept apart
    from it, so an attempt that is rolled back and retried starts from the same history.
    """

    def __init__(self, history: Mapping[RunKey, Sequence[datetime]]) -> None:
        self.history = history
        self.added: dict[RunKey, list[datetime]] = {}

    def __call__(self, item: ClassifiedAlert, now: datetime) -> NewRun | None:
        playbook = item.playbook
        if playbook is None or item.mode is Mode.manual:
            return None
        limited = chain.lookback(item.policy) is not None
        key = (item.code, item.target)
        history = NO_HISTORY
        if limited:
            history = RunHistory((*self.history.get(key, ()), *self.added.get(key, ())))
        request = RunRequest(
            code=item.code,
            target=item.target,
            playbook=playbook[0],
            version=playbook[1],
            mode=item.mode,
            dry_run=item.dry_run,
            policy=item.policy,
            fingerprint=item.alert.fingerprint,
        )
        decision = chain.decide(request, history, now)
        if limited and isinstance(decision, Allow | Approve):
            self.added.setdefault(key, []).append(now)  # a run that will count for the next one
        return new_run(item, request, decision, now)


def new_run(item: ClassifiedAlert, request: RunRequest, decision: Decision, now: datetime) -> NewRun:
    """The run `decision` makes of `request`: queued, awaiting approval, or skipped with the reason."""
    status, error, reason = RunStatus.queued, None, None
    if isinstance(decision, Allow):
        note = RunNote("run_queued", f"of {request.playbook}@{request.version}")
    elif isinstance(decision, Approve):
        status, reason = RunStatus.awaiting_approval, decision.reason
        note = RunNote("run_awaiting_approval", f"of {request.playbook}@{request.version}")
    else:
        # No deferred run can be stored yet (no gate defers): held back is the safe reading.
        status = RunStatus.skipped
        error = reason = refusal(decision)
        note = RunNote("run_skipped", f"not started: {reason}")
    return NewRun(
        playbook=request.playbook,
        version=request.version,
        status=status,
        trigger=request.mode.value,
        dry_run=request.dry_run,
        context=run_context(item, 0, now),
        note=note,
        error=error,
        finished=status is RunStatus.skipped,
        reason=reason,
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
