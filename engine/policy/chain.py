"""The gates in their order (DESIGN.md): the first that does not allow decides.

Evaluated twice for a run: when intake would queue it (`decide`, which ends with the approval
gate) and when a worker claims it (`recheck`: an approved or queued run is not asked for
approval again), because another writer may have queued a run for the same code and target in
between, from history this one had not seen. Before every step after the first, `step_check`
asks the gates a person controls (pause, maintenance, silence) again.

Within the code's policy, `min_occurrences` comes before `delay`: a delay defers rather than
refuses, so a gate after it would never be asked. Target concurrency is not a gate that refuses:
a run over it stays `queued` and the claim takes another (engine.store.store.claim_run).
Storm, flapping and the fleet budgets are judged when the run is queued, from the counts intake
read (a run queued within its budget has spent it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.models import Policy
from engine.policy import gates
from engine.policy.breakers import breaker
from engine.policy.decisions import ALLOW, Allow, Decision
from engine.policy.gates import Gate
from engine.policy.maintenance import maintenance
from engine.policy.request import RunHistory, RunRequest
from engine.policy.silences import silence

#: What a person controls: checked first, and again before every step.
PEOPLE_GATES: tuple[Gate, ...] = (gates.pause, maintenance, silence)

#: Checked when a run would be queued.
QUEUE_GATES: tuple[Gate, ...] = (
    *PEOPLE_GATES,
    breaker,
    gates.flapping,
    gates.storm,
    gates.fleet_budget,
    gates.cooldown,
    gates.max_runs,
    gates.min_occurrences,
    gates.delay,
    gates.approval,
)

#: Checked when a worker claims a queued run.
CLAIM_GATES: tuple[Gate, ...] = (
    *PEOPLE_GATES,
    breaker,
    gates.cooldown,
    gates.max_runs,
)


def evaluate(chain: Sequence[Gate], request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """The first decision that is not `Allow`, else `Allow`."""
    for gate in chain:
        decision = gate(request, history, now)
        if not isinstance(decision, Allow):
            return decision
    return ALLOW


def decide(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """May this run be queued now: `Allow` (queued), `Approve` (awaiting approval), `Hold` (skipped)."""
    return evaluate(QUEUE_GATES, request, history, now)


def recheck(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """May the claimed run start now. `history` must leave the run itself out."""
    return evaluate(CLAIM_GATES, request, history, now)


def step_check(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """May a started run go on to its next step (paused, maintenance, silence)."""
    return evaluate(PEOPLE_GATES, request, history, now)


def lookback(policy: Policy | None) -> timedelta | None:
    """How much run history the chain needs for a code with this policy (None: none at all)."""
    return gates.lookback(policy)
