"""Counting a set of incidents in SQL for stats: per code and severity, per playbook version, and
the unclassified alerts, as `Part`s that add up (`merged`), whether the set is a window of opening
times (engine.store.history) or a day's settled incidents counted once (engine.store.days).

Counts and durations as integers, never a row per incident; the arithmetic (means, percentiles,
rates) is engine.analytics'. What SQLite and PostgreSQL spell differently is engine.store.sqlfn's;
the one query shape that differs (how a recurrence is looked for) is chosen by `exact_intervals`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
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

from engine.models import UNCLASSIFIED, RunStatus
from engine.store.sqlfn import at_most_apart, collected, micros_between, numbers
from engine.store.tables import alerts, audit_log, incidents, runs, step_results

#: The audit kind of a person's note (engine.store.store.NOTE).
NOTE = "note"
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
class AlertGroup:
    """Unclassified alerts of one (name, source, label set, incident target), counted in SQL."""

    name: str
    source: str
    target: str
    labels: dict[str, str]
    alerts: int


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
class Part:
    """What one set of incidents adds to a window's counts; parts of disjoint sets add up."""

    incidents: list[IncidentTally]
    runs: list[RunTally]
    unclassified: list[AlertGroup]


def count(
    conn: Connection,
    chosen: ColumnElement[bool],
    now: datetime,
    windows: Mapping[str, Windows],
    default: Windows,
) -> Part:
    """The incidents `chosen` (a condition on `incidents`) counted as of `now` (deadlines)."""
    exact = conn.dialect.name != "sqlite"
    return Part(
        _incident_tallies(conn, chosen, now),
        _run_tallies(conn, chosen, windows, default, exact_intervals=exact),
        _unclassified(conn, chosen),
    )


#: Each tally as a row of its fields, for IncidentTally, RunTally and AlertGroup in that order: how
#: many lead (the group), how many numbers follow (added), how many lists end it (joined).
SHAPES = ((2, 5, 2), (3, 4, 2), (4, 1, 0))
_KINDS = (IncidentTally, RunTally, AlertGroup)


def rows_of(items: Iterable[Any]) -> list[list[Any]]:
    """Tallies as rows of their fields, in field order (what engine.store.buckets keeps)."""
    return [[getattr(item, name) for name in item.__slots__] for item in items]


def merged(parts: Iterable[Part], rows: Iterable[tuple[list[Any], list[Any], list[Any]]] = ()) -> Part:
    """One tally per group: numbers added, lists joined. `rows`: more parts as rows (`rows_of`)."""
    folded: list[dict[Any, list[Any]]] = [{}, {}, {}]
    for part in parts:
        _fold(folded, (rows_of(part.incidents), rows_of(part.runs), rows_of(part.unclassified)))
    for more in rows:
        _fold(folded, more)
    tallies, run_tallies, groups = folded
    return Part(
        [IncidentTally(*values) for values in tallies.values()],
        [RunTally(*values) for values in run_tallies.values()],
        [AlertGroup(*values) for values in groups.values()],
    )


def _fold(folded: list[dict[Any, list[Any]]], rows: Iterable[list[Any]]) -> None:
    for into, kind, (lead, added, lists), found in zip(folded, _KINDS, SHAPES, rows, strict=True):
        numbers_at = range(lead, lead + added)
        lists_at = range(lead + added, lead + added + lists)
        labelled = kind is AlertGroup
        for row in found:
            key = (*row[:3], _hashable(row[3])) if labelled else tuple(row[:lead])
            held = into.get(key)
            if held is None:
                into[key] = row[: lead + added] + [list(row[index]) for index in lists_at]
                continue
            for index in numbers_at:
                held[index] += row[index]
            for index in lists_at:
                held[index].extend(row[index])


def _hashable(value: Any) -> Any:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS) if isinstance(value, dict) else value


def windows_key(windows: Mapping[str, Windows], default: Windows) -> str:
    """A short name for the effectiveness windows a count was made with: counts made with other
    windows are other numbers. Codes on the default windows count as the default does."""
    own = sorted(
        (code, w.effective_within // _MICROSECOND, w.recurrence // _MICROSECOND)
        for code, w in windows.items()
        if w != default
    )
    text = orjson.dumps([default.effective_within // _MICROSECOND, default.recurrence // _MICROSECOND, own])
    return hashlib.sha256(text).hexdigest()[:32]


def reach(windows: Mapping[str, Windows], default: Windows) -> timedelta:
    """The longest recurrence window: how long after a resolution a new incident still counts."""
    return max([default.recurrence, *(w.recurrence for w in windows.values())])


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
