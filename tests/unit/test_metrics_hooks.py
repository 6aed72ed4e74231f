"""Metrics hang on the hooks: each event moves its Prometheus series, names and labels as before;
and the intake writer announces what a commit stored."""

from __future__ import annotations

import platform
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest

from engine import metrics
from engine.errors import StoreUnavailable, TemporaryFailure
from engine.hooks import (
    AlertsReceived,
    BodyRejected,
    CatalogReloadFailed,
    Hooks,
    IncidentOpened,
    IncidentResolved,
    IntakeHelpers,
    NotificationAttempted,
    PollFailed,
    PollSucceeded,
    RunFinished,
    RunHeld,
    RunQueued,
    StepFinished,
    WebhookReady,
    WorkersBusy,
)
from engine.intake.classify import Intake
from engine.intake.runs import RunNote
from engine.intake.writer import announce
from engine.models import Alert, Mode, Policy, RunStatus
from engine.policy import gates
from engine.policy.decisions import Approve, Defer, Hold, refusal
from engine.policy.request import RunHistory, RunRequest
from engine.records import Receipt
from engine.scheduler import PollJob
from engine.store import Store
from engine.store.gauges import StoreGauges
from engine.store.ingest import Applied, NewRun


def _value(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _hooks() -> Hooks:
    hooks = Hooks()
    metrics.install(hooks)
    return hooks


def test_a_webhook_endpoint_shows_its_series_at_zero_from_the_start() -> None:
    """Once a source's endpoint is ready, its received and rejected series exist, at zero."""
    _hooks().emit(WebhookReady("unit-ready", ("unauthorized", "invalid")))
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'suture_alerts_received_total{source="unit-ready"} 0.0' in text
    assert 'suture_webhooks_rejected_total{reason="invalid",source="unit-ready"} 0.0' in text
    assert 'suture_ingest_seconds_count{source="unit-ready"} 0.0' in text


def test_intake_events_count_alerts_incidents_rejections_and_time() -> None:
    """A committed body counts its alerts, its opened incidents and its time; a refusal its reason."""
    hooks = _hooks()
    opened = _value("suture_incidents_opened_total")
    hooks.emit(AlertsReceived("unit-intake", 10, 0.004, opened=3))
    hooks.emit(AlertsReceived("unit-intake", 2, 0.5))
    hooks.emit(BodyRejected("unit-intake", "too_large"))
    assert _value("suture_alerts_received_total", source="unit-intake") == 12
    assert _value("suture_incidents_opened_total") == opened + 3
    assert _value("suture_ingest_seconds_count", source="unit-intake") == 2
    assert _value("suture_ingest_seconds_bucket", source="unit-intake", le="0.005") == 1
    assert _value("suture_webhooks_rejected_total", source="unit-intake", reason="too_large") == 1


def test_execution_events_move_runs_steps_and_workers() -> None:
    """Runs finished by playbook, version and status, with their duration by playbook; step
    durations by action; busy workers and ready helpers as gauges."""
    hooks = _hooks()
    finished = _value("suture_runs_finished_total", playbook="noop", version="1", status="rolled_back")
    steps = _value("suture_step_seconds_count", action="http")
    hooks.emit(RunFinished(1, "noop", 1, "rolled_back", 2.0))
    hooks.emit(StepFinished(1, "ping", "http", "ok", 0.2))
    hooks.emit(WorkersBusy(3))
    hooks.emit(IntakeHelpers(1))
    assert (
        _value("suture_runs_finished_total", playbook="noop", version="1", status="rolled_back")
        == finished + 1
    )
    assert _value("suture_step_seconds_count", action="http") == steps + 1
    assert _value("suture_workers_busy") == 3
    assert _value("suture_intake_helpers") == 1
    hooks.emit(WorkersBusy(0))
    hooks.emit(IntakeHelpers(0))
    assert _value("suture_workers_busy") == 0 and _value("suture_intake_helpers") == 0


def _run(run_id: int, status: RunStatus, reason: str | None = None) -> NewRun:
    return NewRun(
        playbook="noop",
        version=1,
        status=status,
        trigger="auto",
        dry_run=False,
        context={},
        note=RunNote("run_queued", "of noop@1"),
        reason=reason,
        id=run_id,
        incident_id=7,
    )


def test_a_commit_is_announced_on_the_hooks() -> None:
    """Resolved incidents, queued runs and held runs (skipped or awaiting approval) become events."""
    hooks, seen = Hooks(), list[object]()
    for kind in (IncidentOpened, IncidentResolved, RunQueued, RunHeld):
        hooks.subscribe(kind, seen.append)
    runs = [
        _run(1, RunStatus.queued),
        _run(2, RunStatus.skipped, "policy: cooldown 1h (last run 5s ago)"),
        _run(3, RunStatus.awaiting_approval, "mode: approval"),
    ]
    announce(hooks, [Applied([Receipt(event_id=1, resolved=[5])], runs)])
    assert seen == [
        IncidentResolved(5, "alert_resolved"),
        RunQueued(1, 7, "noop", 1),
        RunHeld(2, 7, "noop", "policy: cooldown 1h (last run 5s ago)", "skipped"),
        RunHeld(3, 7, "noop", "mode: approval", "awaiting_approval", "approval"),
    ]


def test_run_durations_by_playbook_land_in_their_buckets() -> None:
    """One histogram series per playbook: a 3 s run is under 5 s, over 1 s; versions add up."""
    hooks = _hooks()
    hooks.emit(RunFinished(1, "unit-duration", 1, "succeeded", 3.0))
    hooks.emit(RunFinished(2, "unit-duration", 2, "failed", 45.0))
    assert _value("suture_run_duration_seconds_count", playbook="unit-duration") == 2
    assert _value("suture_run_duration_seconds_sum", playbook="unit-duration") == 48.0
    assert _value("suture_run_duration_seconds_bucket", playbook="unit-duration", le="1.0") == 0
    assert _value("suture_run_duration_seconds_bucket", playbook="unit-duration", le="5.0") == 1
    assert _value("suture_run_duration_seconds_bucket", playbook="unit-duration", le="60.0") == 2
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'suture_runs_finished_total{playbook="unit-duration",status="failed",version="2"} 1.0' in text


def _request(mode: Mode = Mode.auto, **policy: Any) -> RunRequest:
    return RunRequest("DISK-001", "web-1", "noop", 1, mode, policy=Policy(**policy))


def test_policy_holds_are_counted_by_the_gate_that_held() -> None:
    """The reasons the real gates write are counted under the gate's name, not the reason's text;
    the known gates' series exist at zero from the start."""
    hooks = _hooks()
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    recent = RunHistory((now - timedelta(seconds=5),))
    cooldown = gates.cooldown(_request(cooldown=timedelta(hours=1)), recent, now)
    max_runs = gates.max_runs(_request(max_runs=1), recent, now)
    approval = gates.approval(_request(Mode.approval), recent, now)
    assert isinstance(cooldown, Hold) and isinstance(max_runs, Hold) and isinstance(approval, Approve)
    before = {
        gate: _value("suture_policy_holds_total", gate=gate) for gate in ("cooldown", "max_runs", "approval")
    }
    text = generate_latest(metrics.REGISTRY).decode()
    assert all(f'suture_policy_holds_total{{gate="{gate}"}}' in text for gate in before)
    hooks.emit(RunHeld(1, 7, "noop", refusal(cooldown)))
    hooks.emit(RunHeld(2, 7, "noop", refusal(max_runs)))
    hooks.emit(RunHeld(3, 7, "noop", refusal(max_runs)))
    hooks.emit(RunHeld(4, 7, "noop", refusal(approval), "awaiting_approval"))
    assert _value("suture_policy_holds_total", gate="cooldown") == before["cooldown"] + 1
    assert _value("suture_policy_holds_total", gate="max_runs") == before["max_runs"] + 2
    assert _value("suture_policy_holds_total", gate="approval") == before["approval"] + 1


def test_gate_names_of_other_reasons() -> None:
    """A deferral and reasons no gate map names yet fall back to a short, bounded word."""
    assert metrics.gate_of(refusal(Defer(datetime(2026, 1, 1, tzinfo=UTC)))) == "deferred"
    assert metrics.gate_of(refusal(Defer(datetime(2026, 1, 1, tzinfo=UTC), "policy: delay 5m"))) == "deferred"
    assert metrics.gate_of("paused: automatic runs are off") == "paused"
    assert metrics.gate_of("skipped") == "skipped"
    assert metrics.gate_of("") == "unknown"


class _NoOpenIncidents:
    """The one store read a poll makes when nothing fires: no open incidents of the source."""

    def open_incidents_of_source(self, source: str) -> list[Any]:
        return []


def test_a_poll_announces_failure_and_success_per_source() -> None:
    """A poll that cannot fetch counts a failure; one that fetched sets its last success time,
    and from then on its failure series exists (at zero until it fails)."""
    hooks = _hooks()
    store = cast(Store, _NoOpenIncidents())
    intake = cast(Intake, None)  # never reached: nothing fired, nothing resolved

    def unreachable() -> list[Alert]:
        raise TemporaryFailure("connection refused")

    started = datetime.now(UTC).timestamp()
    PollJob("unit-am", lambda: [], store, intake, hooks=hooks)()
    assert _value("suture_poll_failures_total", source="unit-am") == 0
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'suture_poll_failures_total{source="unit-am"} 0.0' in text
    last = _value("suture_poll_last_success_timestamp_seconds", source="unit-am")
    assert started <= last <= datetime.now(UTC).timestamp()
    PollJob("unit-am", unreachable, store, intake, hooks=hooks)()
    PollJob("unit-am", unreachable, store, intake, hooks=hooks)()
    assert _value("suture_poll_failures_total", source="unit-am") == 2
    assert _value("suture_poll_last_success_timestamp_seconds", source="unit-am") == last


def test_poll_events_set_the_series_directly() -> None:
    """PollSucceeded carries the time the poll fetched: the gauge is that Unix time."""
    hooks = _hooks()
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    hooks.emit(PollSucceeded("unit-prom", at))
    hooks.emit(PollFailed("unit-prom"))
    assert _value("suture_poll_last_success_timestamp_seconds", source="unit-prom") == at.timestamp()
    assert _value("suture_poll_failures_total", source="unit-prom") == 1


def test_catalog_reload_and_notification_failures() -> None:
    """Both reload failure kinds count; a notification retry or give-up counts for its channel,
    a sent one only makes the channel's failure series exist."""
    hooks = _hooks()
    reloads = _value("suture_catalog_reload_failures_total")
    hooks.emit(CatalogReloadFailed(refused=True))
    hooks.emit(CatalogReloadFailed(refused=False))
    assert _value("suture_catalog_reload_failures_total") == reloads + 2
    hooks.emit(NotificationAttempted("unit-chat", "opened", "sent", 0.1))
    assert (
        'suture_notification_failures_total{channel="unit-chat"} 0.0'
        in generate_latest(metrics.REGISTRY).decode()
    )
    hooks.emit(NotificationAttempted("unit-chat", "opened", "retry", 0.1))
    hooks.emit(NotificationAttempted("unit-chat", "opened", "failed", 0.1))
    assert _value("suture_notification_failures_total", channel="unit-chat") == 2
    assert _value("suture_notifications_total", channel="unit-chat", event="opened", outcome="sent") == 1


def test_build_info_and_the_standard_collectors_are_exported() -> None:
    """`suture_build_info` is 1 with the versions; process, platform and GC series are there."""
    text = generate_latest(metrics.REGISTRY).decode()
    python = platform.python_version()
    [build] = [line for line in text.splitlines() if line.startswith("suture_build_info{")]
    assert build.startswith(f'suture_build_info{{python="{python}",version="') and build.endswith("} 1.0")
    assert "process_resident_memory_bytes " in text
    assert (
        f'python_info{{implementation="CPython",major="3",minor="11",patchlevel="{python.split(".")[2]}"'
        in text
    )
    assert 'python_gc_collections_total{generation="0"}' in text


def _scrape(read: Any) -> str:
    registry = CollectorRegistry()
    registry.register(metrics.StoreCollector(read))
    return generate_latest(registry).decode()


def test_store_gauges_are_read_at_scrape_time() -> None:
    """Every scrape reads the store again: the open incidents by code and severity, overdue,
    queue depth and awaiting approval are what the read returned, zero included."""
    answers = [
        StoreGauges({("DISK-001", "high"): 2, ("CRIT-001", "critical"): 1}, 1, 4, 0),
        StoreGauges(),
    ]
    first = _scrape(lambda: answers[0])
    assert 'suture_incidents_open{code="DISK-001",severity="high"} 2.0' in first
    assert 'suture_incidents_open{code="CRIT-001",severity="critical"} 1.0' in first
    assert "suture_incidents_overdue 1.0" in first
    assert "suture_runs_queued 4.0" in first
    assert "suture_runs_awaiting_approval 0.0" in first
    assert "# TYPE suture_incidents_open gauge" in first
    second = _scrape(lambda: answers[1])
    assert "suture_incidents_open{" not in second and "suture_runs_queued 0.0" in second


def test_a_failed_store_read_leaves_only_its_samples_out() -> None:
    """The database down: /metrics still answers, without the store's gauges but with the rest."""

    def down() -> StoreGauges:
        raise StoreUnavailable("database unavailable: locked")

    assert "suture_runs_queued" not in _scrape(down)
    metrics.watch_store(down)
    try:
        text = generate_latest(metrics.REGISTRY).decode()
        assert "suture_runs_queued" not in text and "suture_build_info{" in text
    finally:
        metrics.watch_store(lambda: StoreGauges(runs_queued=3))
    # A second watch replaced the first: one collector, the new reader's answer.
    assert _value("suture_runs_queued") == 3
