"""Prometheus metrics. Only the API and the worker hooks touch these."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
