"""The aggregate reads analytics needs (stats, effectiveness, the handover report), as plain frozen facts;
the arithmetic (means, percentiles, rates) is engine.analytics' and never happens here.

A window is the incidents opened in [since, until); runs, verify steps and alerts are those of these
incidents, so every number analytics derives counts incidents opened in the window (DESIGN.md,
"stats --json", Definitions). `summary` counts a window in SQL (four GROUP BY queries that return
counts, and durations as integers, never a row per incident: what read_stats uses); `window` reads
it row by row for the pure reference path (engine.analytics.stats.build_stats) the SQL is tested
against. Plain SQLAlchemy Core; what SQLite and PostgreSQL spell differently is engine.store.sqlfn's,
and the one query shape that differs (how a recurrence is looked for) is chosen in `summary`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
)

from engine.models import UNCLASSIFIED, IncidentStatus, RunStatus
from engine.store.db import Database
from engine.store.sqlfn import at_most_apart, bytewise, collected, micros_between, numbers, unindexed
from engine.store.tables import alerts, audit_log, codes, incidents, playbook_versions, runs, step_results

#: The audit kind of a person's note (engine.store.store.NOTE).
NOTE = "note"
#: How many notes, open incidents and catalog changes a report reads at most.
REPORT_LIMIT = 500
#: Final run statuses that say the automation did not fix it (engine.store.store.FAILED_RUNS).
FAILED_RUNS = tuple(
    status.value
    for status in (RunStatus.failed, RunStatus.rolled_back, RunStatus.timed_out, RunStatus.interrupted)
)
#: Step statuses that let a verify step pass; anything else as its last attempt fails the run.
PASSED_STEPS = ("succeeded", "skipped")
MANUAL = "manual"
_MICROSECOND = timedelta(microseconds=1)


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
class Windows:
    """A code's effectiveness windows (engine.analytics.effectiveness): how long after a run finished
    its alert may resolve, and how long after that resolution a new incident undoes the fix."""

    effective_within: timedelta
    recurrence: timedelta


@dataclass(frozen=True, slots=True)
class IncidentTally:
    """Incidents of one code and severity opened in the window; durations in microseconds."""

    code: str
    severity: str
    opened: int
    resolved: int
    #: Resolved after `due_at`, or still open past it.
    breached: int
    #: Still open past `due_at`.
    open_overdue: int
    #: Resolved, by `due_at` if there is one.
    resolved_in_time: int
    #: resolved_at - opened_at of each resolved one.
    ttr_us: list[int]
    #: acknowledged_at - opened_at of each acknowledged one.
    tta_us: list[int]


@dataclass(frozen=True, slots=True)
class RunTally:
    """Runs that started (dry runs aside) of one playbook version for incidents of one code."""

    playbook: str
    version: int
    code: str
    runs: int
    #: Status succeeded and no verify step whose last attempt failed.
    succeeded: int
    #: A final status that did not fix it, or a verify step whose last attempt failed.
    failed: int
    effective: int
    #: finished_at - started_at of each finished one, in microseconds.
    durations_us: list[int]
    #: The incidents these runs fixed with nobody acknowledging or writing a note (an incident
    #: with several such runs is named by each).
    auto_resolved: list[int]


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
        opened = _opened_in(since, until)
        with self.db.read() as conn:
            exact = conn.dialect.name != "sqlite"
            if exact:
                # These reads aggregate a few hundred thousand rows once: compiling them (JIT) costs
                # more than it saves, and their sorts and hashes should stay in memory.
                conn.exec_driver_sql("SET LOCAL jit = off")
                conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            tallies = _incident_tallies(conn, opened, now)
            run_tallies = _run_tallies(conn, opened, windows, default, exact_intervals=exact)
            recurring = _recurring(conn, since, until, recurring_limit)
            unclassified = _unclassified(conn, opened)
            newest = {
                code: _newest(conn, opened, code) for code in sorted({t.code for t in tallies} - set(known))
            }
        return Summary(since, until, tallies, run_tallies, newest, recurring, unclassified)

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
            groups = _unclassified(conn, opened)
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


# ------------------------------------------------------------------ summary queries


def _opened_in(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(incidents.c.opened_at >= since, incidents.c.opened_at < until)


def _count_if(condition: ColumnElement[Any]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


def _incident_tallies(conn: Connection, opened: ColumnElement[bool], now: datetime) -> list[IncidentTally]:
    i = incidents.c
    is_open, has_due = i.resolved_at.is_(None), i.due_at.is_not(None)
    overdue = and_(is_open, has_due, i.due_at < now)
    breached = or_(and_(i.resolved_at.is_not(None), has_due, i.resolved_at > i.due_at), overdue)
    in_time = and_(i.resolved_at.is_not(None), or_(i.due_at.is_(None), i.resolved_at <= i.due_at))

    def since_opened(time: ColumnElement[Any]) -> ColumnElement[Any]:
        return case((time.is_not(None), micros_between(i.opened_at, time)))

    query = (
        select(
            i.code,
            i.severity,
            func.count(),
            func.count(i.resolved_at),
            _count_if(breached),
            _count_if(overdue),
            _count_if(in_time),
            collected(since_opened(i.resolved_at)),
            collected(since_opened(i.acknowledged_at)),
        )
        .where(opened)
        .group_by(i.code, i.severity)
    )
    return [
        IncidentTally(
            code, severity, int(n), int(res), int(late), int(over), int(kept), numbers(ttr), numbers(tta)
        )
        for code, severity, n, res, late, over, kept, ttr, tta in conn.execute(query)
    ]


def _per_code(code: ColumnElement[str], windows: Mapping[str, timedelta], default: timedelta) -> Any:
    """A code's window in microseconds: a CASE over the codes whose window is not the default."""
    fallback = default // _MICROSECOND
    own = {name: value // _MICROSECOND for name, value in windows.items() if value != default}
    if not own:
        return literal(fallback)
    return case(own, value=code, else_=fallback)


def _run_tallies(
    conn: Connection,
    opened: ColumnElement[bool],
    windows: Mapping[str, Windows],
    default: Windows,
    exact_intervals: bool,
) -> list[RunTally]:
    """Per playbook version and code, the runs that started and what became of each (`_outcome`).

    `exact_intervals`: the database adds intervals to times exactly (PostgreSQL), so a recurrence is
    looked for between the resolution and the end of its window; SQLite, whose text times cannot,
    looks up the next opening and compares (engine.store.sqlfn.at_most_apart)."""
    i, r = incidents.c, runs.c
    recurred = _recurred_within if exact_intervals else _recurred_after_probe
    each = (
        select(
            r.playbook,
            r.playbook_version.label("version"),
            i.code,
            i.id.label("incident_id"),
            i.acknowledged_at.is_(None).label("unacked"),
            case((r.finished_at.is_not(None), micros_between(r.started_at, r.finished_at))).label("duration"),
            _outcome(windows, default, recurred).label("outcome"),
        )
        .select_from(incidents.join(runs, r.incident_id == i.id))
        .where(opened, r.started_at.is_not(None), r.dry_run.is_(False))
        # A fence (OFFSET 0): neither database may fold this into the counts below, which would
        # compute the outcome, subqueries and all, once per count that reads it.
        .offset(0)
        .subquery("each")
    )
    e = each.c
    noted = exists().where(audit_log.c.incident_id == e.incident_id, audit_log.c.kind == NOTE)
    auto = case((and_(e.outcome == _EFFECTIVE, e.unacked, not_(noted)), e.incident_id))
    query = select(
        e.playbook,
        e.version,
        e.code,
        func.count(),
        _count_if(e.outcome >= _SUCCEEDED),
        _count_if(e.outcome == _FAILED),
        _count_if(e.outcome == _EFFECTIVE),
        collected(e.duration),
        collected(auto),
    ).group_by(e.playbook, e.version, e.code)
    return [
        RunTally(
            playbook, int(version), code, int(n), int(ok), int(bad), int(good), numbers(took), numbers(fixed)
        )
        for playbook, version, code, n, ok, bad, good, took, fixed in conn.execute(query)
    ]


def _recurred_after_probe(window_us: ColumnElement[int]) -> ColumnElement[bool]:
    """Whether the incident's code and target opened again within `window_us` after its resolution:
    the next opening, found with one probe of the (code, target, opened_at) index, compared."""
    i, later = incidents.c, incidents.alias("later")
    next_opening = (
        select(func.min(later.c.opened_at))
        .where(later.c.code == i.code, later.c.target == i.target, later.c.opened_at > i.resolved_at)
        .scalar_subquery()
    )
    return at_most_apart(i.resolved_at, next_opening, window_us)  # null (none) is not a recurrence


def _recurred_within(window_us: ColumnElement[int]) -> ColumnElement[bool]:
    """The same with the window's end computed by the database, exactly (PostgreSQL)."""
    i, later = incidents.c, incidents.alias("later")
    return exists().where(
        later.c.code == i.code,
        later.c.target == i.target,
        later.c.opened_at > i.resolved_at,
        later.c.opened_at <= i.resolved_at + window_us * literal_column("INTERVAL '1 microsecond'"),
    )


#: What became of a started run (`_outcome`); SUCCEEDED and above succeeded.
_OTHER, _FAILED, _SUCCEEDED, _EFFECTIVE = 0, 1, 2, 3


def _inline(*values: str) -> list[ColumnElement[str]]:
    """Constants written into the SQL, not bound: a partial index on them stays usable on SQLite."""
    return [literal_column(f"'{value}'") for value in values]


def _outcome(
    windows: Mapping[str, Windows],
    default: Windows,
    recurred: Callable[[ColumnElement[int]], ColumnElement[bool]],
) -> ColumnElement[int]:
    """One CASE, cheapest tests first, each subquery reached only when it can decide: failed (a final
    status that did not fix it, or a verify step whose last attempt did not pass), another status,
    succeeded, or effective (DESIGN.md, Vocabulary): succeeded, the alert resolved between the run's
    start and `effective_within` after it finished (not by hand), and the code and target's next
    incident, if any, opened more than `recurrence_window` after that resolution."""
    i, r = incidents.c, runs.c
    step, retry = step_results.alias("step"), step_results.alias("retry")
    [verify] = _inline("verify")
    verify_failed = exists().where(
        step.c.run_id == r.id,
        step.c.phase == verify,
        step.c.status.not_in(_inline(*PASSED_STEPS)),
        not_(
            exists().where(
                retry.c.run_id == step.c.run_id,
                retry.c.phase == verify,
                retry.c.name == step.c.name,
                retry.c.seq > step.c.seq,
            )
        ),
    )
    within = _per_code(i.code, {c: w.effective_within for c, w in windows.items()}, default.effective_within)
    recurrence = _per_code(i.code, {c: w.recurrence for c, w in windows.items()}, default.recurrence)
    not_its_doing = or_(
        r.finished_at.is_(None),
        i.resolved_at.is_(None),
        i.resolution == MANUAL,
        r.started_at > i.resolved_at,
    )
    return case(
        (r.status.in_(FAILED_RUNS), _FAILED),
        (verify_failed, _FAILED),
        (r.status != RunStatus.succeeded.value, _OTHER),
        (not_its_doing, _SUCCEEDED),
        (not_(at_most_apart(r.finished_at, i.resolved_at, within)), _SUCCEEDED),
        (recurred(recurrence), _SUCCEEDED),
        else_=_EFFECTIVE,
    )


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


def _unclassified(conn: Connection, opened: ColumnElement[bool]) -> list[AlertGroup]:
    """Unclassified alerts of the window's incidents, per (name, source, label set, incident target)."""
    count = func.count().label("alerts")
    query = (
        select(alerts.c.name, alerts.c.source, incidents.c.target, alerts.c.labels, count)
        .join(incidents, alerts.c.incident_id == incidents.c.id)
        .where(and_(opened, alerts.c.code == _inline(UNCLASSIFIED)[0]))
        .group_by(alerts.c.name, alerts.c.source, incidents.c.target, alerts.c.labels)
    )
    return [
        AlertGroup(row.name, row.source, row.target, dict(row.labels), int(row.alerts))
        for row in conn.execute(query)
    ]


def _newest(conn: Connection, opened: ColumnElement[bool], code: str) -> Newest:
    query = (
        select(incidents.c.title, incidents.c.severity)
        .where(opened, incidents.c.code == code)
        .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
        .limit(1)
    )
    title, severity = conn.execute(query).one()
    return Newest(title, severity)
