"""Each past hour's settled incidents counted once and kept (table `stats_buckets`), so that a 30-day
stats read counts an hour or two of incidents in SQL, not every incident of the window.

An incident is *settled* when it is resolved and none of its runs can still change (none queued,
running or awaiting approval). From then on four things can change what it counts, and each
writes a row stamped with the time it is written: a person's note (`audit_log.at`), a new run of
it (`runs.queued_at`), an unclassified alert told again (`alerts.received_at`), or a new incident
of its code and target within the recurrence window of its resolution, which undoes its run's fix
(`incidents.opened_at`). A bucket keeps the time it was counted and the ids of its incidents that
were not settled (`pending`, counted afresh at every read); a read takes a bucket only if it was
counted with the effectiveness windows in force and no row stamped since (less `MARGIN`, for
transactions still committing and the clocks of several replicas) touches one of its settled
incidents. An incident's `opened_at` is the time it was stored, so a bucket's incidents are all
known once it is `MARGIN` past.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, delete, exists, insert, select, update

from engine.models import UNCLASSIFIED, RunStatus
from engine.store.db import Database
from engine.store.sqlfn import unindexed
from engine.store.tables import alerts, audit_log, incidents, runs, stats_buckets
from engine.store.tallies import NOTE, Windows, count, reach, rows_of, windows_key

BUCKET = timedelta(hours=1)
#: How long after its time a row may still be committing, and how far replicas' clocks may differ.
MARGIN = timedelta(hours=1)
#: How far back the daemon's job keeps buckets counted.
HORIZON = timedelta(days=90)
#: A bucket with more pending incidents than this is counted afresh by its range instead: one
#: range read is cheaper than many reads by id.
PENDING_LIMIT = 500
#: Run statuses that can still change.
UNFINISHED = (RunStatus.queued.value, RunStatus.running.value, RunStatus.awaiting_approval.value)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Bucket:
    starts: datetime
    counted_at: datetime
    #: The bucket's incidents that were not settled when it was counted: not in its counts.
    pending: frozenset[int]
    #: The rows stamped within `MARGIN` before the count that the count already holds.
    seen: frozenset[str]
    #: engine.store.tallies.Part as rows (engine.store.tallies.rows_of), for `merged`.
    rows: tuple[list[Any], list[Any], list[Any]]


def bucket_of(time: datetime) -> datetime:
    """The start of the bucket `time` falls in."""
    return time - (time - _EPOCH) % BUCKET


def whole_buckets(since: datetime, until: datetime) -> list[datetime]:
    """The starts of the buckets that lie wholly in [since, until)."""
    start = bucket_of(since)
    if start < since:
        start += BUCKET
    found = []
    while start + BUCKET <= until:
        found.append(start)
        start += BUCKET
    return found


def gaps(since: datetime, until: datetime, covered: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """The ranges of [since, until) that no `covered` bucket holds, in order."""
    ranges, start = [], since
    for bucket in sorted(covered):
        if bucket > start:
            ranges.append((start, bucket))
        start = max(start, bucket + BUCKET)
    if start < until:
        ranges.append((start, until))
    return ranges


def settled() -> ColumnElement[bool]:
    """A resolved incident none of whose runs can still change."""
    its = runs.alias("its_run")
    unfinished = exists().where(its.c.incident_id == incidents.c.id, its.c.status.in_(UNFINISHED))
    return and_(incidents.c.resolved_at.is_not(None), ~unfinished)


class Buckets:
    """The `stats_buckets` rows: read the ones still true, count the buckets that have none."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def usable(
        self, conn: Connection, starts: Sequence[datetime], key: str, recurrence: timedelta
    ) -> dict[datetime, Bucket]:
        """The buckets among `starts` counted with the windows `key` whose settled incidents no
        later row has touched; `recurrence`: the longest recurrence window."""
        if not starts:
            return {}
        b = stats_buckets.c
        rows = conn.execute(
            select(b.starts, b.counted_at, b.pending, b.seen, b.counts).where(
                b.windows == key, b.starts >= starts[0], b.starts <= starts[-1]
            )
        ).all()
        wanted = set(starts)
        found = {
            start: Bucket(start, at, frozenset(pending), frozenset(seen), tuple(orjson.loads(counts)))
            for start, at, pending, seen, counts in rows
            if start in wanted
        }
        for start in _touched(conn, found, recurrence):
            del found[start]
        return found

    def refresh(
        self, now: datetime, windows: Mapping[str, Windows], default: Windows, horizon: timedelta = HORIZON
    ) -> int:
        """Count the buckets of the last `horizon` that have no true count, or whose pending
        incidents have settled since, and move the others' counted time to `now` (what a read
        checks starts there); how many were counted. The daemon's `count_buckets` job."""
        key = windows_key(windows, default)
        starts = whole_buckets(now - horizon, now - MARGIN)
        with self.db.read() as conn:
            kept = self.usable(conn, starts, key, reach(windows, default))
            todo = [s for s in starts if s not in kept or _settled_since(conn, kept[s])]
        still = [s for s in kept if s not in todo]
        if still:
            with self.db.write() as conn:
                for first in range(0, len(still), 500):
                    conn.execute(
                        update(stats_buckets)
                        .where(stats_buckets.c.windows == key)
                        .where(stats_buckets.c.starts.in_(still[first : first + 500]))
                        .values(counted_at=now)
                    )
        for start in todo:
            self.count_bucket(start, now, windows, default)
        return len(todo)

    def count_bucket(
        self, start: datetime, now: datetime, windows: Mapping[str, Windows], default: Windows
    ) -> None:
        key = windows_key(windows, default)
        opened = and_(incidents.c.opened_at >= start, incidents.c.opened_at < start + BUCKET)
        with self.db.read() as conn:
            same_snapshot(conn)
            pending = sorted(conn.execute(select(incidents.c.id).where(opened, ~settled())).scalars())
            part = count(conn, and_(opened, settled()), now, windows, default)
            recent = _hits(conn, now - MARGIN, start, start + BUCKET, reach(windows, default))
        seen = sorted({hit.row for hit in recent if hit.incident not in pending})
        counts = orjson.dumps([rows_of(part.incidents), rows_of(part.runs), rows_of(part.unclassified)])
        row = {"starts": start, "windows": key, "counted_at": now, "pending": pending, "seen": seen}
        with self.db.write() as conn:
            same = and_(stats_buckets.c.starts == start, stats_buckets.c.windows == key)
            conn.execute(delete(stats_buckets).where(same))
            conn.execute(insert(stats_buckets).values(**row, counts=counts.decode()))


def same_snapshot(conn: Connection) -> None:
    """Every statement of this read transaction sees the same rows (PostgreSQL; SQLite's read
    transactions always do)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _settled_since(conn: Connection, bucket: Bucket) -> bool:
    """Whether some of a bucket's pending incidents have settled since it was counted."""
    ids = sorted(bucket.pending)
    for first in range(0, len(ids), 500):
        query = select(incidents.c.id).where(incidents.c.id.in_(ids[first : first + 500]), settled())
        if conn.execute(query.limit(1)).first() is not None:
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Hit:
    """A row stamped at `at` that concerns incident `incident` (opened at `opened`)."""

    row: str
    at: datetime
    incident: int
    opened: datetime


def _touched(conn: Connection, found: Mapping[datetime, Bucket], recurrence: timedelta) -> set[datetime]:
    """The buckets one of whose settled incidents a row stamped since its count concerns."""
    if not found:
        return set()
    since = min(bucket.counted_at for bucket in found.values()) - MARGIN
    touched: set[datetime] = set()
    for hit in _hits(conn, since, min(found), max(found) + BUCKET, recurrence):
        bucket = found.get(bucket_of(hit.opened))
        if (
            bucket is not None
            and hit.at >= bucket.counted_at - MARGIN
            and hit.incident not in bucket.pending
            and hit.row not in bucket.seen
        ):
            touched.add(bucket.starts)
    return touched


def _hits(
    conn: Connection, since: datetime, first: datetime, end: datetime, recurrence: timedelta
) -> list[_Hit]:
    """The rows stamped since `since` that concern incidents opened in [first, end)."""
    i = incidents.c
    # Read from the rows stamped since (few, by their time's index), never from the buckets' incidents.
    opened_at = unindexed(i.opened_at)
    within = and_(opened_at >= first, opened_at < end)
    sources: list[tuple[str, Any, Any, Any, ColumnElement[bool]]] = [
        ("note", audit_log.c.id, audit_log.c.at, audit_log.c.incident_id, audit_log.c.kind == NOTE),
        ("run", runs.c.id, runs.c.queued_at, runs.c.incident_id, runs.c.incident_id.is_not(None)),
        ("alert", alerts.c.id, alerts.c.received_at, alerts.c.incident_id, alerts.c.code == UNCLASSIFIED),
    ]
    hits: list[_Hit] = []
    for name, row_id, stamped, incident_id, kind in sources:
        query = (
            select(row_id, stamped, i.id, i.opened_at)
            .join(incidents, incident_id == i.id)
            .where(stamped >= since, kind, within)
        )
        hits += [_Hit(f"{name}:{n}", at, incident, opened) for n, at, incident, opened in conn.execute(query)]
    # A new incident of a settled incident's code and target, opened within the recurrence
    # window of its resolution, undoes that resolution's fix.
    new = incidents.alias("new")
    query = (
        select(new.c.id, new.c.opened_at, i.id, i.opened_at, i.resolved_at)
        .select_from(new.join(incidents, and_(i.code == new.c.code, i.target == new.c.target)))
        .where(new.c.opened_at >= since, new.c.id != i.id, within)
        .where(i.resolved_at.is_not(None), i.resolved_at < new.c.opened_at)
    )
    hits += [
        _Hit(f"opened:{n}", at, incident, opened)
        for n, at, incident, opened, resolved in conn.execute(query)
        if at - resolved <= recurrence
    ]
    return hits
