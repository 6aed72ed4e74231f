"""Prometheus metrics, as one subscriber of the hooks: nothing else in the engine imports this
module except the `/metrics` route that exports the registry.

Labelled children are looked up once per label value and kept: `.labels()` on every webhook
showed in profiles of the intake's hot path."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.hooks import (
    AlertsReceived,
    BodyRejected,
    Escalated,
    Hooks,
    IntakeHelpers,
    NotificationAttempted,
    RunFinished,
    StepFinished,
    WebhookReady,
    WorkersBusy,
)

REGISTRY = CollectorRegistry()

ALERTS_RECEIVED = Counter(
    "suture_alerts_received_total", "Alerts accepted and committed", ["source"], registry=REGISTRY
)
WEBHOOKS_REJECTED = Counter(
    "suture_webhooks_rejected_total", "Webhook bodies refused", ["source", "reason"], registry=REGISTRY
)
INGEST_SECONDS = Histogram(
    "suture_ingest_seconds",
    "Webhook arrival to commit",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
INCIDENTS_OPENED = Counter("suture_incidents_opened_total", "Incidents opened", registry=REGISTRY)
RUNS_FINISHED = Counter("suture_runs_finished_total", "Runs finished", ["status"], registry=REGISTRY)
STEP_SECONDS = Histogram(
    "suture_step_seconds",
    "Step duration",
    ["action"],
    registry=REGISTRY,
    buckets=(0.01, 0.1, 0.5, 1, 5, 30, 120),
)
WORKERS_BUSY = Gauge("suture_workers_busy", "Workers executing a run", registry=REGISTRY)
INTAKE_HELPERS = Gauge(
    "suture_intake_helpers", "Intake helper processes ready to take webhooks", registry=REGISTRY
)
NOTIFICATIONS = Counter(
    "suture_notifications_total",
    "Notification attempts by outcome (sent, retry, failed)",
    ["channel", "event", "outcome"],
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    "suture_escalations_total", "Escalations by deadline passed", ["deadline"], registry=REGISTRY
)


class _Children:
    """A metric's labelled children by label values, created on first use."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self.known: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.known.get(labels)
        if child is None:
            child = self.known[labels] = self.metric.labels(*labels)
        return child


def install(hooks: Hooks) -> None:
    """Keep the metrics above from the events on `hooks`; once per daemon."""
    received, seconds = _Children(ALERTS_RECEIVED), _Children(INGEST_SECONDS)
    rejected = _Children(WEBHOOKS_REJECTED)
    finished, steps = _Children(RUNS_FINISHED), _Children(STEP_SECONDS)

    def ready(event: WebhookReady) -> None:
        """Every series of the source exists from the start, at zero."""
        received(event.source)
        seconds(event.source)
        for reason in event.reasons:
            rejected(event.source, reason)

    def alerts_received(event: AlertsReceived) -> None:
        received(event.source).inc(event.alerts)
        INCIDENTS_OPENED.inc(event.opened)
        seconds(event.source).observe(event.seconds)

    hooks.subscribe(WebhookReady, ready)
    hooks.subscribe(AlertsReceived, alerts_received)
    hooks.subscribe(BodyRejected, lambda event: rejected(event.source, event.reason).inc())
    hooks.subscribe(StepFinished, lambda event: steps(event.action).observe(event.seconds))
    hooks.subscribe(RunFinished, lambda event: finished(event.status).inc())
    hooks.subscribe(WorkersBusy, lambda event: WORKERS_BUSY.set(event.busy))
    hooks.subscribe(IntakeHelpers, lambda event: INTAKE_HELPERS.set(event.ready))
    notified, escalated = _Children(NOTIFICATIONS), _Children(ESCALATIONS)
    hooks.subscribe(
        NotificationAttempted, lambda event: notified(event.channel, event.event, event.outcome).inc()
    )
    hooks.subscribe(Escalated, lambda event: escalated(event.deadline).inc())
