"""Frozen read models built from rows: what the store returns, the API declares and the CLI prints.

Field names and their order are the public JSON of ../shared/DESIGN.md ("JSON shapes"): the API
and `suture ... --json` serialize a record's fields as they are declared here. The store builds
records with `trusted()`, without validation: its rows come from its own schema, and validating
every field would cost more than reading the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

IncidentState = Literal["open", "resolved"]
SeverityLevel = Literal["critical", "high", "medium", "low"]
AlertState = Literal["firing", "resolved"]
RunState = Literal[
    "awaiting_approval",
    "queued",
    "running",
    "succeeded",
    "failed",
    "rolled_back",
    "timed_out",
    "interrupted",
    "rejected",
    "expired",
    "skipped",
    "cancelled",
]
Phase = Literal["steps", "verify", "rollback"]


# What /openapi.json shows; tests/integration/test_openapi.py checks each is a valid record.
INCIDENT_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "code": "DISK-001",
    "title": "Filesystem almost full",
    "status": "open",
    "severity": "high",
    "target": "db-1",
    "source": "alertmanager",
    "fingerprint": "3f2a9c0d1e4b5a67",
    "alertname": "NodeFilesystemAlmostOutOfSpace",
    "occurrences": 3,
    "opened_at": "2026-12-01T12:00:00Z",
    "last_seen": "2026-12-01T12:10:00Z",
    "resolved_at": None,
    "resolution": None,
    "due_at": "2026-12-02T12:00:00Z",
    "remediated_at": None,
    "respond_by": "2026-12-01T14:00:00Z",
    "acknowledged_at": "2026-12-01T12:20:00Z",
    "acknowledged_by": "alice",
    "escalated_at": None,
    "flapping": False,
    "silenced_by": None,
}
ALERT_EXAMPLE: dict[str, Any] = {
    "id": 981,
    "event_id": 977,
    "source": "alertmanager",
    "name": "NodeFilesystemAlmostOutOfSpace",
    "status": "firing",
    "fingerprint": "3f2a9c0d1e4b5a67",
    "starts_at": "2026-12-01T11:59:30Z",
    "ends_at": None,
    "received_at": "2026-12-01T12:10:00Z",
    "labels": {"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "db-1:9100", "mountpoint": "/var"},
    "annotations": {"summary": "/var is 93% full"},
}
AUDIT_EXAMPLE: dict[str, Any] = {
    "at": "2026-12-01T12:00:09Z",
    "kind": "run_succeeded",
    "message": "run 7 succeeded",
    "actor": "suture",
    "run_id": 7,
}
RUN_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "incident_id": 42,
    "playbook": "disk-cleanup",
    "playbook_version": 3,
    "status": "succeeded",
    "trigger": "auto",
    "dry_run": False,
    "queued_at": "2026-12-01T12:00:00Z",
    "started_at": "2026-12-01T12:00:01Z",
    "finished_at": "2026-12-01T12:00:09Z",
    "error": None,
    "reason": None,
    "effective": None,
    "worker": "host-a:4242:9f1c",
    "shadow": False,
}
STEP_EXAMPLE: dict[str, Any] = {
    "seq": 1,
    "name": "usage before",
    "phase": "steps",
    "action": "ssh",
    "status": "succeeded",
    "params": {"command": "df --output=pcent /var", "sudo": False},
    "exit_code": 0,
    "http_status": None,
    "stdout": "Use%\n 93%\n",
    "stderr": "",
    "error": None,
    "started_at": "2026-12-01T12:00:01Z",
    "duration_ms": 180,
    "attempt": 1,
}
NOTE_EXAMPLE: dict[str, Any] = {
    "at": "2026-12-01T12:21:00Z",
    "by": "alice",
    "text": "db-1 keeps old WAL files after the backup job; asked the DBA team",
}
NOTIFICATION_EXAMPLE: dict[str, Any] = {
    "id": 12,
    "incident_id": 42,
    "run_id": None,
    "event": "escalation",
    "channel": "pager",
    "status": "sent",
    "attempts": 2,
    "created_at": "2026-12-01T12:30:05Z",
    "next_attempt_at": "2026-12-01T12:30:07Z",
    "sent_at": "2026-12-01T12:30:07Z",
    "answer": 'HTTP 202: {"status":"success","message":"Event processed"}',
    "error": None,
}
KNOWLEDGE_EXAMPLE: dict[str, Any] = {
    "summary": "A filesystem is filling up; services on the host fail when it is full.",
    "diagnosis": ["df -h on the host", "du -xh --max-depth=1 /var | sort -h"],
    "manual_steps": ["journalctl --vacuum-size=500M", "remove old WAL files after the backup job"],
    "owner": "infra",
    "links": [],
}
PREVIOUS_EXAMPLE: dict[str, Any] = {
    "id": 31,
    "opened_at": "2026-11-28T03:10:00Z",
    "resolved_at": "2026-11-28T03:14:00Z",
    "resolution": "alert_resolved",
    "ended": "resolved by disk-cleanup@3 in 4 min",
}
RECEIPT_EXAMPLE: dict[str, Any] = {
    "event_id": 977,
    "alerts": 2,
    "incidents_opened": [42],
    "incidents_updated": [40],
    "incidents_resolved": [],
    "runs_queued": [7],
}


def _shown(*examples: dict[str, Any]) -> ConfigDict:
    """A frozen record's config with the examples /openapi.json shows for it."""
    return ConfigDict(frozen=True, defer_build=True, json_schema_extra={"examples": list(examples)})


class Record(BaseModel):
    """A frozen read model; equal records have equal fields."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Self:
        """A record from values the store read from its own tables: what `model_construct` builds,
        without its per-field default and alias handling. `values` holds every field, in order."""
        record = cls.__new__(cls)
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", set(values))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The record's fields in JSON order: what the store selects and the CLI shows."""
        return tuple(cls.model_fields)


# ----------------------------------------------------------------- incidents


class Incident(Record):
    """One occurrence of a code on a target, as `incidents list` shows it."""

    model_config = _shown(INCIDENT_EXAMPLE)

    id: int
    code: str = Field(description="The incident code, or UNCLASSIFIED when no code matched.")
    title: str
    status: IncidentState
    severity: SeverityLevel
    target: str = Field(description="The host the incident is about; empty when none was found.")
    source: str
    fingerprint: str
    alertname: str
    occurrences: int = Field(description="Deliveries counted on this incident, redeliveries included.")
    opened_at: datetime
    last_seen: datetime
    resolved_at: datetime | None
    resolution: str | None = Field(description="How it closed: `alert_resolved`, `manual`, ...")
    due_at: datetime | None = Field(description="Resolve-by deadline from the severity; none for low.")
    remediated_at: datetime | None = Field(description="When a run first succeeded for it.")
    respond_by: datetime | None = Field(description="First-response (acknowledge) deadline; none for low.")
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    escalated_at: datetime | None = Field(description="When escalation last notified about a deadline.")
    flapping: bool = Field(default=False, description="Its alert changed state too often: no automatic run.")
    silenced_by: str | None = Field(
        default=None, description="The silence (`silence 4`) or maintenance window that held its automation."
    )


class IncidentAlert(Record):
    """One alert delivered onto an incident (the newest 50 come with `incidents show`)."""

    model_config = _shown(ALERT_EXAMPLE)

    id: int
    event_id: int
    source: str
    name: str
    status: AlertState
    fingerprint: str
    starts_at: datetime | None
    ends_at: datetime | None
    received_at: datetime
    labels: dict[str, str]
    annotations: dict[str, str]


class AuditEntry(Record):
    """One line of an incident's timeline: an audit-log row, or the opening and closing its row implies."""

    model_config = _shown(AUDIT_EXAMPLE)

    at: datetime
    kind: str = Field(
        description="`opened`, `run_queued`, `run_started`, `run_<final status>`, `acknowledged`, `note`,"
        " `escalated`, `notified`, `notification_failed`, `resolved`, ..."
    )
    message: str
    actor: str
    run_id: int | None


class Note(Record):
    """A person's note on an incident, kept with the code's history."""

    model_config = _shown(NOTE_EXAMPLE)

    at: datetime
    by: str
    text: str


class Notification(Record):
    """One message to one channel about one event; stored before it is sent, retried with backoff."""

    model_config = _shown(NOTIFICATION_EXAMPLE)

    id: int
    incident_id: int | None
    run_id: int | None
    event: str
    channel: str
    status: Literal["pending", "sending", "sent", "failed"] = Field(
        description="`pending` (waiting for its next attempt), `sending`, `sent`, or `failed` (given up)."
    )
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    answer: str | None = Field(description="What the channel answered to the last attempt.")
    error: str | None = Field(description="Why the last attempt failed.")


class KnowledgeView(Record):
    """What the incident's code tells a newcomer, from the catalog in force (`incidents show`)."""

    summary: str
    diagnosis: list[str]
    manual_steps: list[str]
    owner: str
    links: list[str]


class PreviousIncident(Record):
    """An earlier incident of the same code and target, and how it ended."""

    id: int
    opened_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    ended: str = Field(
        description='One line: "resolved by disk-cleanup@3 in 4 min", "resolved by hand by bob after 2 h",'
        ' "still open".'
    )


# ---------------------------------------------------------------------- runs


class Run(Record):
    """One execution of one playbook version, as `runs list` shows it."""

    model_config = _shown(RUN_EXAMPLE)

    id: int
    incident_id: int | None = Field(description="None for a run started by hand (`suture run`).")
    playbook: str
    playbook_version: int
    status: RunState
    trigger: str = Field(description="`auto`, `approval` or `manual`.")
    dry_run: bool
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    reason: str | None = Field(
        default=None, description="Why it was skipped, expired or cancelled: the gate's message."
    )
    effective: bool | None = Field(
        description="The verdict on a succeeded run: its alert resolved (not by a person) within the code's"
        " `effective_within` after it, or not; null until known. `suture stats` also applies"
        " `recurrence_window`."
    )
    worker: str | None = Field(description="The daemon start that holds or held the run.")
    shadow: bool = Field(
        default=False,
        description="The code's `shadow` version rendered beside the live run: a dry run, never executed.",
    )


class StepResult(Record):
    """What one attempt of one step did; `params` are rendered with secrets redacted."""

    model_config = _shown(STEP_EXAMPLE)

    seq: int
    name: str
    phase: Phase
    action: str = Field(description="The step's kind: `ssh`, `http` or `wait`.")
    status: str
    params: dict[str, Any]
    exit_code: int | None
    http_status: int | None
    stdout: str
    stderr: str
    error: str | None
    started_at: datetime
    duration_ms: int
    attempt: int


class RunDetail(Run):
    """A run with every step it recorded, in order: `runs show`."""

    model_config = _shown({**RUN_EXAMPLE, "steps": [STEP_EXAMPLE]})

    steps: list[StepResult]


class IncidentDetail(Incident):
    """An incident with its labels, newest alerts, runs and timeline: `incidents show`."""

    model_config = _shown(
        {
            **INCIDENT_EXAMPLE,
            "labels": ALERT_EXAMPLE["labels"],
            "annotations": ALERT_EXAMPLE["annotations"],
            "alerts": [ALERT_EXAMPLE],
            "runs": [RUN_EXAMPLE],
            "notes": [NOTE_EXAMPLE],
            "timeline": [AUDIT_EXAMPLE],
            "knowledge": KNOWLEDGE_EXAMPLE,
            "previous": [PREVIOUS_EXAMPLE],
        }
    )

    labels: dict[str, str]
    annotations: dict[str, str]
    alerts: list[IncidentAlert]
    runs: list[Run]
    notes: list[Note]
    timeline: list[AuditEntry]
    knowledge: KnowledgeView | None = Field(
        default=None,
        description="The code's knowledge; null for UNCLASSIFIED or a code no longer in the catalog.",
    )
    previous: list[PreviousIncident] = Field(
        default_factory=list, description="The last three earlier incidents of the same code and target."
    )


class ClaimedRun(Run):
    """A run a worker just took, with the template context it executes against."""

    context: dict[str, Any]
    #: Which claim of the run this is: the worker's writes count only while it is still the run's.
    attempt: int = 0


class HeldRun(Record):
    """A run marked running: who holds it and when it last showed life (for recovery)."""

    id: int
    playbook: str
    playbook_version: int
    worker: str | None
    heartbeat_at: datetime | None
    attempt: int = 0
    lease_until: datetime | None = None


class OpenIncident(Record):
    """An open incident of a pull source: what its next poll must still see firing."""

    fingerprint: str
    alertname: str
    starts_at: datetime | None
    labels: dict[str, str]


# ------------------------------------------------------------------ silences

SILENCE_EXAMPLE: dict[str, Any] = {
    "id": 4,
    "matchers": {"code": "DISK-.*", "target": "db-1"},
    "starts_at": "2026-12-01T12:00:00Z",
    "ends_at": "2026-12-01T14:00:00Z",
    "created_by": "alice",
    "comment": "replacing the disk; do not touch db-1",
    "created_at": "2026-12-01T12:00:00Z",
    "expired_by": None,
    "active": True,
}


class Silence(Record):
    """A person's "no automation here for a while": `suture silence list` and /api/v1/silences."""

    model_config = _shown(SILENCE_EXAMPLE)

    id: int
    matchers: dict[str, str] = Field(
        description="KEY=REGEX, each matched in full: code, target, severity, source, alertname, labels.NAME."
    )
    starts_at: datetime
    ends_at: datetime = Field(description="Exclusive; set to the time of expiry when ended early.")
    created_by: str
    comment: str
    created_at: datetime
    expired_by: str | None = Field(description="Who ended it early, or null.")
    active: bool = Field(description="Whether it holds runs now: starts_at <= now < ends_at.")


# ---------------------------------------------------- breakers, maintenance

BREAKER_EXAMPLE: dict[str, Any] = {
    "playbook": "disk-cleanup",
    "version": 3,
    "status": "open",
    "failures": 3,
    "opened_at": "2026-12-01T12:40:00Z",
    "reason": "3 consecutive failed or ineffective runs",
    "reset_at": None,
    "reset_by": None,
}


class Breaker(Record):
    """The circuit breaker of one playbook version: `suture breakers list` and /api/v1/breakers."""

    model_config = _shown(BREAKER_EXAMPLE)

    playbook: str
    version: int
    status: Literal["open", "closed"] = Field(
        description="`open`: automatic runs of this version are held until a person resets it."
    )
    failures: int = Field(description="Consecutive failed or ineffective runs; a good run sets it to 0.")
    opened_at: datetime | None = Field(description="When it last opened.")
    reason: str | None = Field(description="Why it last opened.")
    reset_at: datetime | None
    reset_by: str | None


class MaintenanceEntry(Record):
    """A maintenance window of config.yaml as `suture status` shows it."""

    name: str
    match: dict[str, str] = Field(description="KEY=REGEX, each matched in full.")
    active: bool = Field(description="Whether it holds automatic runs now.")
    ends_at: datetime | None = Field(description="When the current occurrence ends (null if not active).")
    next_start: datetime | None = Field(
        description="When it next begins, if not active (null: a one-off window that is over)."
    )


# ------------------------------------------------------------- API answers

ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(Record, Generic[ItemT]):
    """A list answer, newest first; pass `next` as `cursor` for the page after."""

    items: list[ItemT]
    next: int | None = Field(description="The cursor of the next page; null on the last one.")


class PlaybookSummary(Record):
    """A playbook version of the catalog in force."""

    name: str
    version: int
    description: str
    sha256: str
    idempotent: bool
    steps: int = Field(description="How many steps (verify and rollback not counted).")


class Health(Record):
    status: Literal["ok"] = "ok"


class Ready(Record):
    status: Literal["ready"] = "ready"


class CatalogReload(Record):
    """The last catalog load (start-up or SIGHUP) the daemon recorded."""

    at: datetime
    outcome: Literal["ok", "refused", "failed"] = Field(
        description="`refused`: the catalog has problems and the last good one stays in force; "
        "`failed`: the reload itself broke (database, loader)."
    )
    problems: int = Field(description="How many problems the refused catalog had (0 otherwise).")
    error: str | None = Field(description="The first problem or error line, or null when ok.")


class PollState(Record):
    """The last poll of one pull source. Successes are recorded at most once a minute."""

    source: str
    last_success: datetime | None
    last_failure: datetime | None
    error: str | None = Field(description="The last failure's error line, or null.")


class Status(Record):
    """`suture status` and GET /api/v1/status: what on-call checks first."""

    paused: bool = Field(description="The global kill switch: no automatic run starts while true.")
    queued: int = Field(description="Queue depth: runs waiting for a worker.")
    running: int
    awaiting_approval: int
    open_incidents: int
    overdue_incidents: int = Field(
        description="Open incidents past `respond_by` unacknowledged, or past `due_at`."
    )
    notifications_pending: int = Field(description="Deliveries not yet sent (waiting or being sent).")
    notifications_failed: int = Field(description="Deliveries given up on.")
    open_breakers: list[Breaker] = Field(description="Breakers holding runs now, by playbook and version.")
    active_silences: list[Silence] = Field(description="Silences holding runs now, newest first.")
    catalog_reload: CatalogReload | None = Field(
        default=None, description="The last catalog load, or null if no daemon recorded one yet."
    )
    polls: list[PollState] = Field(
        default_factory=list, description="The last poll per pull source, by name."
    )
    maintenance: list[MaintenanceEntry] = Field(
        default_factory=list,
        description="The maintenance windows of config.yaml, active ones first, each in config order.",
    )


class ReceiptAnswer(Record):
    """What an alert endpoint answers with 202: the event and what its alerts did."""

    model_config = _shown(RECEIPT_EXAMPLE)

    event_id: int
    alerts: int
    incidents_opened: list[int]
    incidents_updated: list[int]
    incidents_resolved: list[int]
    runs_queued: list[int]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one committed submission did. A dataclass, not a `Record`: intake builds one per body
    and renders it itself (`as_json`, shaped as `ReceiptAnswer`), off FastAPI's path."""

    event_id: int
    alerts: int = 0
    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    runs_queued: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "alerts": self.alerts,
            "incidents_opened": self.opened,
            "incidents_updated": sorted(set(self.updated)),
            "incidents_resolved": self.resolved,
            "runs_queued": self.runs_queued,
        }


# --------------------------------------------------------------------- stats
# `suture stats --json` and GET /api/v1/stats (DESIGN.md, "JSON shapes"); engine.analytics.stats builds them.
# Every count is of incidents opened in the window (and the runs, alerts of those incidents).


class StatsIncidents(Record):
    opened: int
    resolved: int
    open: int
    overdue: int = Field(description="Still open past `due_at`.")


class CodeStats(Record):
    code: str
    title: str
    severity: str
    opened: int
    resolved: int
    open: int
    mttr_seconds: float | None = Field(description="Mean of resolved_at - opened_at; null: none resolved.")
    median_ttr_seconds: float | None
    p90_ttr_seconds: float | None = Field(description="Linear interpolation between the closest ranks.")
    mtta_seconds: float | None = Field(description="Mean of acknowledged_at - opened_at, acknowledged only.")
    auto_resolved: int = Field(
        description="Resolved with an effective run and no person's ack, note or manual resolution."
    )
    sla_breached: int = Field(description="Resolved after due_at, or still open past it.")


class SlaStats(Record):
    severity: str
    opened: int
    resolved_in_time: int
    breached: int
    open_overdue: int


class PlaybookStats(Record):
    playbook: str
    version: int
    runs: int = Field(description="Runs that started (dry runs not counted).")
    succeeded: int
    failed: int
    effective: int
    effectiveness: float | None = Field(description="effective / runs; null without runs.")
    median_duration_seconds: float | None


class RecurringPair(Record):
    code: str
    target: str
    incidents: int


class UnclassifiedGroup(Record):
    alertname: str
    source: str
    alerts: int
    targets: int
    suggested_match: dict[str, str] = Field(
        description="The labels every alert of the group shares (alertname aside): a new code's match.labels."
    )


class Stats(Record):
    since: datetime
    until: datetime
    incidents: StatsIncidents
    by_code: list[CodeStats]
    sla: list[SlaStats]
    playbooks: list[PlaybookStats]
    auto_resolution_rate: float | None = Field(description="auto_resolved / resolved; null: none resolved.")
    recurring: list[RecurringPair]
    unclassified: list[UnclassifiedGroup]
