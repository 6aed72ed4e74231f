"""The policy gates one by one, the chain that orders them, and the intake's planner over them.

Pure functions of (request, history, now): no database, no clock, no sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.intake.runs import BatchPlanner, history_spans
from engine.models import Alert, AlertStatus, ClassifiedAlert, Mode, Policy, RunStatus, Severity, Submission
from engine.policy import chain, gates
from engine.policy.decisions import ALLOW, Approve, Decision, Defer, Hold
from engine.policy.request import NO_HISTORY, RunHistory, RunRequest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COOLDOWN = Policy(cooldown=timedelta(minutes=30))


def _request(policy: Policy | None = None, mode: Mode = Mode.auto) -> RunRequest:
    return RunRequest("FLAP-001", "web-1", "restart", 2, mode, policy=policy)


def _ago(*minutes: float) -> RunHistory:
    return RunHistory(tuple(NOW - timedelta(minutes=m) for m in minutes))


def test_cooldown_holds_until_it_has_passed_since_the_last_run() -> None:
    """The newest earlier run counts, whatever order the history comes in; the reason says how long ago."""
    request = _request(COOLDOWN)
    assert gates.cooldown(request, _ago(50, 5, 40), NOW) == Hold(
        "policy: cooldown 30m (last run 5m ago)", gate="cooldown"
    )
    assert gates.cooldown(request, _ago(30), NOW) == ALLOW
    assert gates.cooldown(request, NO_HISTORY, NOW) == ALLOW
    assert gates.cooldown(_request(Policy()), _ago(0), NOW) == ALLOW


def test_max_runs_counts_only_inside_its_window() -> None:
    """`max_runs` per `per`, 1 h when not given; runs older than the window do not count."""
    two = Policy(max_runs=2, per=timedelta(hours=2))
    reason = "policy: at most 2 runs per 2h for this code and target"
    assert gates.max_runs(_request(two), _ago(100, 10), NOW) == Hold(reason, gate="max_runs")
    assert gates.max_runs(_request(two), _ago(120, 10), NOW) == ALLOW
    default = Policy(max_runs=1)
    assert gates.max_runs(_request(default), _ago(59), NOW) == Hold(
        "policy: at most 1 runs per 1h for this code and target", gate="max_runs"
    )
    assert gates.max_runs(_request(default), _ago(61), NOW) == ALLOW
    assert gates.max_runs(_request(None), _ago(1, 1, 1), NOW) == ALLOW


def test_approval_asks_a_person_only_in_approval_mode() -> None:
    """`mode: approval` waits for a person; `auto` goes on."""
    assert gates.approval(_request(mode=Mode.approval), NO_HISTORY, NOW) == Approve("mode: approval")
    assert gates.approval(_request(mode=Mode.auto), NO_HISTORY, NOW) == ALLOW


def test_lookback_is_the_longest_window_a_gate_reads() -> None:
    """No limit, no history needed; otherwise the longer of cooldown and the max_runs window."""
    assert chain.lookback(None) is None and chain.lookback(Policy()) is None
    assert chain.lookback(COOLDOWN) == timedelta(minutes=30)
    assert chain.lookback(Policy(max_runs=3)) == timedelta(hours=1)
    assert chain.lookback(Policy(cooldown=timedelta(hours=2), max_runs=3)) == timedelta(hours=2)


def test_the_first_gate_that_refuses_decides() -> None:
    """Cooldown comes before max_runs, and a held run is not sent for approval."""
    both = Policy(cooldown=timedelta(minutes=30), max_runs=1)
    held = chain.decide(_request(both, Mode.approval), _ago(5), NOW)
    assert held == Hold("policy: cooldown 30m (last run 5m ago)", gate="cooldown")
    assert chain.decide(_request(both, Mode.approval), _ago(45), NOW) == Hold(
        "policy: at most 1 runs per 1h for this code and target", gate="max_runs"
    )
    assert chain.decide(_request(both, Mode.approval), _ago(90), NOW) == Approve("mode: approval")
    assert chain.decide(_request(both), _ago(90), NOW) == ALLOW


def test_evaluate_stops_at_the_first_decision_that_is_not_allow() -> None:
    """Gates after the deciding one are not asked; a deferral is passed on as it is."""
    asked: list[str] = []
    until = NOW + timedelta(minutes=2)

    def gate(name: str, decision: Decision) -> gates.Gate:
        def check(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
            asked.append(name)
            return decision

        return check

    order = [gate("a", ALLOW), gate("b", Defer(until, "policy: delay 2m")), gate("c", Hold("never"))]
    assert chain.evaluate(order, _request(), NO_HISTORY, NOW) == Defer(until, "policy: delay 2m")
    assert asked == ["a", "b"]
    assert chain.evaluate([], _request(), NO_HISTORY, NOW) == ALLOW


def test_recheck_at_claim_keeps_the_limits_but_asks_no_approval_again() -> None:
    """A worker's recheck of an approved run: the cooldown still holds, approval is not asked twice."""
    request = _request(COOLDOWN, Mode.approval)
    assert chain.recheck(request, NO_HISTORY, NOW) == ALLOW
    assert chain.recheck(request, _ago(10), NOW) == Hold(
        "policy: cooldown 30m (last run 10m ago)", gate="cooldown"
    )


def _classified(
    fingerprint: str, policy: Policy | None = COOLDOWN, mode: Mode = Mode.auto, status: str = "firing"
) -> ClassifiedAlert:
    alert = Alert(source="alertmanager", name="Flap", fingerprint=fingerprint, status=AlertStatus(status))
    return ClassifiedAlert(
        alert, "FLAP-001", "Flapping", Severity.high, "web-1", mode, ("restart", 2), policy=policy
    )


def test_the_planner_counts_its_own_runs_toward_the_next() -> None:
    """In one batch, the first incident's run (queued or awaiting approval) holds back the next;
    a held run counts for nothing, and a fresh planner starts again from the stored history."""
    earlier = {("FLAP-001", "web-1"): [NOW - timedelta(hours=2)]}
    plan = BatchPlanner(earlier)
    first, second = plan(_classified("a", mode=Mode.approval), NOW), plan(_classified("b"), NOW)
    assert first is not None and second is not None
    assert (first.status, first.reason, first.note.message(1)) == (
        RunStatus.awaiting_approval,
        "mode: approval",
        "run 1 of restart@2",
    )
    assert (second.status, second.error, second.finished) == (
        RunStatus.skipped,
        "policy: cooldown 30m (last run 0s ago)",
        True,
    )
    assert second.note.message(2) == "run 2 not started: policy: cooldown 30m (last run 0s ago)"
    retried = BatchPlanner(earlier)(_classified("b"), NOW)
    assert retried is not None and retried.status is RunStatus.queued
    assert BatchPlanner({})(_classified("c", mode=Mode.manual), NOW) is None


def test_history_is_read_only_for_codes_that_may_run_and_limit_runs() -> None:
    """Manual codes, resolutions and codes without limits need no history read before the write."""
    batch = [
        Submission(
            "alertmanager",
            "{}",
            [
                _classified("a", mode=Mode.manual),
                _classified("b", status="resolved"),
                _classified("c", policy=Policy()),
            ],
        )
    ]
    assert history_spans(batch) == {}
    batch.append(Submission("alertmanager", "{}", [_classified("d", policy=Policy(max_runs=2))]))
    assert history_spans(batch) == {"FLAP-001": timedelta(hours=1)}
