"""Apply a batch of inbound alerts in one write transaction: events, alerts, incidents, runs.

An alert instance is (fingerprint, starts_at). A firing alert bumps the open incident of its
fingerprint. Without one, it opens a new incident only if it started after every instance of
its fingerprint seen so far; otherwise it is a late delivery and only counts (on its own
instance's incident, else the newest one). A resolved alert closes the open incident; one that
finds no incident at all is stored unlinked, and that row is what marks its instance as over
when its firing arrives late. So a late firing never reopens, and a resolution never runs.

Whether a newly opened incident gets a run, with which status and timeline words, is not
decided here: the caller's `RunPlanner` (the intake writer, asking the policy chain) says so
for each one, and this module writes what it was told."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    case,
    delete,
    insert,
    or_,
    select,
    text,
    update,
)

from engine.alertfields import getter
from engine.models import (
    AlertStatus,
    ClassifiedAlert,
    Deadlines,
    IncidentStatus,
    RunStatus,
    Submission,
)
from engine.records import Receipt
from engine.store.bulk import insert_rows, select_rows
from engine.store.replicas import announce_runs
from engine.store.sqlfn import unindexed
from engine.store.sqltime import sqlite_utc_datetime, sqlite_utc_text
from engine.store.tables import (
    ALERT_COLUMNS,
    ENDED_INDEX,
    ENDED_WHERE,
    OPEN_FINGERPRINT_INDEX,
    alerts,
    audit_log,
    events,
    incidents,
    outbox,
    runs,
    state,
)

_CHUNK = 400  # bound parameters per IN (...) list

_stored_row = getter(ALERT_COLUMNS, as_row=True)


class AuditNote(Protocol):
    """The timeline entry of a new run, worded by the domain; the run's id is known only here."""

    @property
    def kind(self) -> str: ...

    def message(self, run_id: int) -> str: ...


@dataclass(slots=True, eq=False)
class NewRun:
    """A run the caller decided a newly opened incident gets, written as given.

    The store fills in `id` and `incident_id` when it writes the rows, so the caller can tell
    (hooks) what became of it after the commit.
    """

    playbook: str
    version: int
    status: RunStatus
    trigger: str
    dry_run: bool
    #: What the executor renders the playbook with; `context["incident"]["id"]` is filled in.
    context: dict[str, Any]
    note: AuditNote
    #: The run's `error` column: why a gate held it back, when it is skipped.
    error: str | None = None
    #: Born finished (skipped): `finished_at` is the batch's time.
    finished: bool = False
    #: What the gate that stopped or deferred it said: the run's `reason` column.
    reason: str | None = None
    #: A deferred run (`policy.delay`) is not claimed before this.
    not_before: datetime | None = None
    #: Columns of the new incident the decision sets (`silenced_by`, `flapping`).
    marks: dict[str, Any] = field(default_factory=dict)
    #: Outbox events the decision raises, as (event, reason).
    events: tuple[tuple[str, str], ...] = ()
    #: A state key to set (True) or delete (False) with the batch: a storm announced or over.
    state: tuple[str, bool] | None = None
    #: The gate that held it back, for metrics.
    gate: str | None = None
    #: A shadow run (rendered, never executed), and the one planned beside this run, if any.
    shadow: bool = False
    companion: NewRun | None = None
    id: int | None = None
    incident_id: int | None = None


class RunPlanner(Protocol):
    """The run a newly opened incident gets, or None; asked once per incident, in batch order.

    Called while the batch is applied, inside its write transaction: whatever it reads, it reads
    through that transaction (the intake writer's planner does, once, at its first incident).
    """

    def __call__(
        self, item: ClassifiedAlert, now: datetime, occurrences: int = 1, opening: bool = True
    ) -> NewRun | None: ...


@dataclass(frozen=True, slots=True)
class Keep:
    """What of a batch is written beyond what the store's own reads and the decisions need. The
    daemon keeps everything; a replay's scratch store, which nobody reads but the replay, keeps
    only what its dedup and gates read back (engine/intake/scratch.py)."""

    #: Every alert row; without, only those dedup reads back: resolved ones that found no incident.
    alerts: bool = True
    #: The timeline entry of each new run.
    audit: bool = True
    #: Labels, annotations and run contexts (empty documents without).
    documents: bool = True
    #: An event row's id: every body of a batch counts on it instead of a row of its own (a store
    #: nobody reads the events of: a webhook body's row per alert was a tenth of a replay's writes).
    event: int | None = None


EVERYTHING = Keep()


@dataclass(frozen=True, slots=True)
class OpenedIncident:
    incident_id: int
    code: str
    severity: str
    target: str


@dataclass(eq=False)
class Applied:
    """What a committed batch did: a receipt per submission, and for hooks the incidents it
    opened and the runs it wrote (with their ids)."""

    receipts: list[Receipt]
    runs: list[NewRun]
    _opened: list[_Incident] = field(default_factory=list, repr=False)
    #: The incident each alert of the batch counts on (None: none), in batch order (replay).
    alert_incidents: list[int | None] = field(default_factory=list, repr=False)

    def opened(self) -> list[OpenedIncident]:
        """Built on demand: under a storm the writer asks only when someone listens."""
        found = []
        for incident in self._opened:
            row = incident.row
            if incident.id is not None and row is not None:
                found.append(OpenedIncident(incident.id, row["code"], row["severity"], row["target"]))
        return found


@dataclass(eq=False)
class _Incident:
    """An incident this batch touches: stored already (`id`) or to be inserted (`row`)."""

    status: str
    starts_at: datetime | None
    fingerprint: str
    id: int | None = None
    row: dict[str, Any] | None = None
    bumps: int = 0
    #: Deliveries stored before this batch (1 for an incident this batch opens).
    occurrences: int = 1


@dataclass
class _Pending:
    """What one submission did, by object, until the ids of new rows are known."""

    event_id: int
    alerts: int
    opened: list[_Incident] = field(default_factory=list)
    updated: list[_Incident] = field(default_factory=list)
    resolved: list[_Incident] = field(default_factory=list)
    runs: list[NewRun] = field(default_factory=list)


class _Batch:
    """Decide per alert in memory, then write each table with one multi-row statement."""

    def __init__(
        self,
        conn: Connection,
        now: datetime,
        batch: list[Submission],
        plan: RunPlanner,
        notify: Collection[str],
        keep: Keep = EVERYTHING,
    ) -> None:
        self.conn = conn
        self.now = now
        self.plan = plan
        self.notify = notify
        self.keep = keep
        self.resolved: list[_Incident] = []
        self.known = _lookup(conn, batch)
        self.new_incidents: list[_Incident] = []
        self.bumped: set[_Incident] = set()
        self.resolutions: list[dict[str, Any]] = []
        self.new_runs: list[tuple[_Incident, NewRun, dict[str, Any]]] = []
        self.alert_rows: list[tuple[dict[str, Any] | None, _Incident | None]] = []
        self.audit_rows: list[tuple[dict[str, Any], _Incident, NewRun]] = []

    def apply(self, item: ClassifiedAlert, pending: _Pending) -> None:
        alert = item.alert
        incident = (
            self._resolve(item, pending)
            if alert.status is AlertStatus.resolved
            else self._fire(item, pending)
        )
        row = None
        # Without every alert row, only a resolved one can be kept (see `_alerts_kept`).
        if self.keep.alerts or alert.status is AlertStatus.resolved:
            row = _stored_row(alert)
            row.update(event_id=pending.event_id, received_at=self.now, code=item.code, incident_id=None)
        self.alert_rows.append((row, incident))

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
            values["resolved_at"] = max(values["resolved_at"], current.row["opened_at"])
            current.row.update(values)
        else:
            self.resolutions.append({"r_id": current.id, **values})
        current.status = IncidentStatus.resolved.value
        pending.resolved.append(current)
        self.resolved.append(current)
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
            self._enough(item, known, pending)
            return known
        deadlines = item.deadlines or Deadlines.of(item.severity)
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
                "due_at": deadlines.due_at(self.now),
                "respond_by": deadlines.respond_by(self.now),
                "resolved_at": None,
                "resolution": None,
                "silenced_by": None,
                "flapping": False,
            },
        )
        self.new_incidents.append(incident)
        self.known.add(incident)
        if start is not None:
            self.known.latest.setdefault(fingerprint, _Latest()).incident = start  # the newest: not late
        pending.opened.append(incident)
        if (run := self.plan(item, self.now)) is not None:
            self._enqueue(run, incident, pending)
        return incident

    def _enough(self, item: ClassifiedAlert, incident: _Incident, pending: _Pending) -> None:
        """`policy.min_occurrences`: the delivery that makes the count is when the run is asked for."""
        wanted = item.policy.min_occurrences if item.policy is not None else None
        if not wanted or incident.status != IncidentStatus.open.value:
            return
        delivered = incident.occurrences + incident.bumps
        if delivered == wanted and (run := self.plan(item, self.now, delivered, False)) is not None:
            self._enqueue(run, incident, pending)

    def _enqueue(self, run: NewRun, incident: _Incident, pending: _Pending) -> None:
        now = self.now
        row = {
            "incident_id": None,
            "playbook": run.playbook,
            "playbook_version": run.version,
            "status": run.status.value,
            "trigger": run.trigger,
            "dry_run": run.dry_run,
            "queued_at": now,
            "finished_at": now if run.finished else None,
            "error": run.error,
            "context": run.context,
            "reason": run.reason,
            "not_before": run.not_before,
            "shadow": run.shadow,
        }
        if run.marks and incident.row is not None:
            incident.row.update(run.marks)
        self.new_runs.append((incident, run, row))
        audit = {"at": now, "actor": "suture", "kind": run.note.kind, "message": None, "detail": None}
        self.audit_rows.append((audit, incident, run))
        if not run.finished:
            pending.runs.append(run)
        if run.companion is not None:
            self._enqueue(run.companion, incident, pending)

    def write(self) -> None:
        conn, now = self.conn, self.now
        # Resolve before inserting: a fingerprint resolved and firing again in one batch must not
        # meet its old incident still open in the one-open-incident-per-fingerprint index.
        if self.resolutions:
            # In id order, as the bumps below: two replicas' batches that touch the same
            # incidents lock their rows in the same order instead of deadlocking.
            _resolve_stored(conn, sorted(self.resolutions, key=lambda values: int(values["r_id"])))
        if self.new_incidents:
            rows = []
            for incident in self.new_incidents:
                assert incident.row is not None
                incident.row["occurrences"] += incident.bumps
                rows.append(incident.row if self.keep.documents else {**incident.row, **_NO_DOCUMENTS})
            ids = insert_rows(conn, incidents, rows, ids=True)
            for incident, new_id in zip(self.new_incidents, ids, strict=True):
                incident.id = new_id
        stored_bumps = {int(i.id): i.bumps for i in self.bumped if i.row is None and i.id is not None}
        if stored_bumps:
            _bump_stored(conn, sorted(stored_bumps.items()), now)
        if self.new_runs:
            for incident, run, row in self.new_runs:
                run.incident_id = row["incident_id"] = incident.id
                run.context["incident"]["id"] = incident.id
            run_rows = [row if self.keep.documents else {**row, "context": {}} for _, _, row in self.new_runs]
            run_ids = insert_rows(conn, runs, run_rows, ids=True)
            for (_, run, _), run_id in zip(self.new_runs, run_ids, strict=True):
                run.id = run_id
        if self.alert_rows:
            for alert_row, owner in self.alert_rows:
                if alert_row is not None:
                    alert_row["incident_id"] = owner.id if owner is not None else None
            insert_rows(conn, alerts, self._alerts_kept(), ids=False)
        if self.audit_rows and self.keep.audit:
            for row, subject, run in self.audit_rows:
                assert run.id is not None
                row["incident_id"] = subject.id
                row["run_id"] = run.id
                row["message"] = run.note.message(run.id)
            insert_rows(conn, audit_log, [row for row, _, _ in self.audit_rows], ids=False)
        for _, run, _ in self.new_runs:
            if run.state is not None:
                _write_state(conn, run.state[0], run.state[1], now)
        if any(run.status is RunStatus.queued for _, run, _ in self.new_runs):
            announce_runs(conn)
        if self.notify:
            self._notify()

    def _alerts_kept(self) -> list[dict[str, Any]]:
        rows = [row for row, _ in self.alert_rows if row is not None]
        if not self.keep.alerts:
            resolved = AlertStatus.resolved.value
            rows = [row for row in rows if row["incident_id"] is None and row["status"] == resolved]
        if not self.keep.documents:
            rows = [{**row, **_NO_DOCUMENTS} for row in rows]
        return rows

    def _notify(self) -> None:
        """The outbox events of this batch, committed with it (the notifier sends them later)."""
        rows: list[dict[str, Any]] = []

        def add(event: str, incident_id: int | None, run_id: int | None, reason: str) -> None:
            if event in self.notify and incident_id is not None:
                rows.append(
                    {
                        "at": self.now,
                        "event": event,
                        "incident_id": incident_id,
                        "run_id": run_id,
                        "reason": reason,
                        "dispatched": False,
                    }
                )

        for incident in self.new_incidents:
            add("incident_opened", incident.id, None, "a new incident was opened")
        for _, run, _ in self.new_runs:
            if run.status is RunStatus.awaiting_approval:
                add("approval_needed", run.incident_id, run.id, f"run {run.id} waits for a person's approval")
        for incident in self.resolved:
            add("resolved", incident.id, None, "the alert resolved at the source")
        for _, run, _ in self.new_runs:
            for event, reason in run.events:
                add(event, run.incident_id, run.id, reason)
        if rows:
            insert_rows(self.conn, outbox, rows, ids=False)


_RESOLVED_AT = bindparam("resolved_at", type_=incidents.c.resolved_at.type)

#: Built once: building and keying these per batch cost more than running them.
_RESOLVE = (
    update(incidents)
    .where(incidents.c.id == bindparam("r_id"))
    .values(
        status=bindparam("status"),
        # An alert that ended before its incident was opened (its firing came late) resolves it
        # when it was opened: a time to resolve is never negative.
        resolved_at=case((_RESOLVED_AT < incidents.c.opened_at, incidents.c.opened_at), else_=_RESOLVED_AT),
        resolution=bindparam("resolution"),
        last_seen=bindparam("last_seen", type_=incidents.c.last_seen.type),
    )
)
_BUMP = (
    update(incidents)
    .where(incidents.c.id == bindparam("b_id"))
    .values(
        occurrences=incidents.c.occurrences + bindparam("b_n"),
        last_seen=bindparam("b_seen", type_=incidents.c.last_seen.type),
    )
)
# The same statements on SQLite, through the driver as the inserts go (engine.store.bulk): the
# times are SQLite's DATETIME text, compared as text.
_SQLITE_RESOLVE = (
    "UPDATE incidents SET status = ?,"
    " resolved_at = CASE WHEN ? < opened_at THEN opened_at ELSE ? END,"
    " resolution = ?, last_seen = ? WHERE id = ?"
)
_SQLITE_BUMP = "UPDATE incidents SET occurrences = occurrences + ?, last_seen = ? WHERE id = ?"


def _resolve_stored(conn: Connection, resolutions: list[dict[str, Any]]) -> None:
    """Resolve incidents stored before this batch (`r_id`, `status`, `resolved_at`, ...), in this order."""
    if conn.dialect.name != "sqlite":
        conn.execute(_RESOLVE, resolutions)
        return
    rows = []
    for values in resolutions:
        resolved_at = sqlite_utc_text(values["resolved_at"])
        last_seen = sqlite_utc_text(values["last_seen"])
        rows.append(
            (values["status"], resolved_at, resolved_at, values["resolution"], last_seen, values["r_id"])
        )
    _sqlite_many(conn, _SQLITE_RESOLVE, rows)


def _bump_stored(conn: Connection, bumps: list[tuple[int, int]], now: datetime) -> None:
    """Count the deliveries (incident id, how many more) of incidents stored before this batch."""
    if conn.dialect.name != "sqlite":
        conn.execute(_BUMP, [{"b_id": incident_id, "b_n": n, "b_seen": now} for incident_id, n in bumps])
        return
    seen = sqlite_utc_text(now)
    _sqlite_many(conn, _SQLITE_BUMP, [(n, seen, incident_id) for incident_id, n in bumps])


def _sqlite_many(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


_NO_DOCUMENTS: dict[str, Any] = {"labels": {}, "annotations": {}}


def _write_state(conn: Connection, key: str, present: bool, now: datetime) -> None:
    conn.execute(delete(state).where(state.c.key == key))
    if present:
        conn.execute(insert(state).values(key=key, value=now.isoformat(), updated_at=now))


def apply_batch(
    conn: Connection,
    batch: list[Submission],
    now: datetime,
    plan: RunPlanner,
    notify: Collection[str] = (),
    keep: Keep = EVERYTHING,
) -> Applied:
    """Store every submission of the batch; the caller commits once for all of them.

    `plan` says which run each newly opened incident gets; it is asked in batch order, so its
    answer may count the runs it gave earlier incidents of the same batch. `notify` names the
    events some channel hears of: each of those this batch causes gets its outbox row. `keep`
    says what is written beyond what the decisions read back (everything, but for a replay)."""
    event_ids = (
        insert_rows(
            conn,
            events,
            [
                {"source": s.source, "received_at": now, "body": s.body, "alert_count": len(s.alerts)}
                for s in batch
            ],
            ids=True,
        )
        if keep.event is None
        else [keep.event] * len(batch)
    )
    work = _Batch(conn, now, batch, plan, notify, keep)
    pendings = []
    for submission, event_id in zip(batch, event_ids, strict=True):
        pending = _Pending(event_id=event_id, alerts=len(submission.alerts))
        for item in submission.alerts:
            work.apply(item, pending)
        pendings.append(pending)
    work.write()
    receipts = [
        Receipt(
            event_id=p.event_id,
            alerts=p.alerts,
            opened=[int(i.id) for i in p.opened if i.id is not None],
            updated=[int(i.id) for i in p.updated if i.id is not None],
            resolved=[int(i.id) for i in p.resolved if i.id is not None],
            runs_queued=[int(r.id) for r in p.runs if r.id is not None],
        )
        for p in pendings
    ]
    return Applied(
        receipts,
        [run for _, run, _ in work.new_runs],
        work.new_incidents,
        [owner.id if owner is not None else None for _, owner in work.alert_rows],
    )


# PostgreSQL: one probe of the partial unique index `uq_incidents_open_fingerprint` per
# fingerprint, whatever the planner's statistics say: a long IN list (or a plain join) on a fresh
# database, before autovacuum analyzed it, was planned as a read of every open incident. The
# LIMIT (one open incident per fingerprint at most) keeps the lateral subquery from being
# flattened into such a join; `'open'` is a literal so the partial index's predicate matches.
_OPEN_BY_FINGERPRINT = text(
    "SELECT i.id, i.status, i.starts_at, i.fingerprint, i.occurrences"
    " FROM unnest(CAST(:fingerprints AS text[])) AS f(fp)"
    " CROSS JOIN LATERAL (SELECT id, status, starts_at, fingerprint, occurrences FROM incidents"
    f"  WHERE fingerprint = f.fp AND status = '{IncidentStatus.open.value}' LIMIT 1) AS i"
)


# On SQLite the queries go to the driver directly: SQLAlchemy's expanding of the IN lists was
# most of the lookup's cost for the small batches a busy writer commits. Without statistics
# SQLite prefers `ix_incidents_status_opened_at` for a long IN list and then reads every open
# incident (15 ms per batch at 40k open incidents, growing with the table), so the partial
# unique index is named: one probe per fingerprint.
_SQLITE_OPEN = (
    "SELECT id, status, starts_at, fingerprint, occurrences"
    f" FROM incidents INDEXED BY {OPEN_FINGERPRINT_INDEX}"
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
            known.add(
                _Incident(status=row[1], starts_at=row[2], fingerprint=row[3], id=row[0], occurrences=row[4])
            )
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
        for found in _instance_rows(conn, wanted[i : i + _PAIRS]):
            known.add(_Incident(status=found[1], starts_at=found[2], fingerprint=found[3], id=found[0]))
    return known


_IncidentRow = tuple[int, str, datetime | None, str]


def _open_rows(
    conn: Connection, fingerprints: list[str]
) -> Iterator[tuple[int, str, datetime | None, str, int]]:
    """(id, status, starts_at, fingerprint, occurrences) of the open incidents of `fingerprints`."""
    if conn.dialect.name != "sqlite":
        for row in conn.execute(_OPEN_BY_FINGERPRINT, {"fingerprints": fingerprints}):
            yield row.id, row.status, row.starts_at, row.fingerprint, row.occurrences
        return
    sql = _SQLITE_OPEN.format(", ".join("?" * len(fingerprints)))
    for incident_id, status, started, fingerprint, occurrences in select_rows(conn, sql, fingerprints):
        yield incident_id, status, _sqlite_time(started), fingerprint, occurrences


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


def recent_runs(
    conn: Connection, codes: Collection[str], since: datetime, claimed: int | None = None
) -> dict[tuple[str, str], list[datetime]]:
    """When runs of these codes were queued since `since`, by (code, target); skipped ones left out.

    With `claimed` (a run a worker is about to start), that run itself and the runs queued after
    it that have not started are left out too: what its recheck at claim looks back on."""
    if not codes:
        return {}
    recent: dict[tuple[str, str], list[datetime]] = {}
    for row in conn.execute(_RECENT_RUNS[claimed is not None], _recent_values(codes, since, claimed)):
        recent.setdefault((row.code, row.target), []).append(row.queued_at)
    return recent


def recent_runs_query(codes: Collection[str], since: datetime, claimed: int | None = None) -> Select[Any]:
    """The statement `recent_runs` executes, with its values bound (for plans in tests)."""
    return _RECENT_RUNS[claimed is not None].params(_recent_values(codes, since, claimed))


def _recent_values(codes: Collection[str], since: datetime, claimed: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {"codes": sorted(codes), "since": since}
    if claimed is not None:
        values["claimed"] = claimed
    return values


def _recent_runs_statement(at_claim: bool) -> Select[Any]:
    """Built once, values bound at execution: building and keying a fresh statement per intake
    batch cost more than running it."""
    conditions = [
        # Read from the runs of the look-back (by their queued_at index), never from every incident
        # these codes ever had: SQLite, without statistics, would walk the code index instead.
        unindexed(incidents.c.code).in_(bindparam("codes", expanding=True)),
        runs.c.queued_at >= bindparam("since", type_=runs.c.queued_at.type),
        runs.c.status != RunStatus.skipped.value,
        runs.c.shadow.is_(False),
    ]
    if at_claim:
        claimed = bindparam("claimed", type_=runs.c.id.type)
        conditions += [runs.c.id != claimed, or_(runs.c.id < claimed, runs.c.started_at.is_not(None))]
    return (
        select(incidents.c.code, incidents.c.target, runs.c.queued_at)
        .join(incidents, runs.c.incident_id == incidents.c.id)
        .where(and_(*conditions))
    )


_RECENT_RUNS = {False: _recent_runs_statement(False), True: _recent_runs_statement(True)}
