"""The aggregate reads analytics needs (stats, effectiveness, the handover report), as plain frozen facts;
the arithmetic (means, percentiles, rates) is engine.analytics' and never happens here.

A window is the incidents opened in [since, until); runs, verify steps and alerts are those of these
incidents, so every number analytics derives counts incidents opened in the window (DESIGN.md,
"stats --json", Definitions). `summary` counts a window in SQL (engine.store.tallies: grouped
queries that return counts, and durations as integers, never a row per incident: what read_stats
uses), taking the hours already counted from engine.store.buckets; `window` reads it row by row
for the pure reference path (engine.analytics.stats.build_stats) the SQL is tested against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, select

from engine.models import IncidentStatus, RunStatus
from engine.store.buckets import Buckets, cover, gaps, same_snapshot
from engine.store.db import Database
from engine.store.sqlfn import bytewise, unindexed
from engine.store.tables import audit_log, codes, incidents, playbook_versions, runs, state, step_results
from engine.store.tallies import (
    NOTE,
    AlertGroup,
    IncidentTally,
    RunTally,
    Windows,
    count,
    merged,
    reach,
    windows_key,
)
from engine.store.tallies import _unclassified as unclassified_groups

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
class Window:
    """Everything stats reads for incidents opened in [since, until), row by row (the reference path)."""

    since: datetime
    until: datetime
    incidents: list[IncidentFacts]
    runs: list[RunFacts]
    verify: list[VerifyStep]
    #: Incidents opened after `until`, up to the last resolution + reach: recurrences of resolutions
    #: near or after the window's end.
    later: list[Opening]
    unclassified: list[AlertGroup]


@dataclass(frozen=True, slots=True)
class Recurrence:
    code: str
    target: str
    incidents: int


@dataclass(frozen=True, slots=True)
class Newest:
    """The title and severity of a code's newest incident in the window (for codes not in the catalog)."""

    title: str
    severity: str


@dataclass(frozen=True, slots=True)
class Summary:
    """A window counted in SQL: what engine.analytics.stats turns into the contract's Stats."""

    since: datetime
    until: datetime
    incidents: list[IncidentTally]
    runs: list[RunTally]
    newest: dict[str, Newest]
    #: The (code, target) pairs opened more than once, most often first, at most the limit asked.
    recurring: list[Recurrence]
    unclassified: list[AlertGroup]


@dataclass(frozen=True, slots=True)
class ShadowTally:
    """Shadow runs of one playbook version for incidents of one code: rendered, never executed."""

    playbook: str
    version: int
    rendered: int
    #: Ended failed: a template error, or a `when` that could not be evaluated.
    failed: int
    #: The newest failed one's error.
    last_error: str | None


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
    #: The replay `suture validate --replay` ran on the catalog holding this version before it
    #: loaded (engine.store.history.REPLAY_KEY), if one was.
    replay: dict[str, Any] | None = None


#: The state key of the replay summary recorded for a code or playbook version's content.
REPLAY_KEY = "replay:{sha}"


def replay_key(sha256: str) -> str:
    return REPLAY_KEY.format(sha=sha256[:32])


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
        self.buckets = Buckets(db)

    def summary(
        self,
        since: datetime,
        until: datetime,
        now: datetime,
        windows: Mapping[str, Windows],
        default: Windows,
        known: Collection[str] = (),
        recurring_limit: int = 10,
    ) -> Summary:
        """The window [since, until) counted in SQL as of `now` (deadlines). `windows`: the codes whose
        effectiveness windows are their own (the others take `default`); `newest` names the codes
        found that are not in `known` (the catalog), which have no title of their own."""
        with self.db.read() as conn:
            same_snapshot(conn)
            if conn.dialect.name != "sqlite":
                # These reads aggregate many rows once: compiling them (JIT) costs more than it
                # saves, and their sorts and hashes should stay in memory.
                conn.exec_driver_sql("SET LOCAL jit = off")
                conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            key, recurrence = windows_key(windows, default), reach(windows, default)
            kept = cover(since, until, self.buckets.usable(conn, since, until, key, recurrence))
            holes = gaps(since, until, kept)
            parts = [count(conn, _opened_in(start, end), now, windows, default) for start, end in holes]
            pending = sorted(incident for bucket in kept for incident in bucket.pending)
            for first in range(0, len(pending), 500):
                chosen = incidents.c.id.in_(pending[first : first + 500])
                parts.append(count(conn, chosen, now, windows, default))
            part = merged(parts, [bucket.rows() for bucket in kept])
            recurring = _recurring(conn, since, until, recurring_limit)
            opened = _opened_in(since, until)
            newest = {
                code: _newest(conn, opened, code)
                for code in sorted({t.code for t in part.incidents} - set(known))
            }
        return Summary(since, until, part.incidents, part.runs, newest, recurring, part.unclassified)

    def window(self, since: datetime, until: datetime, reach: timedelta | None = None) -> Window:
        """Incidents opened in [since, until), row by row, with their runs, verify steps and unclassified
        alerts; with `reach` (the longest recurrence window), also the openings after `until` that a
        recurrence check of their resolutions may meet (up to the last resolution + `reach`)."""
        opened = _opened_in(since, until)
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
            resolutions = [i.resolved_at for i in found if i.resolved_at is not None]
            if reach is not None and resolutions:
                last = max(until, *resolutions) + reach
                later = [
                    Opening(*row)
                    for row in conn.execute(
                        select(incidents.c.code, incidents.c.target, incidents.c.opened_at).where(
                            and_(incidents.c.opened_at >= until, incidents.c.opened_at <= last)
                        )
                    )
                ]
            groups = unclassified_groups(conn, opened)
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

    def shadow_runs(self, code: str, since: datetime, until: datetime) -> list[ShadowTally]:
        """The shadow runs queued for incidents of `code` in [since, until), by playbook version."""
        query = (
            select(runs.c.playbook, runs.c.playbook_version, runs.c.status, runs.c.error)
            .join(incidents, runs.c.incident_id == incidents.c.id)
            .where(
                and_(
                    runs.c.shadow.is_(True),
                    incidents.c.code == code,
                    runs.c.queued_at >= since,
                    runs.c.queued_at < until,
                )
            )
            .order_by(runs.c.id)
        )
        counts: dict[tuple[str, int], list[int]] = {}  # (rendered, failed)
        last_error: dict[tuple[str, int], str | None] = {}
        with self.db.read() as conn:
            for playbook, version, status, error in conn.execute(query):
                tally = counts.setdefault((playbook, version), [0, 0])
                tally[0] += 1
                if status == RunStatus.failed.value:
                    tally[1] += 1
                    last_error[(playbook, version)] = error
        return [
            ShadowTally(playbook, version, rendered, failed, last_error.get((playbook, version)))
            for (playbook, version), (rendered, failed) in counts.items()
        ]

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
            keys = {replay_key(change.sha256) for change in changes}
            replays = dict(
                conn.execute(select(state.c.key, state.c.value).where(state.c.key.in_(sorted(keys)))).all()
            )
        return [dataclasses.replace(c, replay=replays.get(replay_key(c.sha256))) for c in changes]


# ------------------------------------------------------------------ summary queries


def _opened_in(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(incidents.c.opened_at >= since, incidents.c.opened_at < until)


def _recurring(conn: Connection, since: datetime, until: datetime, limit: int) -> list[Recurrence]:
    i = incidents.c
    count = func.count().label("n")
    # Shaped for the (code, target, opened_at) index, which holds all it reads in pair order: SQLite
    # must not read the window by opened_at and sort it instead (PostgreSQL hashes either way).
    opened_at = unindexed(i.opened_at)
    query = (
        select(i.code, i.target, count)
        .where(opened_at >= since, opened_at < until)
        .group_by(i.code, i.target)
        .having(func.count() > 1)
        .order_by(count.desc(), bytewise(i.code), bytewise(i.target))
        .limit(limit)
    )
    return [Recurrence(code, target, int(n)) for code, target, n in conn.execute(query)]


def _newest(conn: Connection, opened: ColumnElement[bool], code: str) -> Newest:
    query = (
        select(incidents.c.title, incidents.c.severity)
        .where(opened, incidents.c.code == code)
        .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
        .limit(1)
    )
    title, severity = conn.execute(query).one()
    return Newest(title, severity)
