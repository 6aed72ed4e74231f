"""Each past hour's settled incidents counted once and kept (table `stats_buckets`), and each past
day's made of its hours, so that a 30-day stats read counts an hour or two of incidents in SQL and
adds up about thirty stored counts, not every incident of the window.

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

import struct
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, delete, exists, insert, select, update

from engine.models import UNCLASSIFIED, RunStatus
from engine.store.db import Database
from engine.store.sqlfn import unindexed, utc_day
from engine.store.tables import alerts, audit_log, incidents, runs, stats_buckets
from engine.store.tallies import (
    NOTE,
    SHAPES,
    Part,
    Windows,
    count,
    merged,
    reach,
    rows_of,
    windows_key,
)

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
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
Rows = tuple[list[Any], list[Any], list[Any]]


@dataclass(frozen=True, slots=True)
class Bucket:
    starts: datetime
    #: 1 (an hour) or 24 (a UTC day, made of its hours).
    hours: int
    counted_at: datetime
    #: The bucket's incidents that were not settled when it was counted: not in its counts.
    pending: frozenset[int]
    #: The rows stamped within `MARGIN` before the count that the count already holds.
    seen: frozenset[str]
    counts: bytes

    @property
    def ends(self) -> datetime:
        return self.starts + self.hours * HOUR

    def rows(self) -> Rows:
        """engine.store.tallies.Part as rows (engine.store.tallies.rows_of), for `merged`."""
        return decode(self.counts)


def start_of(time: datetime, span: timedelta) -> datetime:
    """The start of the hour or UTC day `time` falls in."""
    return time - (time - _EPOCH) % span


def whole(since: datetime, until: datetime, span: timedelta) -> list[datetime]:
    """The starts of the hours or days that lie wholly in [since, until)."""
    start = start_of(since, span)
    if start < since:
        start += span
    found = []
    while start + span <= until:
        found.append(start)
        start += span
    return found


def cover(since: datetime, until: datetime, found: Mapping[tuple[datetime, int], Bucket]) -> list[Bucket]:
    """The fewest usable buckets that tile parts of [since, until): a day where its row will do,
    its hours otherwise."""
    chosen = []
    for day in whole(since, until, DAY):
        bucket = found.get((day, 24))
        if bucket is not None and len(bucket.pending) <= PENDING_LIMIT:
            chosen.append(bucket)
    days = {bucket.starts for bucket in chosen}
    for hour in whole(since, until, HOUR):
        bucket = found.get((hour, 1))
        if start_of(hour, DAY) not in days and bucket is not None and len(bucket.pending) <= PENDING_LIMIT:
            chosen.append(bucket)
    return sorted(chosen, key=lambda b: b.starts)


def gaps(since: datetime, until: datetime, covered: Iterable[Bucket]) -> list[tuple[datetime, datetime]]:
    """The ranges of [since, until) that no `covered` bucket holds, in order."""
    ranges, start = [], since
    for bucket in sorted(covered, key=lambda b: b.starts):
        if bucket.starts > start:
            ranges.append((start, bucket.starts))
        start = max(start, bucket.ends)
    if start < until:
        ranges.append((start, until))
    return ranges


def settled() -> ColumnElement[bool]:
    """A resolved incident none of whose runs can still change."""
    its = runs.alias("its_run")
    unfinished = exists().where(its.c.incident_id == incidents.c.id, its.c.status.in_(UNFINISHED))
    return and_(incidents.c.resolved_at.is_not(None), ~unfinished)


def same_snapshot(conn: Connection) -> None:
    """Every statement of this read transaction sees the same rows (PostgreSQL; SQLite's read
    transactions always do)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


class Buckets:
    """The `stats_buckets` rows: read the ones still true, count the hours that have none."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def usable(
        self, conn: Connection, since: datetime, until: datetime, key: str, recurrence: timedelta
    ) -> dict[tuple[datetime, int], Bucket]:
        """The hours and days wholly in [since, until) counted with the windows `key` whose settled
        incidents no later row has touched; `recurrence`: the longest recurrence window."""
        b = stats_buckets.c
        rows = conn.execute(
            select(b.starts, b.hours, b.counted_at, b.pending, b.seen, b.counts).where(
                b.windows == key, b.starts >= since, b.starts < until
            )
        ).all()
        found = {
            (start, hours): Bucket(start, hours, at, frozenset(pending), frozenset(seen), bytes(counts))
            for start, hours, at, pending, seen, counts in rows
            if start + hours * HOUR <= until
        }
        for touched in _touched(conn, found, recurrence):
            del found[touched]
        return found

    def refresh(
        self, now: datetime, windows: Mapping[str, Windows], default: Windows, horizon: timedelta = HORIZON
    ) -> int:
        """Count the hours of the last `horizon` that have no true count, or whose pending incidents
        have settled since, make each day of them whose hours changed, and move the others' counted
        time to `now` (what a read checks starts there); how many hours were counted. The daemon's
        `count_hours` job."""
        key, recurrence = windows_key(windows, default), reach(windows, default)
        since, until = now - horizon, now - MARGIN
        with self.db.read() as conn:
            # What each count will see and hold of the rows stamped lately: looked for once, before
            # the counts (a row it misses is one the count will hold too, and recounts it later).
            recent = _hits(conn, now - MARGIN, since, until, recurrence)
            kept = self.usable(conn, since, until, key, recurrence)
            hours = [
                h
                for h in whole(since, until, HOUR)
                if (h, 1) not in kept or _settled_since(conn, kept[(h, 1)])
            ]
            busy = _busy_days(conn, hours)
        empty = [hour for hour in hours if start_of(hour, DAY) not in busy]
        if empty:
            self._put_empty(empty, key, now)
        redone = {start_of(hour, DAY) for hour in hours}
        days = [d for d in whole(since, until, DAY) if (d, 24) not in kept or d in redone]
        self._advance(key, now, [k for k in kept if k[0] not in (hours if k[1] == 1 else days)])
        lately: dict[datetime, list[_Hit]] = {}
        for hit in recent:
            lately.setdefault(start_of(hit.opened, HOUR), []).append(hit)
        for hour in hours:
            if start_of(hour, DAY) in busy:
                self.count_hour(hour, now, windows, default, lately.get(hour, []))
        for day in days:
            self._make_day(day, key)
        return len(hours)

    def _advance(self, key: str, now: datetime, still: list[tuple[datetime, int]]) -> None:
        if not still:
            return
        with self.db.write() as conn:
            for span in (1, 24):
                starts = [start for start, hours in still if hours == span]
                for first in range(0, len(starts), 500):
                    conn.execute(
                        update(stats_buckets)
                        .where(stats_buckets.c.windows == key, stats_buckets.c.hours == span)
                        .where(stats_buckets.c.starts.in_(starts[first : first + 500]))
                        .values(counted_at=now)
                    )

    def count_hour(
        self,
        start: datetime,
        now: datetime,
        windows: Mapping[str, Windows],
        default: Windows,
        recent: Iterable[_Hit],
    ) -> None:
        """Count one hour as of `now`; `recent`: the rows stamped lately that concern its incidents."""
        opened = and_(incidents.c.opened_at >= start, incidents.c.opened_at < start + HOUR)
        with self.db.read() as conn:
            same_snapshot(conn)
            pending = sorted(conn.execute(select(incidents.c.id).where(opened, ~settled())).scalars())
            part = count(conn, and_(opened, settled()), now, windows, default)
        seen = sorted({hit.row for hit in recent if hit.incident not in pending})
        self._put(
            Bucket(start, 1, now, frozenset(pending), frozenset(seen), encode(_rows(part))),
            windows_key(windows, default),
        )

    def _make_day(self, day: datetime, key: str) -> None:
        """A day's counts from its 24 hours (all counted), as true as the hours are."""
        b = stats_buckets.c
        with self.db.read() as conn:
            found = conn.execute(
                select(b.counted_at, b.pending, b.seen, b.counts).where(
                    b.windows == key, b.hours == 1, b.starts >= day, b.starts < day + DAY
                )
            ).all()
        if len(found) != 24:
            return
        part = merged([], [decode(bytes(counts)) for _, _, _, counts in found])
        self._put(
            Bucket(
                day,
                24,
                min(at for at, _, _, _ in found),
                frozenset(i for _, pending, _, _ in found for i in pending),
                frozenset(row for _, _, seen, _ in found for row in seen),
                encode(_rows(part)),
            ),
            key,
        )

    def _put_empty(self, starts: list[datetime], key: str, now: datetime) -> None:
        """Hours of days without a single incident: counted as nothing, at once."""
        nothing = encode(([], [], []))
        b = stats_buckets.c
        with self.db.write() as conn:
            for first in range(0, len(starts), 500):
                chunk = starts[first : first + 500]
                conn.execute(delete(stats_buckets).where(b.windows == key, b.hours == 1, b.starts.in_(chunk)))
                row = {
                    "hours": 1,
                    "windows": key,
                    "counted_at": now,
                    "pending": [],
                    "seen": [],
                    "counts": nothing,
                }
                conn.execute(insert(stats_buckets), [{**row, "starts": start} for start in chunk])

    def _put(self, bucket: Bucket, key: str) -> None:
        b = stats_buckets.c
        with self.db.write() as conn:
            same = and_(b.starts == bucket.starts, b.hours == bucket.hours, b.windows == key)
            conn.execute(delete(stats_buckets).where(same))
            conn.execute(
                insert(stats_buckets).values(
                    starts=bucket.starts,
                    hours=bucket.hours,
                    windows=key,
                    counted_at=bucket.counted_at,
                    pending=sorted(bucket.pending),
                    seen=sorted(bucket.seen),
                    counts=bucket.counts,
                )
            )


def _rows(part: Part) -> Rows:
    return rows_of(part.incidents), rows_of(part.runs), rows_of(part.unclassified)


def encode(rows: Rows) -> bytes:
    """Counts as a JSON head (each tally's names and numbers and its lists' lengths) and one array
    of 64-bit integers holding every list, which reads back far faster than JSON numbers."""
    values = array("q")
    head: list[Any] = []
    for (lead, added, _), found in zip(SHAPES, rows, strict=True):
        fixed = lead + added
        shaped = []
        for row in found:
            out = list(row[:fixed])
            for listed in row[fixed:]:
                out.append(len(listed))
                values.extend(listed)
            shaped.append(out)
        head.append(shaped)
    if sys.byteorder == "big":
        values.byteswap()
    text = orjson.dumps(head)
    return struct.pack("<I", len(text)) + text + values.tobytes()


def decode(blob: bytes) -> Rows:
    (size,) = struct.unpack_from("<I", blob)
    head = orjson.loads(blob[4 : 4 + size])
    values = array("q")
    values.frombytes(blob[4 + size :])
    if sys.byteorder == "big":
        values.byteswap()
    flat = values.tolist()
    at = 0
    rows: list[list[Any]] = []
    for (lead, added, lists), shaped in zip(SHAPES, head, strict=True):
        fixed = lead + added
        out = []
        for row in shaped:
            full = row[:fixed]
            for length in row[fixed : fixed + lists]:
                full.append(flat[at : at + length])
                at += length
            out.append(full)
        rows.append(out)
    return rows[0], rows[1], rows[2]


def _busy_days(conn: Connection, hours: list[datetime]) -> set[datetime]:
    """The UTC days of these hours on which some incident opened (one grouped read)."""
    if not hours:
        return set()
    opened = incidents.c.opened_at
    query = (
        select(utc_day(opened))
        .where(opened >= start_of(hours[0], DAY), opened < hours[-1] + HOUR)
        .group_by(utc_day(opened))
    )
    return {datetime.fromisoformat(day).replace(tzinfo=UTC) for day in conn.execute(query).scalars()}


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


def _touched(
    conn: Connection, found: Mapping[tuple[datetime, int], Bucket], recurrence: timedelta
) -> set[tuple[datetime, int]]:
    """The buckets one of whose settled incidents a row stamped since its count concerns."""
    if not found:
        return set()
    since = min(bucket.counted_at for bucket in found.values()) - MARGIN
    first = min(bucket.starts for bucket in found.values())
    end = max(bucket.ends for bucket in found.values())
    touched: set[tuple[datetime, int]] = set()
    for hit in _hits(conn, since, first, end, recurrence):
        for key in ((start_of(hit.opened, HOUR), 1), (start_of(hit.opened, DAY), 24)):
            bucket = found.get(key)
            if (
                bucket is not None
                and hit.at >= bucket.counted_at - MARGIN
                and hit.incident not in bucket.pending
                and hit.row not in bucket.seen
            ):
                touched.add(key)
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
