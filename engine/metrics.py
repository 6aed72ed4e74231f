"""Prometheus metrics, as one subscriber of the hooks: nothing else in the engine imports this
module except the `/metrics` route that exports the registry.

Labelled children are looked up once per label value and kept: `.labels()` on every webhook
showed in profiles of the intake's hot path.

States (open incidents, queue depth) are not kept from events but read from the database at
scrape time by `StoreCollector`, which the daemon attaches with `watch_store`: they must be
right after a restart and when another process changed the store."""

from __future__ import annotations

import importlib.metadata
import platform
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.hooks import (
    AlertsReceived,
    BodyRejected,
    CatalogReloadFailed,
    Escalated,
    Hooks,
    IntakeHelpers,
    NotificationAttempted,
    PollFailed,
    PollSucceeded,
    RunFinished,
    RunHeld,
    StepFinished,
    WebhookReady,
    WorkersBusy,
)
from engine.logging import get_logger

log = get_logger("suture.metrics")

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
RUNS_FINISHED = Counter(
    "suture_runs_finished_total", "Runs finished", ["playbook", "version", "status"], registry=REGISTRY
)
RUN_SECONDS = Histogram(
    "suture_run_duration_seconds",
    "Run duration, claim to finish",
    ["playbook"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
POLICY_HOLDS = Counter(
    "suture_policy_holds_total",
    "Runs a gate held back (skipped, awaiting approval or deferred)",
    ["gate"],
    registry=REGISTRY,
)
POLL_FAILURES = Counter(
    "suture_poll_failures_total", "Polls that could not fetch their source", ["source"], registry=REGISTRY
)
POLL_LAST_SUCCESS = Gauge(
    "suture_poll_last_success_timestamp_seconds",
    "When a poll of the source last fetched and stored, as a Unix time",
    ["source"],
    registry=REGISTRY,
)
CATALOG_RELOAD_FAILURES = Counter(
    "suture_catalog_reload_failures_total",
    "Catalog reloads refused or failed (the old catalog stays in force)",
    registry=REGISTRY,
)
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
NOTIFICATION_FAILURES = Counter(
    "suture_notification_failures_total",
    "Notification attempts that failed (to be retried or given up)",
    ["channel"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "suture_build_info", "Always 1: the Suture and Python versions", ["version", "python"], registry=REGISTRY
)

#: Notification outcomes that are failures (`sent` is the other one).
_FAILED_OUTCOMES = frozenset({"retry", "failed"})
#: Gates whose hold series exist from the start, at zero.
GATES = (
    "pause",
    "maintenance",
    "silence",
    "breaker",
    "flapping",
    "storm",
    "automation",
    "cooldown",
    "max_runs",
    "min_occurrences",
    "approval",
)


def suture_version() -> str:
    """The installed package's version (`unknown` from a bare checkout)."""
    try:
        return importlib.metadata.version("suture")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(suture_version(), platform.python_version()).set(1)
# The standard process_*, python_info and python_gc_* series. The library's defaults register
# them on its global registry, which this module does not export: the same kinds, on ours.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


def gate_of(reason: str) -> str:
    """The gate a hold's reason names (engine/policy/gates.py words them): `cooldown`,
    `max_runs`, `approval`, `deferred`; otherwise the reason's first word, which is bounded
    because reasons are written by the gates, never by the alert."""
    if reason.startswith("policy: cooldown"):
        return "cooldown"
    if reason.startswith("policy: at most"):
        return "max_runs"
    if reason == "mode: approval":
        return "approval"
    if "deferred until" in reason:
        return "deferred"
    words = reason.split()
    return words[0].rstrip(":").lower() if words else "unknown"


class GaugeReading(Protocol):
    """What `StoreCollector` exports (engine.store.gauges.StoreGauges is one). A protocol, not
    an import: this module is a leaf of the layers and must not depend on the store."""

    @property
    def open_incidents(self) -> Mapping[tuple[str, str], int]: ...
    @property
    def overdue_incidents(self) -> int: ...
    @property
    def runs_queued(self) -> int: ...
    @property
    def runs_awaiting_approval(self) -> int: ...


class _Zero:
    open_incidents: Mapping[tuple[str, str], int] = {}
    overdue_incidents = runs_queued = runs_awaiting_approval = 0


class StoreCollector(Collector):
    """The gauges of a `GaugeReading`, read when scraped. A failed read (the database down or
    locked) leaves those samples out and is logged: /metrics still answers with everything
    else, and `absent()` on these series is how an operator alerts on it."""

    def __init__(self, read: Callable[[], GaugeReading]) -> None:
        self.read = read

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(_Zero()))

    def collect(self) -> Iterator[Metric]:
        try:
            gauges = self.read()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the store does not
            log.warning("metrics_store_read_failed", error=type(exc).__name__)
            return iter(())
        return iter(self._families(gauges))

    @staticmethod
    def _families(gauges: GaugeReading) -> list[Metric]:
        open_ = GaugeMetricFamily(
            "suture_incidents_open", "Open incidents by code and severity", labels=["code", "severity"]
        )
        for (code, severity), count in sorted(gauges.open_incidents.items()):
            open_.add_metric([code, severity], count)
        return [
            open_,
            GaugeMetricFamily(
                "suture_incidents_overdue",
                "Open incidents past their respond or resolve deadline",
                value=gauges.overdue_incidents,
            ),
            GaugeMetricFamily("suture_runs_queued", "Runs queued for a worker", value=gauges.runs_queued),
            GaugeMetricFamily(
                "suture_runs_awaiting_approval",
                "Runs waiting for a person to approve them",
                value=gauges.runs_awaiting_approval,
            ),
        ]


_watching: list[StoreCollector] = []
_watch_lock = threading.Lock()


def watch_store(read: Callable[[], GaugeReading]) -> StoreCollector:
    """Export the store's gauges from `read` (the daemon's composition root); a later call
    replaces the earlier collector, so a second daemon in one process does not clash."""
    collector = StoreCollector(read)
    with _watch_lock:
        for old in _watching:
            REGISTRY.unregister(old)
        _watching[:] = [collector]
        REGISTRY.register(collector)
    return collector


class _Children:
    """A metric's labelled children by label values, created on first use."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
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
    run_seconds, holds = _Children(RUN_SECONDS), _Children(POLICY_HOLDS)
    for gate in GATES:
        holds(gate)

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

    def run_finished(event: RunFinished) -> None:
        finished(event.playbook, str(event.version), event.status).inc()
        run_seconds(event.playbook).observe(event.seconds)

    hooks.subscribe(RunFinished, run_finished)
    hooks.subscribe(RunHeld, lambda event: holds(event.gate or gate_of(event.reason)).inc())
    hooks.subscribe(WorkersBusy, lambda event: WORKERS_BUSY.set(event.busy))
    hooks.subscribe(IntakeHelpers, lambda event: INTAKE_HELPERS.set(event.ready))
    notified, escalated = _Children(NOTIFICATIONS), _Children(ESCALATIONS)
    notify_failures = _Children(NOTIFICATION_FAILURES)

    def notification(event: NotificationAttempted) -> None:
        notified(event.channel, event.event, event.outcome).inc()
        failures = notify_failures(event.channel)  # exists at zero from the channel's first attempt
        if event.outcome in _FAILED_OUTCOMES:
            failures.inc()

    hooks.subscribe(NotificationAttempted, notification)
    hooks.subscribe(Escalated, lambda event: escalated(event.deadline).inc())
    poll_failures, poll_success = _Children(POLL_FAILURES), _Children(POLL_LAST_SUCCESS)

    def poll_succeeded(event: PollSucceeded) -> None:
        poll_failures(event.source)  # the failure series exists at zero once the source is polled
        poll_success(event.source).set(event.at.timestamp())

    hooks.subscribe(PollSucceeded, poll_succeeded)
    hooks.subscribe(PollFailed, lambda event: poll_failures(event.source).inc())
    hooks.subscribe(CatalogReloadFailed, lambda event: CATALOG_RELOAD_FAILURES.inc())
