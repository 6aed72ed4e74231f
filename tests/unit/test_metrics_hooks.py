"""Metrics hang on the hooks: each event moves its Prometheus series, names and labels as before;
and the intake writer announces what a commit stored."""

from __future__ import annotations

from prometheus_client import generate_latest

from engine import metrics
from engine.hooks import (
    AlertsReceived,
    BodyRejected,
    Hooks,
    IncidentOpened,
    IncidentResolved,
    IntakeHelpers,
    RunFinished,
    RunHeld,
    RunQueued,
    StepFinished,
    WebhookReady,
    WorkersBusy,
)
from engine.intake.runs import RunNote
from engine.intake.writer import announce
from engine.models import RunStatus
from engine.records import Receipt
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
    """Runs finished by status, step durations by action, busy workers and ready helpers as gauges."""
    hooks = _hooks()
    finished = _value("suture_runs_finished_total", status="rolled_back")
    steps = _value("suture_step_seconds_count", action="http")
    hooks.emit(RunFinished(1, "noop", 1, "rolled_back", 2.0))
    hooks.emit(StepFinished(1, "ping", "http", "ok", 0.2))
    hooks.emit(WorkersBusy(3))
    hooks.emit(IntakeHelpers(1))
    assert _value("suture_runs_finished_total", status="rolled_back") == finished + 1
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
        RunHeld(3, 7, "noop", "mode: approval", "awaiting_approval"),
    ]
