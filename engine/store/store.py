"""Every query Suture makes; reads return the frozen records of engine.records."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.clock import SYSTEM_CLOCK, Clock
from engine.collector import collector_paused
from engine.errors import Conflict, LeaseLost, NotFound
from engine.logging import get_logger
from engine.models import (
    PAUSED_KEY,
    Abandoned,
    CodeVersion,
    IncidentStatus,
    Lease,
    PlaybookVersion,
    RunStatus,
    Submission,
)
from engine.records import (
    AuditEntry,
    ClaimedRun,
    HeldRun,
    Incident,
    IncidentAlert,
    IncidentDetail,
    Note,
    OpenIncident,
    Run,
    RunDetail,
    Silence,
    StepResult,
)
from engine.store.breakers import Breakers, read_open
from engine.store.db import Database
from engine.store.guards import NO_FACTS, GuardFacts, GuardQuery, read_guard_facts
from engine.store.ingest import Applied, RunPlanner, apply_batch, recent_runs
from engine.store.outbox import Outbox, add_event
from engine.store.pages import INCIDENTS, RUNS, newest_first
from engine.store.replicas import (
    CATALOG_LOCK,
    CLAIM_LOCK,
    GATES_LOCK,
    announce_runs,
    dialect_insert,
    exclusive,
    insert_new,
    take_turn,
)
from engine.store.silences import Silences, read_silences
from engine.store.sqlfn import likely
from engine.store.tables import (
    OPEN_FINGERPRINT_INDEX,
    UNDECIDED_WHERE,
    alerts,
    audit_log,
    codes,
    incidents,
    playbook_versions,
    runs,
    state,
    step_results,
)

INCIDENT_FIELDS = Incident.field_names()
log = get_logger("suture.store")
RUN_FIELDS = Run.field_names()
STEP_FIELDS = StepResult.field_names()
ALERT_FIELDS = IncidentAlert.field_names()
AUDIT_FIELDS = AuditEntry.field_names()


#: The timeline kind of a person's note.
NOTE = "note"
#: Final run statuses that tell on-call automation did not fix it (`run_failed`).
FAILED_RUNS = frozenset({RunStatus.failed, RunStatus.rolled_back, RunStatus.timed_out, RunStatus.interrupted})

# A batch that lost the race once finds the open incident on its second try; more tries only
# cover several fingerprints raced by several replicas in a row.
_INGEST_ATTEMPTS = 3
#: `workers.lease` when no config says.
DEFAULT_LEASE = timedelta(seconds=30)


def _values(row: Row[Any], fields: Sequence[str]) -> dict[str, Any]:
    """The named columns of a row that may hold more, in the order of `fields`."""
    mapping = row._mapping
    return {name: mapping[name] for name in fields}


class Store:
    def __init__(
        self,
        db: Database,
        notify: Collection[str] = frozenset(),
        clock: Clock = SYSTEM_CLOCK,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.db = db
        #: How long a claim holds a run without being renewed (`workers.lease`).
        self.lease = lease
        #: The time every write records (`opened_at`, `queued_at`, audit rows): a test moves it.
        self.clock = clock
        #: The events some notification channel hears of: only those get outbox rows.
        self.notify = frozenset(notify)
        self.outbox = Outbox(db)
        self.silences = Silences(db, clock)
        self.breakers = Breakers(db, clock)

    # ------------------------------------------------------------ intake

    def ingest(self, batch: list[Submission], plan: Callable[[Connection], RunPlanner]) -> Applied:
        """One transaction for the whole batch (group commit); `plan(conn)` gives each attempt a
        fresh planner for the runs of the incidents it opens, which may read what its gates need
        through that transaction (so the decision and its writes are one atomic step).

        Replicas on PostgreSQL may look up the same new fingerprint at once: both find no open
        incident, and the second to insert one meets the first's in `uq_incidents_open_fingerprint`.
        That batch is applied afresh; its lookup then finds the open incident and counts on it.
        (On SQLite writers take turns, lookup included, so the race cannot happen there.)
        """
        attempt = 1
        while True:
            try:
                with self.db.write() as conn, self._collector_paused():
                    return apply_batch(conn, batch, self.clock.now(), plan(conn), self.notify)
            except IntegrityError as exc:
                if attempt >= _INGEST_ATTEMPTS or not _lost_open_race(exc):
                    raise
                log.info("intake_open_race_retried", attempt=attempt, bodies=len(batch))
                attempt += 1

    def _collector_paused(self) -> AbstractContextManager[None]:
        """The cycle collector paused for a batch's apply, on SQLite only: there the batch holds
        the write lock from its BEGIN IMMEDIATE on (taken before the pause), so the apply never
        waits on another writer. On PostgreSQL a statement may wait on another transaction's
        locks for as long as that one holds them, and the pause is the whole process's: the
        garbage of every request taken meanwhile would wait with it (a flood behind a locked
        table doubled the daemon's memory)."""
        return collector_paused() if self.db.is_sqlite else nullcontext()

    def recent_runs(
        self, codes: Collection[str], since: datetime, claimed: int | None = None
    ) -> dict[tuple[str, str], list[datetime]]:
        """When runs of these codes were queued since `since`, by (code, target): what the policy
        gates look back on, read before the intake write they decide for, or (`claimed`) before
        a worker starts that run."""
        with self.db.read() as conn:
            return recent_runs(conn, codes, since, claimed)

    def recent_runs_in(
        self, conn: Connection, codes: Collection[str], since: datetime
    ) -> Mapping[tuple[str, str], Sequence[datetime]]:
        """`recent_runs` in the caller's transaction (intake's write, deciding its batch's runs)."""
        return recent_runs(conn, codes, since)

    def hold_gates(self, conn: Connection) -> None:
        """Make the gates' reads and the runs this write transaction queues one step across
        replicas: another replica's intake deciding runs waits until this one commits."""
        exclusive(conn, GATES_LOCK)

    def guard_context(self, conn: Connection | None = None) -> GuardContext:
        """The global switch, the silences not ended yet and the open breakers, in one read (or in
        the caller's transaction): what every gate decision of this moment shares."""
        if conn is None:
            with self.db.read() as own:
                return self.guard_context(own)
        now = self.clock.now()
        paused = conn.execute(_PAUSED).scalar()
        silenced = read_silences(conn, now)
        opened = {(b.playbook, b.version): b.reason or "" for b in read_open(conn)}
        return GuardContext(bool(paused), tuple(silenced), opened)

    def guard_facts(self, query: GuardQuery, conn: Connection | None = None) -> GuardFacts:
        """Storm counts, flapping changes and budget windows one intake batch's gates need."""
        if query.empty:
            return NO_FACTS
        if conn is None:
            with self.db.read() as own:
                return read_guard_facts(own, query, self.clock.now())
        return read_guard_facts(conn, query, self.clock.now())

    def run_subject(self, incident_id: int) -> RunSubject | None:
        """What a worker re-checks about a run's incident before it starts and before each step."""
        with self.db.read() as conn:
            row = conn.execute(_SUBJECT, {"incident_id": incident_id}).first()
        return None if row is None else RunSubject(*row)

    # ----------------------------------------------------------- catalog

    def stored_playbook_hashes(self) -> dict[tuple[str, int], str]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(playbook_versions.c.name, playbook_versions.c.version, playbook_versions.c.sha256)
            )
            return {(r.name, r.version): r.sha256 for r in rows}

    def sync_catalog(
        self, playbooks: Sequence[PlaybookVersion], code_versions: Sequence[CodeVersion]
    ) -> dict[str, int]:
        """Keep every playbook version and every code version ever loaded; rows are never changed."""
        now = self.clock.now()
        added = {"playbooks": 0, "codes": 0}
        with self.db.write() as conn:
            # Replicas starting or reloading together: one writes the new versions, the others
            # wait here and then find them stored (each read below sees what committed before).
            exclusive(conn, CATALOG_LOCK)
            stored = {
                (r.name, r.version)
                for r in conn.execute(select(playbook_versions.c.name, playbook_versions.c.version))
            }
            for entry in sorted(playbooks, key=lambda p: (p.name, p.version)):
                if (entry.name, entry.version) not in stored:
                    conn.execute(
                        insert_new(
                            conn, playbook_versions, [playbook_versions.c.name, playbook_versions.c.version]
                        ).values(
                            name=entry.name,
                            version=entry.version,
                            sha256=entry.sha256,
                            body=entry.body,
                            loaded_at=now,
                        )
                    )
                    added["playbooks"] += 1
            latest = {
                r.code: (r.version, r.sha256)
                for r in conn.execute(
                    select(codes.c.code, codes.c.version, codes.c.sha256).order_by(
                        codes.c.code, codes.c.version
                    )
                )
            }
            for code_version in code_versions:
                version, sha = latest.get(code_version.code, (0, ""))
                if sha != code_version.sha256:
                    conn.execute(
                        insert(codes).values(
                            code=code_version.code,
                            version=version + 1,
                            sha256=code_version.sha256,
                            body=code_version.body,
                            loaded_at=now,
                        )
                    )
                    added["codes"] += 1
        return added

    def playbook_body(self, name: str, version: int) -> str:
        with self.db.read() as conn:
            body = conn.execute(
                select(playbook_versions.c.body).where(
                    and_(playbook_versions.c.name == name, playbook_versions.c.version == version)
                )
            ).scalar()
        if body is None:
            raise NotFound(f"playbook {name}@{version} is not stored")
        return str(body)

    # --------------------------------------------------------- incidents

    def list_incidents(
        self,
        *,
        status: str | None = None,
        code: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
        severity: str | None = None,
        target: str | None = None,
        codes: Collection[str] | None = None,
    ) -> list[Incident]:
        """A page of incidents, newest first; `codes`: only these (the codes one owner owns)."""
        with self.db.driver_read() as conn:
            return newest_first(
                conn,
                self.db.dialect,
                INCIDENTS,
                equals={"status": status, "code": code, "severity": severity, "target": target},
                since=since,
                limit=limit,
                before_id=before_id,
                among=None if codes is None else ("code", codes),
            )

    def last_runs(self, incident_ids: Collection[int]) -> dict[int, Run]:
        """The newest run of each of these incidents (a list page's "what automation did")."""
        if not incident_ids:
            return {}
        newest = (
            select(func.max(runs.c.id))
            .where(runs.c.incident_id.in_(sorted(incident_ids)), runs.c.shadow.is_(False))
            .group_by(runs.c.incident_id)
            .scalar_subquery()
        )
        query = select(*[runs.c[name] for name in RUN_FIELDS]).where(runs.c.id.in_(newest))
        with self.db.read() as conn:
            found = [Run.trusted(dict(zip(RUN_FIELDS, row, strict=True))) for row in conn.execute(query)]
        return {run.incident_id: run for run in found if run.incident_id is not None}

    def get_incident(self, incident_id: int) -> IncidentDetail:
        with self.db.read() as conn:
            row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
            if row is None:
                raise NotFound(f"incident {incident_id} not found")
            newest_alerts = conn.execute(
                select(*[alerts.c[name] for name in ALERT_FIELDS])
                .where(alerts.c.incident_id == incident_id)
                .order_by(alerts.c.id.desc())
                .limit(50)
            )
            its_runs = conn.execute(
                select(*[runs.c[name] for name in RUN_FIELDS])
                .where(runs.c.incident_id == incident_id)
                .order_by(runs.c.id)
            )
            audit = conn.execute(
                select(*[audit_log.c[name] for name in AUDIT_FIELDS])
                .where(audit_log.c.incident_id == incident_id)
                .order_by(audit_log.c.id)
            )
            entries = [AuditEntry.trusted(dict(zip(AUDIT_FIELDS, r, strict=True))) for r in audit]
            return IncidentDetail.trusted(
                {
                    **_values(row, INCIDENT_FIELDS),
                    "labels": row.labels,
                    "annotations": row.annotations,
                    "alerts": [
                        IncidentAlert.trusted(dict(zip(ALERT_FIELDS, r, strict=True))) for r in newest_alerts
                    ],
                    "runs": [Run.trusted(dict(zip(RUN_FIELDS, r, strict=True))) for r in its_runs],
                    "notes": [
                        Note.trusted({"at": e.at, "by": e.actor, "text": e.message})
                        for e in entries
                        if e.kind == NOTE
                    ],
                    "timeline": _timeline(row, entries),
                    # The catalog's knowledge and the earlier incidents are added by the reader
                    # that has them (engine.analytics.past.teach).
                    "knowledge": None,
                    "previous": [],
                }
            )

    def incident(self, incident_id: int) -> Incident:
        """One incident without its alerts, runs and timeline."""
        with self.db.read() as conn:
            row = conn.execute(
                select(*[incidents.c[name] for name in INCIDENT_FIELDS]).where(incidents.c.id == incident_id)
            ).first()
        if row is None:
            raise NotFound(f"incident {incident_id} not found")
        return Incident.trusted(dict(zip(INCIDENT_FIELDS, row, strict=True)))

    def routing_facts(self, ids: Collection[int]) -> dict[int, tuple[str, str, str]]:
        """(code, severity, target) of the incidents of these ids: what notification routing reads."""
        found: dict[int, tuple[str, str, str]] = {}
        wanted = sorted(set(ids))
        columns = (incidents.c.id, incidents.c.code, incidents.c.severity, incidents.c.target)
        with self.db.read() as conn:
            for i in range(0, len(wanted), 500):
                for row in conn.execute(select(*columns).where(incidents.c.id.in_(wanted[i : i + 500]))):
                    found[row[0]] = (row[1], row[2], row[3])
        return found

    def get_run_summary(self, run_id: int) -> Run:
        with self.db.read() as conn:
            row = conn.execute(
                select(*[runs.c[name] for name in RUN_FIELDS]).where(runs.c.id == run_id)
            ).first()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return Run.trusted(dict(zip(RUN_FIELDS, row, strict=True)))

    # ------------------------------------------------- people's actions

    def acknowledge(self, incident_id: int, by: str) -> Incident:
        """First response: stops response escalation. Acknowledging twice is a conflict."""
        now = self.clock.now()
        with self.db.write() as conn:
            row = self._open_row(conn, incident_id, "acknowledge")
            if row.acknowledged_at is not None:
                raise Conflict(
                    f"incident {incident_id} was acknowledged by {row.acknowledged_by}"
                    f" at {row.acknowledged_at:%Y-%m-%d %H:%M:%S}Z"
                )
            done = conn.execute(
                update(incidents)
                .where(and_(incidents.c.id == incident_id, incidents.c.acknowledged_at.is_(None)))
                .values(acknowledged_at=now, acknowledged_by=by)
            ).rowcount
            if done != 1:
                raise Conflict(f"incident {incident_id} was acknowledged by someone else just now")
            self._audit(conn, now, by, "acknowledged", incident_id, f"acknowledged by {by}")
        return self.incident(incident_id)

    def add_note(self, incident_id: int, by: str, text: str) -> Note:
        now = self.clock.now()
        with self.db.write() as conn:
            if conn.execute(select(incidents.c.id).where(incidents.c.id == incident_id)).first() is None:
                raise NotFound(f"incident {incident_id} not found")
            self._audit(conn, now, by, NOTE, incident_id, text)
        return Note.trusted({"at": now, "by": by, "text": text})

    def resolve_by_hand(self, incident_id: int, by: str, note: str | None = None) -> Incident:
        """Close an open incident; its resolution is `manual`, and channels hearing of `resolved`
        (PagerDuty's resolve among them) are told."""
        now = self.clock.now()
        with self.db.write() as conn:
            self._open_row(conn, incident_id, "resolve")
            done = conn.execute(
                update(incidents)
                .where(and_(incidents.c.id == incident_id, incidents.c.status == IncidentStatus.open.value))
                .values(
                    status=IncidentStatus.resolved.value, resolved_at=now, resolution="manual", last_seen=now
                )
            ).rowcount
            if done != 1:
                raise Conflict(f"incident {incident_id} was resolved by someone else just now")
            if note:
                self._audit(conn, now, by, NOTE, incident_id, note)
            self._audit(conn, now, by, "resolved", incident_id, f"resolved by hand by {by}")
            add_event(
                conn,
                self.notify,
                "resolved",
                now,
                incident_id=incident_id,
                reason=f"resolved by hand by {by}",
            )
        return self.incident(incident_id)

    def _open_row(self, conn: Connection, incident_id: int, verb: str) -> Any:
        row = conn.execute(
            select(incidents.c.status, incidents.c.acknowledged_at, incidents.c.acknowledged_by).where(
                incidents.c.id == incident_id
            )
        ).first()
        if row is None:
            raise NotFound(f"incident {incident_id} not found")
        if row.status != IncidentStatus.open.value:
            raise Conflict(f"incident {incident_id} is {row.status}: nothing to {verb}")
        return row

    @staticmethod
    def _audit(
        conn: Connection,
        now: datetime,
        actor: str,
        kind: str,
        incident_id: int | None,
        message: str,
        run_id: int | None = None,
    ) -> None:
        conn.execute(
            _AUDIT_INSERT,
            {
                "at": now,
                "actor": actor,
                "kind": kind,
                "incident_id": incident_id,
                "run_id": run_id,
                "message": message,
            },
        )

    # -------------------------------------------------------- deadlines

    def overdue(self, now: datetime) -> list[tuple[Incident, str | None]]:
        """Open incidents past their first-response deadline unacknowledged, or past their due
        time; each with the deadline it was last escalated for (`respond`, `resolve` or None)."""
        query = select(*[incidents.c[name] for name in INCIDENT_FIELDS], incidents.c.escalated_for).where(
            and_(
                incidents.c.status == IncidentStatus.open.value,
                or_(
                    and_(incidents.c.respond_by <= now, incidents.c.acknowledged_at.is_(None)),
                    incidents.c.due_at <= now,
                ),
            )
        )
        with self.db.read() as conn:
            return [
                (Incident.trusted(dict(zip(INCIDENT_FIELDS, r[:-1], strict=True))), r[-1])
                for r in conn.execute(query)
            ]

    def escalate(self, incident: Incident, deadline: str, reason: str, now: datetime) -> bool:
        """Record one escalation of `incident` for `deadline` (`respond` | `resolve`) with its
        outbox row; False if someone else escalated, acknowledged or resolved it meanwhile."""
        with self.db.write() as conn:
            unchanged = [
                incidents.c.id == incident.id,
                incidents.c.status == IncidentStatus.open.value,
                incidents.c.escalated_at.is_(None)
                if incident.escalated_at is None
                else incidents.c.escalated_at == incident.escalated_at,
            ]
            if deadline == "respond":
                unchanged.append(incidents.c.acknowledged_at.is_(None))
            done = conn.execute(
                update(incidents).where(and_(*unchanged)).values(escalated_at=now, escalated_for=deadline)
            ).rowcount
            if done != 1:
                return False
            self._audit(conn, now, "suture", "escalated", incident.id, reason)
            add_event(conn, self.notify, "escalation", now, incident_id=incident.id, reason=reason)
        return True

    def awaiting_approval(self) -> list[tuple[Run, str | None, str | None]]:
        """Runs waiting for a person, oldest first, each with its incident's code and target."""
        query = (
            select(*[runs.c[name] for name in RUN_FIELDS], incidents.c.code, incidents.c.target)
            .outerjoin(incidents, runs.c.incident_id == incidents.c.id)
            .where(runs.c.status == RunStatus.awaiting_approval.value)
            .order_by(runs.c.id)
        )
        with self.db.read() as conn:
            return [
                (Run.trusted(dict(zip(RUN_FIELDS, r[:-2], strict=True))), r[-2], r[-1])
                for r in conn.execute(query)
            ]

    def expire_approval(self, run_id: int, reason: str, now: datetime) -> bool:
        """An unapproved run becomes `expired`; False if a person decided first."""
        with self.db.write() as conn:
            done = conn.execute(
                update(runs)
                .where(and_(runs.c.id == run_id, runs.c.status == RunStatus.awaiting_approval.value))
                .values(status=RunStatus.expired.value, finished_at=now, error=reason, reason=reason)
            ).rowcount
            if done != 1:
                return False
            incident_id = conn.execute(select(runs.c.incident_id).where(runs.c.id == run_id)).scalar()
            self._audit(
                conn, now, "suture", "expired", incident_id, f"run {run_id} expired: {reason}", run_id
            )
            add_event(
                conn,
                self.notify,
                "approval_expired",
                now,
                incident_id=incident_id,
                run_id=run_id,
                reason=reason,
            )
        return True

    # -------------------------------------------------------------- runs

    def list_runs(
        self,
        *,
        status: str | None = None,
        playbook: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Run]:
        with self.db.driver_read() as conn:
            return newest_first(
                conn,
                self.db.dialect,
                RUNS,
                equals={"status": status, "playbook": playbook},
                since=since,
                limit=limit,
                before_id=before_id,
            )

    def get_run(self, run_id: int) -> RunDetail:
        with self.db.read() as conn:
            row = conn.execute(
                select(*[runs.c[name] for name in RUN_FIELDS]).where(runs.c.id == run_id)
            ).first()
            if row is None:
                raise NotFound(f"run {run_id} not found")
            steps = conn.execute(
                select(*[step_results.c[name] for name in STEP_FIELDS])
                .where(step_results.c.run_id == run_id)
                .order_by(step_results.c.seq)
            )
            return RunDetail.trusted(
                {
                    **dict(zip(RUN_FIELDS, row, strict=True)),
                    "steps": [StepResult.trusted(dict(zip(STEP_FIELDS, r, strict=True))) for r in steps],
                }
            )

    def run_context(self, run_id: int) -> dict[str, Any]:
        with self.db.read() as conn:
            value = conn.execute(select(runs.c.context).where(runs.c.id == run_id)).scalar()
        if value is None:
            raise NotFound(f"run {run_id} not found")
        return dict(value)

    def create_manual_run(
        self, playbook: str, version: int, context: dict[str, Any], *, dry_run: bool, status: RunStatus
    ) -> int:
        now = self.clock.now()
        with self.db.write() as conn:
            run_id = conn.execute(
                insert(runs).values(
                    incident_id=None,
                    playbook=playbook,
                    playbook_version=version,
                    status=status.value,
                    trigger="manual",
                    dry_run=dry_run,
                    queued_at=now,
                    started_at=now if status is RunStatus.running else None,
                    context=context,
                    worker="cli" if status is RunStatus.running else None,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return int(run_id)

    def claim_run(self, worker: str) -> ClaimedRun | None:
        """Atomically take the oldest queued run that may start now: one run, one worker, also
        across processes. A run deferred (`not_before`) waits for its time; a run whose target
        already has its code's `policy.concurrency` (default 1) runs going stays queued, and a
        later run on another target goes first."""
        now = self.clock.now()
        # A read first: most looks find nothing (the worker a claim wakes, a poll), and a write
        # transaction that finds nothing still holds up intake's commit behind it. A run queued
        # after this read wakes the workers again, so nothing waits for the next poll.
        with self.db.read() as conn:
            if _claimable(conn, now) is None:
                return None
        with self.db.write() as conn:
            # The target count and the claim are one decision across every replica.
            exclusive(conn, CLAIM_LOCK)
            run_id = _claimable(conn, now)
            if run_id is None:
                return None
            claimed = conn.execute(
                _CLAIM, {"b_run": run_id, "b_now": now, "b_worker": worker, "b_until": now + self.lease}
            ).rowcount
            if claimed != 1:
                return None
            row = conn.execute(_RUN_ROW, {"b_run": run_id}).one()
            result = ClaimedRun.trusted(
                {**_values(row, RUN_FIELDS), "context": row.context, "attempt": row.attempt}
            )
            if row.incident_id is not None:
                self._audit(
                    conn, now, worker, "run_started", row.incident_id, f"run {run_id} started", run_id
                )
            return result

    def record_step(self, run_id: int, step: dict[str, Any], lease: Lease | None = None) -> None:
        """Store a step's result and renew the run's lease; with a `lease` that is no longer the
        run's, store nothing and raise LeaseLost."""
        now = self.clock.now()
        # Only a claimed run has a lease: a run a person started (`suture run`) keeps none, and
        # recovery judges it by its heartbeat and its playbook's timeout.
        values: dict[str, Any] = {"heartbeat_at": now}
        if lease is not None:
            values["lease_until"] = now + self.lease
        with self.db.write() as conn:
            renewed = conn.execute(
                _HELD_UPDATE[lease is not None], {**_held(run_id, lease), **values}
            ).rowcount
            if lease is not None and renewed != 1:
                raise LeaseLost(f"run {run_id}: attempt {lease.attempt} of {lease.owner} lost its lease")
            conn.execute(_STEP_INSERT, {"run_id": run_id, **step})

    def renew_lease(self, lease: Lease) -> datetime | None:
        """Push the run's lease a `workers.lease` further; None when the claim is no longer its own."""
        now = self.clock.now()
        until = now + self.lease
        with self.db.write() as conn:
            renewed = conn.execute(
                _HELD_UPDATE[True], {**_held(lease.run_id, lease), "heartbeat_at": now, "lease_until": until}
            ).rowcount
        return until if renewed == 1 else None

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        error: str | None,
        *,
        remediated: bool,
        reason: str | None = None,
        breaker: int | None = None,
        lease: Lease | None = None,
    ) -> None:
        """Store a run's final status. `reason`: why it was held or cancelled. `breaker`: the
        code's `policy.breaker.failures`, so a failed run counts for its playbook version's breaker
        (opening it raises `breaker_open`); a succeeded one counts when its verdict is known.
        With a `lease` that is no longer the run's, nothing is stored: LeaseLost."""
        now = self.clock.now()
        with self.db.write() as conn:
            values = {"status": status.value, "finished_at": now, "error": error, "reason": reason}
            row = conn.execute(
                _FINISH[lease is not None], {**_held(run_id, lease), **values, "lease_until": None}
            ).first()
            if row is None:
                if lease is not None:
                    raise LeaseLost(f"run {run_id}: attempt {lease.attempt} of {lease.owner} lost its lease")
                return
            incident_id, playbook, version, shadow = row
            opened = None
            if breaker is not None and status in FAILED_RUNS:  # a success counts once judged (judge_runs)
                opened = self.breakers.record(conn, playbook, version, True, breaker, now)
            if incident_id is None:
                return
            if remediated:
                conn.execute(_REMEDIATED, {"b_incident": incident_id, "remediated_at": now})
            message = f"run {run_id} {status.value}" + (f": {error}" if error else "")
            self._audit(conn, now, "suture", f"run_{status.value}", incident_id, message, run_id)
            if status in FAILED_RUNS and not shadow:  # a shadow's template error is no one's page
                add_event(
                    conn,
                    self.notify,
                    "run_failed",
                    now,
                    incident_id=incident_id,
                    run_id=run_id,
                    reason=message,
                )
            if opened is not None:
                told = f"breaker of {playbook}@{version} opened: {opened}"
                self._audit(conn, now, "suture", "breaker_open", incident_id, told, run_id)
                add_event(
                    conn,
                    self.notify,
                    "breaker_open",
                    now,
                    incident_id=incident_id,
                    run_id=run_id,
                    reason=told,
                )

    def undecided_runs(self, limit: int = 500) -> list[UndecidedRun]:
        """Succeeded runs of incidents with no verdict yet (`effective` null), oldest first."""
        query = (
            select(
                runs.c.id,
                runs.c.playbook,
                runs.c.playbook_version,
                runs.c.started_at,
                runs.c.finished_at,
                incidents.c.id,
                incidents.c.code,
                incidents.c.resolved_at,
                incidents.c.resolution,
            )
            .select_from(runs.join(incidents, runs.c.incident_id == incidents.c.id))
            .where(text(" AND ".join(f"runs.{part}" for part in UNDECIDED_WHERE.split(" AND "))))
            .order_by(runs.c.id)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [UndecidedRun(*row) for row in conn.execute(query)]

    def judge_runs(self, verdicts: Sequence[Verdict]) -> list[str]:
        """Store each run's verdict and count it for its playbook version's breaker (when the code
        has one); the breakers this opened, worded, with `breaker_open` raised and on the timeline."""
        now = self.clock.now()
        opened: list[str] = []
        with self.db.write() as conn:
            for item in verdicts:
                done = conn.execute(
                    update(runs)
                    .where(and_(runs.c.id == item.run_id, runs.c.effective.is_(None)))
                    .values(effective=item.effective)
                ).rowcount
                if done != 1 or item.breaker is None:
                    continue
                why = self.breakers.record(
                    conn, item.playbook, item.version, not item.effective, item.breaker, now
                )
                if why is None:
                    continue
                told = f"breaker of {item.playbook}@{item.version} opened: {why}"
                self._audit(conn, now, "suture", "breaker_open", item.incident_id, told, item.run_id)
                add_event(
                    conn,
                    self.notify,
                    "breaker_open",
                    now,
                    incident_id=item.incident_id,
                    run_id=item.run_id,
                    reason=told,
                )
                opened.append(told)
        return opened

    def running_runs(self) -> list[HeldRun]:
        """Runs marked running, with who holds them and when they last showed life."""
        fields = HeldRun.field_names()
        with self.db.read() as conn:
            rows = conn.execute(
                select(*[runs.c[name] for name in fields]).where(runs.c.status == RunStatus.running.value)
            )
            return [HeldRun.trusted(dict(zip(fields, r, strict=True))) for r in rows]

    def decide_run(self, run_id: int, *, approve: bool, by: str, reason: str | None = None) -> RunDetail:
        """Approve (queue) or reject a run awaiting approval; anything else is refused."""
        now = self.clock.now()
        new_status = RunStatus.queued if approve else RunStatus.rejected
        with self.db.write() as conn:
            row = conn.execute(select(runs.c.status, runs.c.incident_id).where(runs.c.id == run_id)).first()
            if row is None:
                raise NotFound(f"run {run_id} not found")
            if row.status != RunStatus.awaiting_approval.value:
                raise Conflict(f"run {run_id} is {row.status}, not awaiting_approval")
            values: dict[str, Any] = {"status": new_status.value}
            if not approve:
                values.update(finished_at=now, error=f"rejected by {by}" + (f": {reason}" if reason else ""))
            else:
                announce_runs(conn)
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
            verb = "approved" if approve else "rejected"
            message = f"run {run_id} {verb} by {by}" + (f": {reason}" if reason else "")
            self._audit(conn, now, by, verb, row.incident_id, message, run_id)
        log.info(verb, run_id=run_id, incident_id=row.incident_id, by=by, reason=reason)
        return self.get_run(run_id)

    def recover_interrupted(self, abandoned: Mapping[int, Abandoned]) -> dict[str, list[int]]:
        """Runs whose holder died or lost its lease: re-queue the idempotent ones, mark the rest
        interrupted. Each is taken from the claim recovery saw (its attempt), and one taken for an
        expired lease only if the lease is still expired: a holder that renewed it keeps its run."""
        now = self.clock.now()
        outcome: dict[str, list[int]] = {"requeued": [], "interrupted": []}
        if not abandoned:
            return outcome
        with self.db.write() as conn:
            rows = conn.execute(
                select(runs.c.id, runs.c.incident_id).where(
                    and_(runs.c.status == RunStatus.running.value, runs.c.id.in_(sorted(abandoned)))
                )
            ).all()
            for row in rows:
                taken = abandoned[row.id]
                again = taken.idempotent
                if again:
                    values: dict[str, Any] = {
                        "status": RunStatus.queued.value,
                        "started_at": None,
                        "worker": None,
                        "lease_until": None,
                    }
                    kind, message = "run_requeued", f"run {row.id} re-queued: its holder stopped (idempotent)"
                else:
                    values = {
                        "status": RunStatus.interrupted.value,
                        "finished_at": now,
                        "lease_until": None,
                        "error": "interrupted: the daemon holding this run stopped while it was executing",
                    }
                    kind = "run_interrupted"
                    message = f"run {row.id} interrupted: its holder stopped; check the target by hand"
                condition = [
                    runs.c.id == row.id,
                    runs.c.status == RunStatus.running.value,
                    runs.c.attempt == taken.attempt,
                ]
                if taken.expired:
                    condition.append(or_(runs.c.lease_until.is_(None), runs.c.lease_until < now))
                if conn.execute(update(runs).where(and_(*condition)).values(**values)).rowcount != 1:
                    continue  # renewed or finished meanwhile: still its holder's
                outcome["requeued" if again else "interrupted"].append(row.id)
                if again:
                    announce_runs(conn)
                self._audit(conn, now, "suture", kind, row.incident_id, message, row.id)
                if not again:
                    add_event(
                        conn,
                        self.notify,
                        "run_failed",
                        now,
                        incident_id=row.incident_id,
                        run_id=row.id,
                        reason=message,
                    )
        return outcome

    def open_incidents_of_source(self, source: str) -> list[OpenIncident]:
        """What a poll of `source` must still see firing; anything it no longer sees is resolved."""
        fields = OpenIncident.field_names()
        with self.db.read() as conn:
            rows = conn.execute(
                select(*[incidents.c[name] for name in fields]).where(
                    and_(incidents.c.status == IncidentStatus.open.value, incidents.c.source == source)
                )
            )
            return [OpenIncident.trusted(dict(zip(fields, r, strict=True))) for r in rows]

    # ------------------------------------------------------------- state

    def set_paused(self, paused: bool, by: str, reason: str | None = None) -> bool:
        """The global kill switch, recorded in the audit log under `by`; whether it changed."""
        now = self.clock.now()
        kind = "paused" if paused else "resumed"
        with self.db.write() as conn:
            before = bool(conn.execute(select(state.c.value).where(state.c.key == PAUSED_KEY)).scalar())
            _put_state(conn, PAUSED_KEY, paused, now)
            message = f"automation {kind} by {by}" + (f": {reason}" if reason else "")
            self._audit(conn, now, by, kind, None, message)
        log.info(kind, by=by, reason=reason, changed=before != paused)
        return before != paused

    def take_turn(self, job: str, every: timedelta, owner: str) -> bool:
        """Whether this replica runs scheduled `job` now (engine.store.replicas.take_turn)."""
        with self.db.write() as conn:
            return take_turn(conn, job, every, owner, self.clock.now())

    def get_state(self, key: str, default: Any = None) -> Any:
        with self.db.read() as conn:
            value = conn.execute(select(state.c.value).where(state.c.key == key)).scalar()
        return default if value is None else value

    def set_state(self, key: str, value: Any) -> None:
        with self.db.write() as conn:
            _put_state(conn, key, value, self.clock.now())

    def record_replay(self, hashes: Collection[str], summary: dict[str, Any]) -> int:
        """Keep a review's replay summary for each code or playbook content in `hashes` that is not
        stored yet (what the next catalog load will add): the change record shows it once that
        version loads. How many were recorded."""
        from engine.store.history import replay_key  # the key analytics reads back

        now = self.clock.now()
        with self.db.write() as conn:
            stored = set(conn.execute(select(codes.c.sha256)).scalars())
            stored |= set(conn.execute(select(playbook_versions.c.sha256)).scalars())
            fresh = sorted(set(hashes) - stored)
            for sha in fresh:
                _put_state(conn, replay_key(sha), summary, now)
        return len(fresh)


@dataclass(frozen=True, slots=True)
class UndecidedRun:
    run_id: int
    playbook: str
    version: int
    started_at: datetime
    finished_at: datetime
    incident_id: int
    code: str
    resolved_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A run judged effective or not; `breaker`: its code's `policy.breaker.failures`, to count it."""

    run_id: int
    incident_id: int
    playbook: str
    version: int
    effective: bool
    breaker: int | None = None


@dataclass(frozen=True, slots=True)
class GuardContext:
    paused: bool
    silences: tuple[Silence, ...]
    open_breakers: dict[tuple[str, int], str]


@dataclass(frozen=True, slots=True)
class RunSubject:
    status: str
    code: str
    target: str
    severity: str
    source: str
    alertname: str
    labels: dict[str, str]


_PAUSED = select(state.c.value).where(state.c.key == PAUSED_KEY)
_SUBJECT = select(
    incidents.c.status,
    incidents.c.code,
    incidents.c.target,
    incidents.c.severity,
    incidents.c.source,
    incidents.c.alertname,
    incidents.c.labels,
).where(incidents.c.id == bindparam("incident_id"))

#: Queued runs on busy targets a claim looks at, oldest first, for one whose concurrency has room.
_CLAIM_PAGE = 20


_RUNS_WITH_TARGET = runs.outerjoin(incidents, runs.c.incident_id == incidents.c.id)
_DUE = and_(
    # A literal, not a bound value: only then does SQLite see that the partial index covers it.
    likely(runs.c.status == literal_column(f"'{RunStatus.queued.value}'")),
    or_(runs.c.not_before.is_(None), runs.c.not_before <= bindparam("now")),
)
# Built once: a claim runs for every run, and building these costs more than running them.
_BUSY = (
    select(incidents.c.target, func.count())
    .select_from(runs.join(incidents, runs.c.incident_id == incidents.c.id))
    .where(runs.c.status == RunStatus.running.value)
    .group_by(incidents.c.target)
)
_OLDEST_DUE = select(runs.c.id).select_from(_RUNS_WITH_TARGET).where(_DUE).order_by(runs.c.id).limit(1)
_OLDEST_DUE_ELSEWHERE = (
    select(runs.c.id)
    .select_from(_RUNS_WITH_TARGET)
    .where(
        and_(
            _DUE,
            or_(incidents.c.target.is_(None), incidents.c.target.not_in(bindparam("busy", expanding=True))),
        )
    )
    .order_by(runs.c.id)
    .limit(1)
)
_DUE_ON_BUSY = (
    select(runs.c.id, incidents.c.target)
    .select_from(_RUNS_WITH_TARGET)
    .where(
        and_(_DUE, incidents.c.target.in_(bindparam("busy", expanding=True)), runs.c.id < bindparam("before"))
    )
    .order_by(runs.c.id)
    .limit(_CLAIM_PAGE)
)


def _claimable(conn: Connection, now: datetime) -> int | None:
    """The oldest queued run that is due and whose target has room (see `claim_run`).

    The targets with runs going are few (at most the workers of every process): the oldest due run
    on any other target is one indexed probe. A run on a busy target goes only if its own
    `policy.concurrency` leaves room, and only when it is older than that run."""
    busy = {target: int(n) for target, n in conn.execute(_BUSY)}
    if not busy:
        first = conn.execute(_OLDEST_DUE, {"now": now}).scalar()
        return None if first is None else int(first)
    names = sorted(busy)
    first = conn.execute(_OLDEST_DUE_ELSEWHERE, {"now": now, "busy": names}).scalar()
    before = first if first is not None else 2**31 - 1  # runs.id is an INTEGER
    for run_id, target in conn.execute(_DUE_ON_BUSY, {"now": now, "busy": names, "before": before}):
        if busy[target] < _concurrency(conn, run_id):
            return int(run_id)
    return None if first is None else int(first)


def _held(run_id: int, lease: Lease | None) -> dict[str, Any]:
    """The values of `_HELD_UPDATE[lease is not None]`'s condition: the run, and with a lease
    only while it is still running under that claim."""
    if lease is None:
        return {"b_run": run_id}
    return {"b_run": run_id, "b_owner": lease.owner, "b_attempt": lease.attempt}


def _held_where(leased: bool) -> ColumnElement[bool]:
    held = runs.c.id == bindparam("b_run", type_=runs.c.id.type)
    if not leased:
        return held
    return and_(
        held,
        runs.c.status == RunStatus.running.value,
        runs.c.worker == bindparam("b_owner", type_=runs.c.worker.type),
        runs.c.attempt == bindparam("b_attempt", type_=runs.c.attempt.type),
    )


# The worker's writes, built once and given their values at execution (the SET clause from the
# values' keys): a statement built per call was most of what a run's three writes cost in Python,
# and intake's commit waits for each of them.
_HELD_UPDATE = {leased: update(runs).where(_held_where(leased)) for leased in (False, True)}
_FINISH = {
    leased: update(runs)
    .where(_held_where(leased))
    .returning(runs.c.incident_id, runs.c.playbook, runs.c.playbook_version, runs.c.shadow)
    for leased in (False, True)
}
_CLAIM = (
    update(runs)
    .where(
        and_(runs.c.id == bindparam("b_run", type_=runs.c.id.type), runs.c.status == RunStatus.queued.value)
    )
    .values(
        status=RunStatus.running.value,
        started_at=bindparam("b_now", type_=runs.c.started_at.type),
        heartbeat_at=bindparam("b_now", type_=runs.c.heartbeat_at.type),
        worker=bindparam("b_worker", type_=runs.c.worker.type),
        attempt=runs.c.attempt + 1,
        lease_until=bindparam("b_until", type_=runs.c.lease_until.type),
    )
)
_RUN_ROW = select(runs).where(runs.c.id == bindparam("b_run", type_=runs.c.id.type))
_STEP_INSERT = insert(step_results)
_AUDIT_INSERT = insert(audit_log)
_REMEDIATED = update(incidents).where(
    and_(
        incidents.c.id == bindparam("b_incident", type_=incidents.c.id.type),
        incidents.c.remediated_at.is_(None),
    )
)


def _concurrency(conn: Connection, run_id: int) -> int:
    """The run's `policy.concurrency`, frozen in its context at queue time (default 1)."""
    context = conn.execute(select(runs.c.context).where(runs.c.id == run_id)).scalar() or {}
    limits = context.get("limits") or {}
    return int(limits.get("concurrency") or 1)


def _put_state(conn: Connection, key: str, value: Any, now: datetime) -> None:
    """Insert or replace one `state` row in the caller's transaction; two replicas writing the
    same new key at once both succeed (the later value stays)."""
    statement = dialect_insert(conn, state).values(key=key, value=value, updated_at=now)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[state.c.key],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
        )
    )


def _lost_open_race(exc: IntegrityError) -> bool:
    """Whether another writer committed the open incident this transaction meant to insert."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    return constraint == OPEN_FINGERPRINT_INDEX


def _timeline(incident: Row[Any], entries: list[AuditEntry]) -> list[AuditEntry]:
    """Opening and closing come from the incident row itself (intake writes no audit row for
    them: one row less per alert in a storm); everything else from the audit log, in time order."""
    opened = AuditEntry.trusted(
        {
            "at": incident.opened_at,
            "kind": "opened",
            "message": f"{incident.code} opened for {incident.target or 'unknown target'}",
            "actor": incident.source,
            "run_id": None,
        }
    )
    timeline = list(entries)
    if incident.resolved_at is not None and incident.resolution == "alert_resolved":
        timeline.append(
            AuditEntry.trusted(
                {
                    "at": incident.resolved_at,
                    "kind": "resolved",
                    "message": "alert resolved at the source",
                    "actor": incident.source,
                    "run_id": None,
                }
            )
        )
    # The source's end time may predate Suture hearing of the problem: opening always comes first.
    return [opened, *sorted(timeline, key=lambda entry: entry.at)]


__all__ = ["Store"]
