"""The seam between what happens and who cares: metrics now; notifications, escalation, audit next.

Core code announces a typed event (`hooks.emit(RunFinished(...))`); subscribers are attached
once by the composition root (`engine/daemon.py`). Emitting never fails the caller: a
subscriber that raises is logged and the others still run, because a broken metric or a
notification channel that is down must never lose an alert or stop a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from engine.logging import get_logger

log = get_logger("suture.hooks")


@dataclass(frozen=True, slots=True)
class WebhookReady:
    """The alert endpoint of `source` takes bodies; `reasons` are the rejections it may count
    (so counters can start at zero, as Prometheus clients expect)."""

    source: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlertsReceived:
    """A webhook body was committed with this many alerts, `seconds` after it arrived, and
    opened `opened` incidents. Emitted by the daemon also for bodies an intake helper process
    committed, so it counts every webhook in one place."""

    source: str
    alerts: int
    seconds: float
    opened: int = 0


@dataclass(frozen=True, slots=True)
class BodyRejected:
    """A body was refused before any write (`reason` is one of intake's rejection names)."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    """Emitted after the commit, by the process that committed it (the daemon, or a helper)."""

    incident_id: int
    code: str
    severity: str
    target: str


@dataclass(frozen=True, slots=True)
class IncidentResolved:
    incident_id: int
    resolution: str


@dataclass(frozen=True, slots=True)
class RunQueued:
    run_id: int
    incident_id: int | None
    playbook: str
    version: int


@dataclass(frozen=True, slots=True)
class RunHeld:
    """A run a gate held back (recorded as skipped, waiting for approval, or deferred)."""

    run_id: int | None
    incident_id: int | None
    playbook: str
    reason: str
    #: The run's status: `skipped` or `awaiting_approval`.
    status: str = "skipped"
    #: The gate that held it (engine.policy.gates), for metrics; empty when not known.
    gate: str = ""


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: int
    playbook: str
    version: int


@dataclass(frozen=True, slots=True)
class StepFinished:
    run_id: int
    step: str
    action: str
    status: str
    seconds: float


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: int
    playbook: str
    version: int
    status: str
    seconds: float


@dataclass(frozen=True, slots=True)
class WorkersBusy:
    """How many worker threads are running a playbook right now."""

    busy: int


@dataclass(frozen=True, slots=True)
class IntakeHelpers:
    """How many intake helper processes are ready to take webhooks."""

    ready: int


@dataclass(frozen=True, slots=True)
class NotificationAttempted:
    """One attempt to deliver a notification: `outcome` is `sent`, `retry` or `failed` (given up)."""

    channel: str
    event: str
    outcome: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Escalated:
    """An incident passed a deadline (`respond` or `resolve`) and escalation was recorded."""

    incident_id: int
    deadline: str


@dataclass(frozen=True, slots=True)
class PollSucceeded:
    """A poll of a pull source (or the Zabbix reconcile) fetched and stored what fires, at `at`."""

    source: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PollFailed:
    """A poll could not fetch from its source: nothing was resolved (`poll_failed` in the log)."""

    source: str


@dataclass(frozen=True, slots=True)
class CatalogReloadFailed:
    """A reload kept the old catalog: `refused` when the new one is invalid, False when the
    reload itself broke (the database, a loader bug)."""

    refused: bool


E = TypeVar("E")
Subscriber = Callable[[Any], None]


class Hooks:
    """Subscribers by event type. Attach at start-up; `emit` is safe from any thread."""

    def __init__(self) -> None:
        self._subscribers: dict[type, tuple[Subscriber, ...]] = {}

    def subscribe(self, event_type: type[E], subscriber: Callable[[E], None]) -> None:
        # A new tuple per subscribe: emit reads it without a lock.
        self._subscribers[event_type] = (*self._subscribers.get(event_type, ()), subscriber)

    def emit(self, event: object) -> None:
        for subscriber in self._subscribers.get(type(event), ()):
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - a subscriber's failure must not fail the caller
                log.exception("hook_failed", hook_event=type(event).__name__)

    def wants(self, event_type: type) -> bool:
        """Whether anyone listens: lets a hot path skip building an event nobody reads."""
        return event_type in self._subscribers


#: For components built without a composition root (tests, `suture run`): nobody listens.
NO_HOOKS = Hooks()
