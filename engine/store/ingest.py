"""Apply a batch of inbound alerts in one write transaction: events, alerts, incidents, runs.

An alert instance is (fingerprint, starts_at). A firing alert bumps the open incident of its
fingerprint. Without one, it opens a new incident only if it started after every instance of
its fingerprint seen so far; otherwise it is a late delivery and only counts (on its own
instance's incident, else the newest one). A resolved alert closes the open incident; one that
finds no incident at all is stored unlinked, and that row is what marks its instance as over
when its firing arrives late. So a late firing never reopens, and a resolution never runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, literal_column, select, text, update

from engine.models import AlertStatus, ClassifiedAlert, IncidentStatus, Mode, RunStatus, Submission, due_at
from engine.policy import limits as policy
from engine.records import Receipt
from engine.store.bulk import insert_rows, select_rows
from engine.store.tables import (
    ENDED_INDEX,
    ENDED_WHERE,
    OPEN_FINGERPRINT_INDEX,
    alerts,
    audit_log,
    events,
    incidents,
    runs,
    sqlite_utc_datetime,
    sqlite_utc_text,
)

_CHUNK = 400  # bound parameters per IN (...) list


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
        self.known = _lookup(conn, batch)
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
        fingerprint, start = alert.fingerprint, alert.starts_at
        current = self.known.open_by_fp.pop(fingerprint, None)
        if current is None:
            if start is None:
                return None
            latest = self.known.latest.get(fingerprint)
            if latest is not None and latest.covers(start):
                return self.known.owner(fingerprint, start, latest)  # a resolution told again, or late
            # Resolved before it was seen firing: the stored alert row (no incident, resolved) is
            # what tells its late firing that the instance is over.
            self.known.latest.setdefault(fingerprint, _Latest()).ended = start
            return None
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

    def _fire(self, item: ClassifiedAlert, pending: _Pending) -> _Incident | None:
        alert = item.alert
        fingerprint, start = alert.fingerprint, alert.starts_at
        known = self.known.open_by_fp.get(fingerprint)
        if known is None and start is not None:
            latest = self.known.latest.get(fingerprint)
            if latest is not None and latest.covers(start):
                # Late: this instance or a newer one is over. Count it, open nothing; if only a
                # resolution told of that instance, the stored alert row alone records it.
                known = self.known.owner(fingerprint, start, latest)
                if known is None:
                    return None
        if known is not None:
            # Open: a repeat. Otherwise a late redelivery. Count it only.
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
        self.known.add(incident)
        if start is not None:
            self.known.latest.setdefault(fingerprint, _Latest()).incident = start  # the newest: not late
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


# On SQLite the queries go to the driver directly: SQLAlchemy's expanding of the IN lists was
# most of the lookup's cost for the small batches a busy writer commits. Without statistics
# SQLite prefers `ix_incidents_status_opened_at` for a long IN list and then reads every open
# incident (15 ms per batch at 40k open incidents, growing with the table), so the partial
# unique index is named: one probe per fingerprint.
_SQLITE_OPEN = (
    f"SELECT id, status, starts_at, fingerprint FROM incidents INDEXED BY {OPEN_FINGERPRINT_INDEX}"
    f" WHERE fingerprint IN ({{}}) AND status = '{IncidentStatus.open.value}'"
)


# The newest startsAt of each fingerprint's incidents, and of its resolved alerts that found no
# incident: two index probes per fingerprint (a max over an index is its last entry), however
# many startsAt values the batch carries. The literals let the partial index serve the second.
_SQLITE_LATEST = (
    "SELECT f.column1,"
    " (SELECT max(starts_at) FROM incidents INDEXED BY ix_incidents_fingerprint_starts_at"
    "  WHERE fingerprint = f.column1),"
    f" (SELECT max(starts_at) FROM alerts INDEXED BY {ENDED_INDEX}"
    f"  WHERE fingerprint = f.column1 AND {ENDED_WHERE})"
    " FROM (VALUES {}) AS f"
)


_LATEST = text(
    "SELECT f.fp,"
    " (SELECT max(starts_at) FROM incidents WHERE fingerprint = f.fp),"
    f" (SELECT max(starts_at) FROM alerts WHERE fingerprint = f.fp AND {ENDED_WHERE})"
    " FROM unnest(CAST(:fingerprints AS text[])) AS f(fp)"
)


# Incidents of given (fingerprint, startsAt) pairs: one index probe per pair. SQLite scans the
# table for a row-value IN list, so the pairs are spelled out; PostgreSQL probes per pair in a
# lateral join, whatever its statistics say.
_SQLITE_INSTANCE = "(fingerprint = ? AND starts_at = ?)"


_INSTANCES = text(
    "SELECT i.id, i.status, i.starts_at, i.fingerprint"
    " FROM unnest(CAST(:fingerprints AS text[]), CAST(:starts AS timestamptz[])) AS p(fp, s)"
    " CROSS JOIN LATERAL (SELECT id, status, starts_at, fingerprint FROM incidents"
    "  WHERE fingerprint = p.fp AND starts_at = p.s) AS i"
)


_PAIRS = _CHUNK // 2


@dataclass(slots=True)
class _Latest:
    """When the newest known instance of a fingerprint started: its newest incident, and its
    newest instance that only a resolution told of (resolved before it was seen firing)."""

    incident: datetime | None = None
    ended: datetime | None = None

    def covers(self, start: datetime) -> bool:
        """An alert of `start` is late: its instance, or a newer one, has been seen already."""
        return (self.incident is not None and start <= self.incident) or (
            self.ended is not None and start <= self.ended
        )


@dataclass
class _Known:
    """What the database knows of the batch's fingerprints, kept current as the batch applies."""

    open_by_fp: dict[str, _Incident] = field(default_factory=dict)
    instances: dict[tuple[str, datetime], _Incident] = field(default_factory=dict)
    latest: dict[str, _Latest] = field(default_factory=dict)

    def add(self, incident: _Incident) -> None:
        if incident.status == IncidentStatus.open.value:
            self.open_by_fp.setdefault(incident.fingerprint, incident)
        if incident.starts_at is not None:
            self.instances.setdefault((incident.fingerprint, incident.starts_at), incident)

    def owner(self, fingerprint: str, start: datetime, latest: _Latest) -> _Incident | None:
        """The incident a late alert counts on: its own instance's, else the newest incident
        if that started no earlier (a newer instance that never fired here has none)."""
        own = self.instances.get((fingerprint, start))
        if own is not None or latest.incident is None or latest.incident < start:
            return own
        return self.instances.get((fingerprint, latest.incident))


def _lookup(conn: Connection, batch: list[Submission]) -> _Known:
    """The open incident and the newest instance of each fingerprint, then the incidents of
    the instances that the batch's late alerts belong to.

    Narrow queries, each served by its own index and linear in the batch; an OR of them would
    scan every open incident as the table grows. The last query runs only for late alerts.
    """
    known = _Known()
    fingerprints = sorted({c.alert.fingerprint for s in batch for c in s.alerts})
    for i in range(0, len(fingerprints), _CHUNK):
        chunk = fingerprints[i : i + _CHUNK]
        for row in _open_rows(conn, chunk):
            known.add(_Incident(status=row[1], starts_at=row[2], fingerprint=row[3], id=row[0]))
        for fingerprint, incident, ended in _latest_rows(conn, chunk):
            if incident is not None or ended is not None:
                known.latest[fingerprint] = _Latest(incident, ended)
    pairs: set[tuple[str, datetime]] = set()
    for submission in batch:
        for item in submission.alerts:
            start, fingerprint = item.alert.starts_at, item.alert.fingerprint
            latest = known.latest.get(fingerprint)
            if start is None or latest is None or not latest.covers(start):
                continue
            pairs.add((fingerprint, start))
            if latest.incident is not None and latest.incident >= start:
                pairs.add((fingerprint, latest.incident))
    wanted = sorted(pairs - known.instances.keys())
    for i in range(0, len(wanted), _PAIRS):
        for row in _instance_rows(conn, wanted[i : i + _PAIRS]):
            known.add(_Incident(status=row[1], starts_at=row[2], fingerprint=row[3], id=row[0]))
    return known


_IncidentRow = tuple[int, str, datetime | None, str]


def _open_rows(conn: Connection, fingerprints: list[str]) -> Iterator[_IncidentRow]:
    """(id, status, starts_at, fingerprint) of the open incidents of `fingerprints`."""
    if conn.dialect.name != "sqlite":
        for row in conn.execute(_OPEN_BY_FINGERPRINT, {"fingerprints": fingerprints}):
            yield row.id, row.status, row.starts_at, row.fingerprint
        return
    sql = _SQLITE_OPEN.format(", ".join("?" * len(fingerprints)))
    for incident_id, status, started, fingerprint in select_rows(conn, sql, fingerprints):
        yield incident_id, status, _sqlite_time(started), fingerprint


def _latest_rows(
    conn: Connection, fingerprints: list[str]
) -> Iterator[tuple[str, datetime | None, datetime | None]]:
    """(fingerprint, newest incident's startsAt, newest startsAt resolved without an incident)."""
    if conn.dialect.name != "sqlite":
        for row in conn.execute(_LATEST, {"fingerprints": fingerprints}):
            yield row[0], row[1], row[2]
        return
    sql = _SQLITE_LATEST.format(", ".join("(?)" for _ in fingerprints))
    for fingerprint, incident, ended in select_rows(conn, sql, fingerprints):
        yield fingerprint, _sqlite_time(incident), _sqlite_time(ended)


def _instance_rows(conn: Connection, pairs: list[tuple[str, datetime]]) -> Iterator[_IncidentRow]:
    """(id, status, starts_at, fingerprint) of the incidents of these (fingerprint, startsAt)."""
    if conn.dialect.name != "sqlite":
        parameters = {"fingerprints": [fp for fp, _ in pairs], "starts": [start for _, start in pairs]}
        for row in conn.execute(_INSTANCES, parameters):
            yield row.id, row.status, row.starts_at, row.fingerprint
        return
    sql = "SELECT id, status, starts_at, fingerprint FROM incidents WHERE " + " OR ".join(
        [_SQLITE_INSTANCE] * len(pairs)
    )
    values = [value for fingerprint, start in pairs for value in (fingerprint, sqlite_utc_text(start))]
    for incident_id, status, started, fingerprint in select_rows(conn, sql, values):
        yield incident_id, status, _sqlite_time(started), fingerprint


def _sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else sqlite_utc_datetime(value)


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
