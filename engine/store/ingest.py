"""Apply a batch of inbound alerts in one write transaction: events, alerts, incidents, runs.

An alert instance is (fingerprint, starts_at). A firing alert bumps the open incident of its
fingerprint, or - when its instance's incident is already resolved - only counts as a
redelivery; otherwise it opens a new incident. A resolved alert closes the open incident.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from engine.models import Alert, AlertStatus, IncidentStatus, Mode, RunStatus, Severity, due_at
from engine.store.tables import alerts, audit_log, events, incidents, runs

_CHUNK = 400  # bound parameters per IN (...) list


@dataclass(frozen=True)
class ClassifiedAlert:
    """An alert plus what the catalog says about it, decided before the write."""

    alert: Alert
    code: str
    title: str
    severity: Severity
    target: str
    mode: Mode
    playbook: tuple[str, int] | None
    dry_run: bool = False


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


@dataclass
class _Known:
    id: int
    status: str
    starts_at: datetime | None
    fingerprint: str


def apply_batch(conn: Connection, batch: list[Submission], now: datetime) -> list[Receipt]:
    """Store every submission of the batch; the caller commits once for all of them."""
    receipts: list[Receipt] = []
    fingerprints = {c.alert.fingerprint for s in batch for c in s.alerts}
    open_by_fp, resolved_by_instance = _lookup(conn, fingerprints, batch)
    bumps: dict[int, int] = defaultdict(int)
    alert_rows: list[dict[str, Any]] = []
    audit_rows: list[dict[str, Any]] = []

    for submission in batch:
        event_id = conn.execute(
            insert(events).values(
                source=submission.source,
                received_at=now,
                body=submission.body,
                alert_count=len(submission.alerts),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        receipt = Receipt(event_id=event_id, alerts=len(submission.alerts))
        for item in submission.alerts:
            alert = item.alert
            incident_id = _apply_one(
                conn, item, now, open_by_fp, resolved_by_instance, bumps, receipt, audit_rows
            )
            alert_rows.append(
                {
                    "event_id": event_id,
                    "source": alert.source,
                    "fingerprint": alert.fingerprint,
                    "name": alert.name,
                    "status": alert.status.value,
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "starts_at": alert.starts_at,
                    "ends_at": alert.ends_at,
                    "received_at": now,
                    "code": item.code,
                    "incident_id": incident_id,
                }
            )
        receipts.append(receipt)

    if bumps:
        conn.execute(
            update(incidents)
            .where(incidents.c.id == bindparam("b_id"))
            .values(occurrences=incidents.c.occurrences + bindparam("b_n"), last_seen=now),
            [{"b_id": incident_id, "b_n": n} for incident_id, n in bumps.items()],
        )
    if alert_rows:
        conn.execute(insert(alerts), alert_rows)
    if audit_rows:
        conn.execute(insert(audit_log), audit_rows)
    return receipts


def _lookup(
    conn: Connection, fingerprints: set[str], batch: list[Submission]
) -> tuple[dict[str, _Known], dict[tuple[str, datetime | None], _Known]]:
    open_by_fp: dict[str, _Known] = {}
    by_instance: dict[tuple[str, datetime | None], _Known] = {}
    starts = {c.alert.starts_at for s in batch for c in s.alerts if c.alert.starts_at is not None}
    ordered = sorted(fingerprints)
    for i in range(0, len(ordered), _CHUNK):
        chunk = ordered[i : i + _CHUNK]
        condition = incidents.c.status == IncidentStatus.open.value
        if starts:
            condition = or_(condition, incidents.c.starts_at.in_(sorted(starts)))
        rows = conn.execute(
            select(incidents.c.id, incidents.c.status, incidents.c.starts_at, incidents.c.fingerprint).where(
                and_(incidents.c.fingerprint.in_(chunk), condition)
            )
        )
        for row in rows:
            known = _Known(row.id, row.status, row.starts_at, row.fingerprint)
            if known.status == IncidentStatus.open.value:
                open_by_fp[known.fingerprint] = known
            by_instance.setdefault((known.fingerprint, known.starts_at), known)
    return open_by_fp, by_instance


def _apply_one(
    conn: Connection,
    item: ClassifiedAlert,
    now: datetime,
    open_by_fp: dict[str, _Known],
    by_instance: dict[tuple[str, datetime | None], _Known],
    bumps: dict[int, int],
    receipt: Receipt,
    audit_rows: list[dict[str, Any]],
) -> int | None:
    alert = item.alert
    fingerprint = alert.fingerprint
    current = open_by_fp.get(fingerprint)

    if alert.status is AlertStatus.resolved:
        if current is None:
            known = by_instance.get((fingerprint, alert.starts_at))
            return known.id if known else None
        resolved_at = alert.ends_at if alert.ends_at is not None and alert.ends_at <= now else now
        conn.execute(
            update(incidents)
            .where(incidents.c.id == current.id)
            .values(
                status=IncidentStatus.resolved.value,
                resolved_at=resolved_at,
                resolution="alert_resolved",
                last_seen=now,
            )
        )
        # A run that succeeded before the monitoring system saw the problem go away was effective.
        conn.execute(
            update(runs)
            .where(and_(runs.c.incident_id == current.id, runs.c.status == RunStatus.succeeded.value))
            .values(effective=True)
        )
        current.status = IncidentStatus.resolved.value
        del open_by_fp[fingerprint]
        receipt.resolved.append(current.id)
        audit_rows.append(_audit(now, current.id, None, "incident_resolved", "alert resolved at the source"))
        return current.id

    if current is not None:
        bumps[current.id] += 1
        receipt.updated.append(current.id)
        return current.id
    known = by_instance.get((fingerprint, alert.starts_at))
    if known is not None:
        # A redelivered or late firing alert of an instance that already resolved: count it only.
        bumps[known.id] += 1
        receipt.updated.append(known.id)
        return known.id

    incident_id = conn.execute(
        insert(incidents).values(
            code=item.code,
            title=item.title,
            status=IncidentStatus.open.value,
            severity=item.severity.value,
            target=item.target,
            source=alert.source,
            fingerprint=fingerprint,
            alertname=alert.name,
            starts_at=alert.starts_at,
            labels=alert.labels,
            annotations=alert.annotations,
            occurrences=1,
            opened_at=now,
            last_seen=now,
            due_at=due_at(item.severity, now),
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    known = _Known(incident_id, IncidentStatus.open.value, alert.starts_at, fingerprint)
    open_by_fp[fingerprint] = known
    by_instance[(fingerprint, alert.starts_at)] = known
    receipt.opened.append(incident_id)
    audit_rows.append(
        _audit(
            now,
            incident_id,
            None,
            "incident_opened",
            f"{item.code} opened for {item.target or 'unknown target'}",
        )
    )
    if item.playbook is not None and item.mode in (Mode.auto, Mode.approval):
        run_id = _enqueue(conn, item, incident_id, now)
        receipt.runs_queued.append(run_id)
        kind = "run_queued" if item.mode is Mode.auto else "run_awaiting_approval"
        audit_rows.append(
            _audit(now, incident_id, run_id, kind, f"run {run_id} of {item.playbook[0]}@{item.playbook[1]}")
        )
    return incident_id


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


def _enqueue(conn: Connection, item: ClassifiedAlert, incident_id: int, now: datetime) -> int:
    assert item.playbook is not None
    status = RunStatus.queued if item.mode is Mode.auto else RunStatus.awaiting_approval
    return int(
        conn.execute(
            insert(runs).values(
                incident_id=incident_id,
                playbook=item.playbook[0],
                playbook_version=item.playbook[1],
                status=status.value,
                trigger=item.mode.value,
                dry_run=item.dry_run,
                queued_at=now,
                context=run_context(item, incident_id, now),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )


def _audit(
    now: datetime, incident_id: int | None, run_id: int | None, kind: str, message: str
) -> dict[str, Any]:
    return {
        "at": now,
        "actor": "suture",
        "kind": kind,
        "incident_id": incident_id,
        "run_id": run_id,
        "message": message,
        "detail": None,
    }
