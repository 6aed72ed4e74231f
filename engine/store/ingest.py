"""Apply a batch of inbound alerts in one write transaction: events, alerts, incidents, runs.

An alert instance is (fingerprint, starts_at). A firing alert bumps the open incident of its
fingerprint, or - when its instance's incident is already resolved - only counts as a
redelivery; otherwise it opens a new incident. A resolved alert closes the open incident.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, literal_column, select, update

from engine import policy
from engine.models import Alert, AlertStatus, IncidentStatus, Mode, Policy, RunStatus, Severity, due_at
from engine.store.bulk import insert_rows, select_rows
from engine.store.tables import (
    alerts,
    audit_log,
    events,
    incidents,
    runs,
    sqlite_utc_datetime,
    sqlite_utc_text,
)

_CHUNK = 400  # bound parameters per IN (...) list


@dataclass(slots=True)
class ClassifiedAlert:
    """An alert plus what the catalog says about it, decided before the write.

    Not frozen (nothing changes it): a frozen dataclass costs a microsecond more to build, and
    under a storm intake builds tens of thousands a second, in the daemon and in the helper.
    """

    alert: Alert
    code: str
    title: str
    severity: Severity
    target: str
    mode: Mode
    playbook: tuple[str, int] | None
    dry_run: bool = False
    policy: Policy | None = None


@dataclass(frozen=True)
class Submission:
    source: str
    body: str
    alerts: list[ClassifiedAlert]


@dataclass
class Receipt:
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


@dataclass(eq=False)
class _Incident:
    """An incident this batch touches: stored already (`id`) or to be inserted (`row`)."""

    status: str
    starts_at: datetime | None
    fingerprint: str
    id: int | None = None
    row: dict[str, Any] | None = None
    bumps: int = 0


@dataclass
class _Pending:
    """What one submission did, by object, until the ids of new rows are known."""

    event_id: int
    alerts: int
    opened: list[_Incident] = field(default_factory=list)
    updated: list[_Incident] = field(default_factory=list)
    resolved: list[_Incident] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


class _Batch:
    """Decide per alert in memory, then write each table with one multi-row statement."""

    def __init__(self, conn: Connection, now: datetime, batch: list[Submission]) -> None:
        self.conn = conn
        self.now = now
        self.open_by_fp, self.by_instance = _lookup(conn, batch)
        self.recent_runs = _recent_runs(conn, batch, now)
        self.new_incidents: list[_Incident] = []
        self.bumped: set[_Incident] = set()
        self.resolutions: list[dict[str, Any]] = []
        self.new_runs: list[tuple[_Incident, dict[str, Any]]] = []
        self.alert_rows: list[tuple[dict[str, Any], _Incident | None]] = []
        self.audit_rows: list[tuple[dict[str, Any], _Incident, dict[str, Any] | None]] = []

    def apply(self, item: ClassifiedAlert, pending: _Pending) -> None:
        alert = item.alert
        incident = (
            self._resolve(item, pending)
            if alert.status is AlertStatus.resolved
            else self._fire(item, pending)
        )
        self.alert_rows.append(
            (
                {
                    "event_id": pending.event_id,
                    "source": alert.source,
                    "fingerprint": alert.fingerprint,
                    "name": alert.name,
                    "status": alert.status.value,
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "starts_at": alert.starts_at,
                    "ends_at": alert.ends_at,
                    "received_at": self.now,
                    "code": item.code,
                    "incident_id": None,
                },
                incident,
            )
        )

    def _resolve(self, item: ClassifiedAlert, pending: _Pending) -> _Incident | None:
        alert = item.alert
        current = self.open_by_fp.pop(alert.fingerprint, None)
        if current is None:
            return self.by_instance.get((alert.fingerprint, alert.starts_at))
        ends = alert.ends_at
        values = {
            "status": IncidentStatus.resolved.value,
            "resolved_at": ends if ends is not None and ends <= self.now else self.now,
            "resolution": "alert_resolved",
            "last_seen": self.now,
        }
        if current.row is not None:
            current.row.update(values)
        else:
            self.resolutions.append({"r_id": current.id, **values})
        current.status = IncidentStatus.resolved.value
        pending.resolved.append(current)
        return current

    def _fire(self, item: ClassifiedAlert, pending: _Pending) -> _Incident:
        alert = item.alert
        known = self.open_by_fp.get(alert.fingerprint) or self.by_instance.get(
            (alert.fingerprint, alert.starts_at)
        )
        if known is not None:
            # Open: a repeat. Resolved with the same startsAt: a late redelivery. Count it only.
            known.bumps += 1
            self.bumped.add(known)
            pending.updated.append(known)
            return known
        incident = _Incident(
            status=IncidentStatus.open.value,
            starts_at=alert.starts_at,
            fingerprint=alert.fingerprint,
            row={
                "code": item.code,
                "title": item.title,
                "status": IncidentStatus.open.value,
                "severity": item.severity.value,
                "target": item.target,
                "source": alert.source,
                "fingerprint": alert.fingerprint,
                "alertname": alert.name,
                "starts_at": alert.starts_at,
                "labels": alert.labels,
                "annotations": alert.annotations,
                "occurrences": 1,
                "opened_at": self.now,
                "last_seen": self.now,
                "due_at": due_at(item.severity, self.now),
                "resolved_at": None,
                "resolution": None,
            },
        )
        self.new_incidents.append(incident)
        self.open_by_fp[alert.fingerprint] = incident
        self.by_instance[(alert.fingerprint, alert.starts_at)] = incident
        pending.opened.append(incident)
        if item.playbook is not None and item.mode in (Mode.auto, Mode.approval):
            self._enqueue(item, item.playbook, incident, pending)
        return incident

    def _enqueue(
        self, item: ClassifiedAlert, playbook: tuple[str, int], incident: _Incident, pending: _Pending
    ) -> None:
        status = RunStatus.queued if item.mode is Mode.auto else RunStatus.awaiting_approval
        held: str | None = None
        if item.policy is not None:
            earlier = self.recent_runs.setdefault((item.code, item.target), [])
            held = policy.refusal(item.policy, earlier, self.now)
            if held is None:
                earlier.append(self.now)
        run = {
            "incident_id": None,
            "playbook": playbook[0],
            "playbook_version": playbook[1],
            "status": RunStatus.skipped.value if held else status.value,
            "trigger": item.mode.value,
            "dry_run": item.dry_run,
            "queued_at": self.now,
            "finished_at": self.now if held else None,
            "error": held,
            "context": run_context(item, 0, self.now),
        }
        self.new_runs.append((incident, run))
        if held:
            self._audit(incident, run, "run_skipped", f"not started: {held}")
            return
        pending.runs.append(run)
        kind = "run_queued" if item.mode is Mode.auto else "run_awaiting_approval"
        self._audit(incident, run, kind, f"of {playbook[0]}@{playbook[1]}")

    def _audit(self, incident: _Incident, run: dict[str, Any] | None, kind: str, message: str) -> None:
        row = {"at": self.now, "actor": "suture", "kind": kind, "message": message, "detail": None}
        self.audit_rows.append((row, incident, run))

    def write(self) -> None:
        conn, now = self.conn, self.now
        # Resolve before inserting: a fingerprint resolved and firing again in one batch must not
        # meet its old incident still open in the one-open-incident-per-fingerprint index.
        if self.resolutions:
            conn.execute(
                update(incidents)
                .where(incidents.c.id == bindparam("r_id"))
                .values(
                    status=bindparam("status"),
                    resolved_at=bindparam("resolved_at"),
                    resolution=bindparam("resolution"),
                    last_seen=bindparam("last_seen"),
                ),
                self.resolutions,
            )
            # A run that succeeded before the monitoring system saw the problem go away was effective.
            conn.execute(
                update(runs)
                .where(
                    and_(runs.c.incident_id == bindparam("r_id"), runs.c.status == RunStatus.succeeded.value)
                )
                .values(effective=True),
                [{"r_id": r["r_id"]} for r in self.resolutions],
            )
        if self.new_incidents:
            rows = []
            for incident in self.new_incidents:
                assert incident.row is not None
                incident.row["occurrences"] += incident.bumps
                rows.append(incident.row)
            ids = insert_rows(conn, incidents, rows, ids=True)
            for incident, new_id in zip(self.new_incidents, ids, strict=True):
                incident.id = new_id
        stored_bumps = {i.id: i.bumps for i in self.bumped if i.row is None}
        if stored_bumps:
            conn.execute(
                update(incidents)
                .where(incidents.c.id == bindparam("b_id"))
                .values(occurrences=incidents.c.occurrences + bindparam("b_n"), last_seen=now),
                [{"b_id": incident_id, "b_n": n} for incident_id, n in stored_bumps.items()],
            )
        if self.new_runs:
            for incident, run in self.new_runs:
                run["incident_id"] = incident.id
                run["context"]["incident"]["id"] = incident.id
            run_ids = insert_rows(conn, runs, [run for _, run in self.new_runs], ids=True)
            for (_, run), run_id in zip(self.new_runs, run_ids, strict=True):
                run["id"] = run_id
        if self.alert_rows:
            for row, owner in self.alert_rows:
                row["incident_id"] = owner.id if owner is not None else None
            insert_rows(conn, alerts, [row for row, _ in self.alert_rows], ids=False)
        if self.audit_rows:
            for row, subject, queued in self.audit_rows:
                row["incident_id"] = subject.id
                row["run_id"] = queued["id"] if queued is not None else None
                if queued is not None:
                    row["message"] = f"run {queued['id']} {row['message']}"
            insert_rows(conn, audit_log, [row for row, _, _ in self.audit_rows], ids=False)


def apply_batch(conn: Connection, batch: list[Submission], now: datetime) -> list[Receipt]:
    """Store every submission of the batch; the caller commits once for all of them."""
    event_ids = insert_rows(
        conn,
        events,
        [
            {"source": s.source, "received_at": now, "body": s.body, "alert_count": len(s.alerts)}
            for s in batch
        ],
        ids=True,
    )
    work = _Batch(conn, now, batch)
    pendings = []
    for submission, event_id in zip(batch, event_ids, strict=True):
        pending = _Pending(event_id=event_id, alerts=len(submission.alerts))
        for item in submission.alerts:
            work.apply(item, pending)
        pendings.append(pending)
    work.write()
    return [
        Receipt(
            event_id=p.event_id,
            alerts=p.alerts,
            opened=[int(i.id) for i in p.opened if i.id is not None],
            updated=[int(i.id) for i in p.updated if i.id is not None],
            resolved=[int(i.id) for i in p.resolved if i.id is not None],
            runs_queued=[int(r["id"]) for r in p.runs],
        )
        for p in pendings
    ]


_COLUMNS = (incidents.c.id, incidents.c.status, incidents.c.starts_at, incidents.c.fingerprint)
# Built once: constructing an IN clause over hundreds of values on every batch cost a fifth of
# the writer's time; expanding parameters only fill in the placeholders. `'open'` is a literal
# so that the partial index `uq_incidents_open_fingerprint` applies to every plan.
_OPEN_BY_FINGERPRINT = select(*_COLUMNS).where(
    and_(
        incidents.c.fingerprint.in_(bindparam("fingerprints", expanding=True)),
        incidents.c.status == literal_column(f"'{IncidentStatus.open.value}'"),
    )
)
_BY_INSTANCE = select(*_COLUMNS).where(
    and_(
        incidents.c.fingerprint.in_(bindparam("fingerprints", expanding=True)),
        incidents.c.starts_at.in_(bindparam("starts", expanding=True)),
    )
)
# On SQLite the same two queries go to the driver directly: SQLAlchemy's expanding of the IN
# lists was most of the lookup's cost for the small batches a busy writer commits. Without
# statistics SQLite prefers `ix_incidents_status_opened_at` for a long IN list and then reads
# every open incident (15 ms per batch at 40k open incidents, growing with the table), so the
# partial unique index is named: one probe per fingerprint.
_SQLITE_OPEN = (
    "SELECT id, status, starts_at, fingerprint FROM incidents INDEXED BY uq_incidents_open_fingerprint"
    f" WHERE fingerprint IN ({{}}) AND status = '{IncidentStatus.open.value}'"
)
_SQLITE_BY_INSTANCE = (
    "SELECT id, status, starts_at, fingerprint FROM incidents WHERE fingerprint IN ({}) AND starts_at IN ({})"
)


def _incident_rows(
    conn: Connection, fingerprints: list[str], starts: list[datetime]
) -> Iterator[tuple[int, str, datetime | None, str]]:
    """(id, status, starts_at, fingerprint) of the open incidents of `fingerprints`, then of
    their incidents with one of `starts`."""
    if conn.dialect.name == "sqlite":
        yield from _sqlite_incident_rows(conn, fingerprints, starts)
        return
    queries: list[tuple[Any, dict[str, list[Any]]]] = [(_OPEN_BY_FINGERPRINT, {"fingerprints": fingerprints})]
    if starts:
        queries.append((_BY_INSTANCE, {"fingerprints": fingerprints, "starts": starts}))
    for query, parameters in queries:
        for row in conn.execute(query, parameters):
            yield row.id, row.status, row.starts_at, row.fingerprint


def _sqlite_incident_rows(
    conn: Connection, fingerprints: list[str], starts: list[datetime]
) -> Iterator[tuple[int, str, datetime | None, str]]:
    marks = ", ".join("?" * len(fingerprints))
    statements: list[tuple[str, list[Any]]] = [(_SQLITE_OPEN.format(marks), fingerprints)]
    if starts:
        texts = [sqlite_utc_text(value) for value in starts]
        statements.append(
            (_SQLITE_BY_INSTANCE.format(marks, ", ".join("?" * len(texts))), [*fingerprints, *texts])
        )
    for sql, parameters in statements:
        for incident_id, status, started, fingerprint in select_rows(conn, sql, parameters):
            yield incident_id, status, None if started is None else sqlite_utc_datetime(started), fingerprint


def _lookup(
    conn: Connection, batch: list[Submission]
) -> tuple[dict[str, _Incident], dict[tuple[str, datetime | None], _Incident]]:
    """The open incident of each fingerprint, and the incidents of each (fingerprint, startsAt).

    Two narrow queries, each served by its own index; an OR of the two would scan every open
    incident as the table grows.
    """
    open_by_fp: dict[str, _Incident] = {}
    by_instance: dict[tuple[str, datetime | None], _Incident] = {}
    fingerprints = sorted({c.alert.fingerprint for s in batch for c in s.alerts})
    starts = sorted({c.alert.starts_at for s in batch for c in s.alerts if c.alert.starts_at is not None})
    found: dict[int, _Incident] = {}
    for i in range(0, len(fingerprints), _CHUNK):
        for incident_id, status, started, fingerprint in _incident_rows(
            conn, fingerprints[i : i + _CHUNK], starts
        ):
            if incident_id not in found:
                found[incident_id] = _Incident(
                    status=status, starts_at=started, fingerprint=fingerprint, id=incident_id
                )
    for known in found.values():
        if known.status == IncidentStatus.open.value:
            open_by_fp[known.fingerprint] = known
        by_instance.setdefault((known.fingerprint, known.starts_at), known)
    return open_by_fp, by_instance


def _recent_runs(
    conn: Connection, batch: list[Submission], now: datetime
) -> dict[tuple[str, str], list[datetime]]:
    """When runs were started for each (code, target) that a policy in this batch looks back on."""
    spans = {
        c.code: span
        for s in batch
        for c in s.alerts
        if c.policy is not None and (span := policy.lookback(c.policy)) is not None
    }
    if not spans:
        return {}
    query = (
        select(incidents.c.code, incidents.c.target, runs.c.queued_at)
        .join(incidents, runs.c.incident_id == incidents.c.id)
        .where(
            and_(
                incidents.c.code.in_(sorted(spans)),
                runs.c.queued_at >= now - max(spans.values()),
                runs.c.status != RunStatus.skipped.value,
            )
        )
    )
    recent: dict[tuple[str, str], list[datetime]] = {}
    for row in conn.execute(query):
        recent.setdefault((row.code, row.target), []).append(row.queued_at)
    return recent


def run_context(item: ClassifiedAlert, incident_id: int, now: datetime) -> dict[str, Any]:
    """Everything the executor needs to render and run the playbook, frozen at queue time."""
    alert = item.alert
    return {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "target": item.target,
        "alert": {
            "name": alert.name,
            "source": alert.source,
            "status": alert.status.value,
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
            "generator_url": alert.generator_url,
        },
        "code": {"code": item.code, "title": item.title, "severity": item.severity.value},
        "incident": {"id": incident_id, "opened_at": now.isoformat(), "fingerprint": alert.fingerprint},
    }
