"""The guard-rail gates (pause, flapping, storm, fleet budgets, min_occurrences, delay), their
order in the chain, and what intake's planner does with them. Pure, with fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.intake.runs import BatchPlanner, guard_query
from engine.models import Alert, AlertStatus, ClassifiedAlert, Mode, Policy, RunStatus, Severity
from engine.policy import chain, gates
from engine.policy.decisions import ALLOW, Defer, Hold
from engine.policy.guards import Guards
from engine.policy.matchers import compile_matchers
from engine.policy.request import Budget, RunHistory, RunRequest
from engine.policy.silences import SilenceRule
from engine.store.guards import STORM_KEY, GuardFacts

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STORM = Policy.model_validate({"storm": {"incidents": 3, "within": "5m"}})
FLAPPING = Policy.model_validate({"flapping": {"changes": 2, "within": "1h"}})


def _request(policy: Policy | None = None, occurrences: int = 1, code: str = "WEB-001") -> RunRequest:
    return RunRequest(code, "web-1", "restart", 2, Mode.auto, policy=policy, occurrences=occurrences)


def _ago(*minutes: float) -> tuple[datetime, ...]:
    return tuple(NOW - timedelta(minutes=m) for m in minutes)


def test_pause_holds_every_run_while_it_is_on() -> None:
    held = gates.pause(_request(), RunHistory(paused=True), NOW)
    assert isinstance(held, Hold) and held.gate == "pause" and "suture resume" in held.reason
    assert gates.pause(_request(), RunHistory(), NOW) == ALLOW


def test_flapping_counts_changes_inside_its_window_only() -> None:
    """More than `changes` within `within` holds; changes older than the window do not count."""
    assert gates.flapping(_request(FLAPPING), RunHistory(changes=_ago(1, 2)), NOW) == ALLOW
    held = gates.flapping(_request(FLAPPING), RunHistory(changes=_ago(1, 2, 3)), NOW)
    assert held == Hold("policy: flapping (3 changes within 1h, more than 2)", gate="flapping")
    assert gates.flapping(_request(FLAPPING), RunHistory(changes=_ago(1, 2, 61)), NOW) == ALLOW
    assert gates.flapping(_request(), RunHistory(changes=_ago(1, 2, 3, 4)), NOW) == ALLOW


def test_storm_holds_once_more_incidents_are_open_than_allowed() -> None:
    assert gates.storm(_request(STORM), RunHistory(storm=3), NOW) == ALLOW
    held = gates.storm(_request(STORM), RunHistory(storm=4), NOW)
    assert held == Hold(
        "policy: storm guard (4 open incidents of WEB-001 within 5m, more than 3)", gate="storm"
    )
    assert gates.storm(_request(), RunHistory(storm=400), NOW) == ALLOW


def test_fleet_budget_limits_the_fleet_per_minute_and_each_target_per_window() -> None:
    fleet = Budget(per_minute=2)
    assert gates.fleet_budget(_request(), RunHistory(fleet=_ago(0.5), budget=fleet), NOW) == ALLOW
    held = gates.fleet_budget(_request(), RunHistory(fleet=_ago(0.5, 0.9), budget=fleet), NOW)
    assert isinstance(held, Hold) and held.gate == "automation" and "2 runs per minute" in held.reason
    assert gates.fleet_budget(_request(), RunHistory(fleet=_ago(0.5, 1.5), budget=fleet), NOW) == ALLOW
    host = Budget(per_target=1, per_target_window=timedelta(hours=1))
    held = gates.fleet_budget(_request(), RunHistory(target_runs=_ago(30), budget=host), NOW)
    assert held == Hold("automation: at most 1 runs per 1h on web-1", gate="automation")
    assert gates.fleet_budget(_request(), RunHistory(target_runs=_ago(61), budget=host), NOW) == ALLOW
    assert gates.fleet_budget(_request(), RunHistory(fleet=_ago(0, 0, 0)), NOW) == ALLOW


def test_min_occurrences_waits_for_enough_deliveries() -> None:
    policy = Policy(min_occurrences=3)
    held = gates.min_occurrences(_request(policy, occurrences=2), RunHistory(), NOW)
    assert held == Hold("policy: min_occurrences 3 (delivered 2 times so far)", gate="min_occurrences")
    assert gates.min_occurrences(_request(policy, occurrences=3), RunHistory(), NOW) == ALLOW


def test_delay_defers_the_run_by_its_span() -> None:
    policy = Policy(delay=timedelta(minutes=2))
    assert gates.delay(_request(policy), RunHistory(), NOW) == Defer(
        NOW + timedelta(minutes=2), "policy: delay 2m", gate="delay"
    )
    assert gates.delay(_request(), RunHistory(), NOW) == ALLOW


def _silence(rule_id: int, **match: str) -> SilenceRule:
    return SilenceRule(
        rule_id, compile_matchers(match), NOW - timedelta(hours=1), NOW + timedelta(hours=1), "al", "x"
    )


def test_the_chain_asks_in_the_contract_order() -> None:
    """Pause before silence before breaker before storm before the code's own limits."""
    everything = Policy.model_validate(
        {"cooldown": "30m", "storm": {"incidents": 1}, "flapping": {"changes": 1}, "breaker": {"failures": 1}}
    )
    request = _request(everything)
    history = RunHistory(
        runs=_ago(1),
        paused=True,
        silences=(_silence(4, code="WEB-.*"),),
        open_breakers={("restart", 2): "3 consecutive failed or ineffective runs"},
        changes=_ago(1, 2),
        storm=5,
    )
    seen = []
    for drop in ("paused", "silences", "open_breakers", "changes", "storm", "runs"):
        decision = chain.decide(request, history, NOW)
        assert isinstance(decision, Hold)
        seen.append(decision.gate)
        history = RunHistory(**{**{f: getattr(history, f) for f in history.__slots__}, drop: _empty(drop)})
    assert seen == ["pause", "silence", "breaker", "flapping", "storm", "cooldown"]
    assert chain.decide(request, history, NOW) == ALLOW


def _empty(field: str) -> object:
    return {"paused": False, "open_breakers": {}, "storm": 0}.get(field, ())


def test_between_steps_only_what_people_control_is_asked() -> None:
    history = RunHistory(storm=50, silences=(_silence(2, target="web-1"),))
    decision = chain.step_check(_request(STORM), history, NOW)
    assert isinstance(decision, Hold) and decision.silenced_by == "silence 2"
    assert chain.step_check(_request(STORM), RunHistory(storm=50), NOW) == ALLOW


def _classified(fingerprint: str, target: str, policy: Policy | None) -> ClassifiedAlert:
    alert = Alert(source="alertmanager", name="Web", fingerprint=fingerprint, status=AlertStatus.firing)
    return ClassifiedAlert(
        alert, "WEB-001", "Web down", Severity.high, target, Mode.auto, ("restart", 2), policy=policy
    )


def test_a_storm_is_announced_once_and_forgotten_when_a_run_passes_again() -> None:
    """The planner counts the incidents it opens: the fourth and later are held, the first hold
    announces the storm (state key set, `storm` event), later holds say nothing more."""
    plan = BatchPlanner({}, Guards(), GuardFacts(storm={"WEB-001": 0}))
    made = [plan(_classified(f"f{n}", f"web-{n}", STORM), NOW) for n in range(6)]
    assert [run.status for run in made if run] == [RunStatus.queued] * 3 + [RunStatus.skipped] * 3
    assert [run.state for run in made if run] == [None, None, None, (STORM_KEY + "WEB-001", True), None, None]
    assert [len(run.events) for run in made if run] == [0, 0, 0, 1, 0, 0]
    # Announced earlier and now quiet: the next run passes and the storm is forgotten.
    calm = BatchPlanner(
        {}, Guards(), GuardFacts(storm={"WEB-001": 0}, storm_announced=frozenset({"WEB-001"}))
    )
    run = calm(_classified("g", "web-9", STORM), NOW)
    assert run is not None and run.status is RunStatus.queued and run.state == (STORM_KEY + "WEB-001", False)


def test_a_silenced_or_flapping_hold_marks_the_incident() -> None:
    silenced = BatchPlanner({}, Guards(silences=(_silence(7, target="web-.*"),)))(
        _classified("s", "web-1", None), NOW
    )
    assert silenced is not None and silenced.marks == {"silenced_by": "silence 7"}
    assert silenced.note.kind == "silenced"
    flapping = BatchPlanner({}, Guards(), GuardFacts(changes={"f": list(_ago(5, 10))}))(
        _classified("f", "web-1", FLAPPING), NOW
    )
    assert flapping is not None and flapping.marks == {"flapping": True}
    assert [event for event, _ in flapping.events] == ["flapping"]


def test_the_guard_query_reads_only_what_the_batch_needs() -> None:
    plain = [_classified("a", "web-1", None)]
    assert guard_query(plain, Budget()).empty
    query = guard_query(
        [_classified("a", "web-1", STORM), _classified("b", "web-2", FLAPPING)], Budget(per_target=2)
    )
    assert query.storm == {"WEB-001": timedelta(minutes=5)}
    assert query.flapping == {"b": timedelta(hours=1)}
    assert set(query.targets) == {"web-1", "web-2"} and query.fleet is None
