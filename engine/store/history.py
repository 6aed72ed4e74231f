"""The aggregate reads analytics needs (stats, effectiveness, the handover report): narrow rows of one
window, as plain frozen facts; the arithmetic is engine.analytics' and never happens here.

A window is the incidents opened in [since, until); runs, verify steps and alerts are those of these
incidents, so every number analytics derives counts incidents opened in the window (DESIGN.md,
"stats --json", Definitions). Plain SQLAlchemy Core, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select

from engine.models import UNCLASSIFIED, IncidentStatus, RunStatus
from engine.store.db import Database
from engine.store.tables import alerts, audit_log, codes, incidents, playbook_versions, runs, step_results

#: The audit kind of a person's note (engine.store.store.NOTE).
NOTE = "note"
#: How many notes, open incidents and catalog changes a report reads at most.
REPORT_LIMIT = 500


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What analytics reads of one incident; `noted`: a person wrote a note on it."""

    id: int
    code: str
    title: str
    severity: str
    target: str
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    due_at: datetime | None
    respond_by: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    noted: bool


@dataclass(frozen=True, slots=True)
class RunFacts:
    id: int
    incident_id: int
    playbook: str
    playbook_version: int
    status: str
    trigger: str
    dry_run: bool
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class VerifyStep:
    """One recorded attempt of one verify step of a run."""

    run_id: int
    seq: int
    name: str
    status: str


@dataclass(frozen=True, slots=True)
class Opening:
    """An incident opened: what the recurrence check looks for after a resolution."""

    code: str
    target: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """Unclassified alerts of one (name, source, label set, incident target), counted in SQL."""

    name: str
    source: str
    target: str
    labels: dict[str, str]
    alerts: int


@dataclass(frozen=True, slots=True)
class Window:
    """Everything stats reads for incidents opened in [since, until)."""

    since: datetime
    until: datetime
    incidents: list[IncidentFacts]
    runs: list[RunFacts]
    verify: list[VerifyStep]
    #: Incidents opened in [until, until + reach): recurrences of resolutions near the window's end.
    later: list[Opening]
    unclassified: list[AlertGroup]


@dataclass(frozen=True, slots=True)
class NoteFacts:
    at: datetime
    by: str
    text: str
    incident_id: int
    code: str
    target: str


@dataclass(frozen=True, slots=True)
class AwaitingRun:
    run: RunFacts
    code: str
    title: str
    target: str


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """A code or playbook version first loaded in the window, with the version before it."""

    kind: str  # "code" | "playbook"
    name: str
    version: int
    sha256: str
    loaded_at: datetime
    body: Any
    previous_body: Any | None


_INCIDENT_COLUMNS = (
    incidents.c.id,
    incidents.c.code,
    incidents.c.title,
    incidents.c.severity,
    incidents.c.target,
    incidents.c.status,
    incidents.c.opened_at,
    incidents.c.resolved_at,
    incidents.c.resolution,
    incidents.c.due_at,
    incidents.c.respond_by,
    incidents.c.acknowledged_at,
    incidents.c.acknowledged_by,
)
_RUN_COLUMNS = (
    runs.c.id,
    runs.c.incident_id,
    runs.c.playbook,
    runs.c.playbook_version,
    runs.c.status,
    runs.c.trigger,
    runs.c.dry_run,
    runs.c.queued_at,
    runs.c.started_at,
    runs.c.finished_at,
    runs.c.error,
)


def _incident(row: Any) -> IncidentFacts:
    """A row of `_INCIDENT_COLUMNS` plus `noted` (0/1 on SQLite)."""
    values = list(row)
    values[-1] = bool(values[-1])
    return IncidentFacts(*values)


class History:
    """Read-only aggregate queries over incidents, runs, alerts, the audit log and catalog versions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def window(self, since: datetime, until: datetime, reach_until: datetime | None = None) -> Window:
        """Incidents opened in [since, until), their runs, verify steps and unclassified alerts, and the
        openings in [until, reach_until) that a recurrence check after the window may need."""
        opened = and_(incidents.c.opened_at >= since, incidents.c.opened_at < until)
        noted = exists().where(and_(audit_log.c.incident_id == incidents.c.id, audit_log.c.kind == NOTE))
        with self.db.read() as conn:
            found = [
                _incident(row)
                for row in conn.execute(
                    select(*_INCIDENT_COLUMNS, noted.label("noted")).where(opened).order_by(incidents.c.id)
                )
            ]
            their_runs = [
                RunFacts(*row)
                for row in conn.execute(
                    select(*_RUN_COLUMNS)
                    .join(incidents, runs.c.incident_id == incidents.c.id)
                    .where(opened)
                    .order_by(runs.c.id)
                )
            ]
            verify = [
                VerifyStep(*row)
                for row in conn.execute(
                    select(
                        step_results.c.run_id, step_results.c.seq, step_results.c.name, step_results.c.status
                    )
                    .join(runs, step_results.c.run_id == runs.c.id)
                    .join(incidents, runs.c.incident_id == incidents.c.id)
                    .where(and_(opened, step_results.c.phase == "verify"))
                    .order_by(step_results.c.run_id, step_results.c.seq)
                )
            ]
            later: list[Opening] = []
            if reach_until is not None and reach_until > until:
                later = [
                    Opening(*row)
                    for row in conn.execute(
                        select(incidents.c.code, incidents.c.target, incidents.c.opened_at).where(
                            and_(incidents.c.opened_at >= until, incidents.c.opened_at < reach_until)
                        )
                    )
                ]
            count = func.count().label("alerts")
            groups = [
                AlertGroup(row.name, row.source, row.target, dict(row.labels), int(row.alerts))
                for row in conn.execute(
                    select(alerts.c.name, alerts.c.source, incidents.c.target, alerts.c.labels, count)
                    .join(incidents, alerts.c.incident_id == incidents.c.id)
                    .where(and_(opened, alerts.c.code == UNCLASSIFIED))
                    .group_by(alerts.c.name, alerts.c.source, incidents.c.target, alerts.c.labels)
                )
            ]
        return Window(since, until, found, their_runs, verify, later, groups)

    def open_incidents(self, limit: int = REPORT_LIMIT) -> tuple[list[IncidentFacts], list[RunFacts]]:
        """Every open incident (oldest first), whenever it opened, with its runs."""
        noted = exists().where(and_(audit_log.c.incident_id == incidents.c.id, audit_log.c.kind == NOTE))
        is_open = incidents.c.status == IncidentStatus.open.value
        with self.db.read() as conn:
            found = [
                _incident(row)
                for row in conn.execute(
                    select(*_INCIDENT_COLUMNS, noted.label("noted"))
                    .where(is_open)
                    .order_by(incidents.c.opened_at, incidents.c.id)
                    .limit(limit)
                )
            ]
            ids = [incident.id for incident in found]
            their_runs: list[RunFacts] = []
            for start in range(0, len(ids), 500):
                their_runs += [
                    RunFacts(*row)
                    for row in conn.execute(
                        select(*_RUN_COLUMNS)
                        .where(runs.c.incident_id.in_(ids[start : start + 500]))
                        .order_by(runs.c.id)
                    )
                ]
        return found, their_runs

    def awaiting_approval(self, limit: int = REPORT_LIMIT) -> list[AwaitingRun]:
        """Runs waiting for a person, oldest first, with their incident's code, title and target."""
        query = (
            select(*_RUN_COLUMNS, incidents.c.code, incidents.c.title, incidents.c.target)
            .join(incidents, runs.c.incident_id == incidents.c.id)
            .where(runs.c.status == RunStatus.awaiting_approval.value)
            .order_by(runs.c.id)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [AwaitingRun(RunFacts(*row[:-3]), *row[-3:]) for row in conn.execute(query)]

    def notes(self, since: datetime, until: datetime, limit: int = REPORT_LIMIT) -> list[NoteFacts]:
        """People's notes written in [since, until), oldest first, with their incident's code and target."""
        query = (
            select(
                audit_log.c.at,
                audit_log.c.actor,
                audit_log.c.message,
                audit_log.c.incident_id,
                incidents.c.code,
                incidents.c.target,
            )
            .join(incidents, audit_log.c.incident_id == incidents.c.id)
            .where(and_(audit_log.c.kind == NOTE, audit_log.c.at >= since, audit_log.c.at < until))
            .order_by(audit_log.c.at, audit_log.c.id)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [NoteFacts(*row) for row in conn.execute(query)]

    def catalog_changes(self, since: datetime, until: datetime) -> list[CatalogChange]:
        """Code and playbook versions first loaded in [since, until), each with its previous version."""
        changes: list[CatalogChange] = []
        with self.db.read() as conn:
            for kind, table, name in (("code", codes, codes.c.code), ("playbook", playbook_versions, None)):
                name_column = name if name is not None else table.c.name
                rows = conn.execute(
                    select(name_column, table.c.version, table.c.sha256, table.c.loaded_at, table.c.body)
                    .where(and_(table.c.loaded_at >= since, table.c.loaded_at < until))
                    .order_by(name_column, table.c.version)
                    .limit(REPORT_LIMIT)
                ).all()
                for row in rows:
                    previous = conn.execute(
                        select(table.c.body)
                        .where(and_(name_column == row[0], table.c.version < row[1]))
                        .order_by(table.c.version.desc())
                        .limit(1)
                    ).scalar()
                    changes.append(CatalogChange(kind, row[0], row[1], row[2], row[3], row[4], previous))
        return changes
