"""People's silences in the database: added, listed, ended early, and read for the gate.

A silence is never deleted: expiring one sets its `ends_at` to the time of expiry and records
who did it, so the list of past silences says who held automation back, when and why.

The store may not import engine.policy (the layers of pyproject.toml), so it keeps matchers as
plain `{key: regex}`: the caller checks them with `engine.policy.matchers.compile_matchers`
before `add`, and `engine.policy.silences.rules_of` compiles what `not_ended` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from engine.clock import SYSTEM_CLOCK, Clock
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.records import Silence
from engine.store.db import Database
from engine.store.tables import silences

_FIELDS = Silence.field_names()
#: The columns of `silences` in the order of engine.records.Silence (`active` is computed).
_COLUMNS = tuple(silences.c[name] for name in _FIELDS if name != "active")
#: Longest `created_by` / `expired_by` the table holds.
MAX_NAME = 128


class Silences:
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock

    def add(
        self,
        matchers: Mapping[str, str],
        starts_at: datetime | None,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> Silence:
        """A new silence; `starts_at` None means now. `matchers` were checked by the caller
        (`compile_matchers`); the silence must end after it starts and after now (one that never
        holds anything is a mistake)."""
        now = self.clock.now()
        if not matchers:
            raise InvalidArgument("match: at least one matcher is needed (KEY=REGEX)")
        start = _utc(starts_at) if starts_at is not None else now
        end = _utc(ends_at)
        if end <= now:
            raise InvalidArgument(f"ends_at {_iso(end)} is in the past")
        if end <= start:
            raise InvalidArgument(f"ends_at {_iso(end)} is not after starts_at {_iso(start)}")
        _check_name("created_by", created_by)
        if not comment.strip():
            raise InvalidArgument("comment is empty: say why automation should stay away")
        values: dict[str, Any] = {
            "matchers": dict(sorted(matchers.items())),
            "starts_at": start,
            "ends_at": end,
            "created_by": created_by,
            "comment": comment,
            "created_at": now,
            "expired_by": None,
        }
        with self.db.write() as conn:
            new_id = conn.execute(insert(silences).values(**values).returning(silences.c.id)).scalar_one()
        return _record({"id": new_id, **values}, now)

    def list(self, include_ended: bool = False) -> list[Silence]:
        """Silences that have not ended (active or still to start), or every one; newest first."""
        now = self.clock.now()
        with self.db.read() as conn:
            return read_silences(conn, now, include_ended=include_ended)

    def get(self, silence_id: int) -> Silence:
        with self.db.read() as conn:
            row = conn.execute(select(*_COLUMNS).where(silences.c.id == silence_id)).first()
        if row is None:
            raise NotFound(f"silence {silence_id} not found")
        return _record(row._asdict(), self.clock.now())

    def expire(self, silence_id: int, by: str) -> Silence:
        """End a silence now, recording who did. One that has not started yet ends before it
        starts: both its times become now. Ending one that has already ended is a conflict."""
        _check_name("by", by)
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute(
                select(silences.c.starts_at, silences.c.ends_at, silences.c.expired_by).where(
                    silences.c.id == silence_id
                )
            ).first()
            if row is None:
                raise NotFound(f"silence {silence_id} not found")
            if row.ends_at <= now:
                how = f"expired by {row.expired_by}" if row.expired_by else "ended"
                raise Conflict(f"silence {silence_id} already {how} at {_iso(row.ends_at)}")
            done = conn.execute(
                update(silences)
                .where(and_(silences.c.id == silence_id, silences.c.ends_at > now))
                .values(ends_at=now, starts_at=min(row.starts_at, now), expired_by=by)
            ).rowcount
            if done != 1:
                raise Conflict(f"silence {silence_id} was ended by someone else just now")
        return self.get(silence_id)

    def not_ended(self, now: datetime) -> tuple[Silence, ...]:
        """Every silence that has not ended at `now` (started or not), lowest id first: what the
        gate needs for a whole batch, in one query over the `ends_at` index."""
        query = select(*_COLUMNS).where(silences.c.ends_at > now).order_by(silences.c.id)
        with self.db.read() as conn:
            return tuple(_record(row._asdict(), now) for row in conn.execute(query))


def read_silences(
    conn: Connection, now: datetime, *, include_ended: bool = False, active_only: bool = False
) -> list[Silence]:
    """Silences newest first, in the caller's transaction (`suture status` reads them in its own):
    every one, those not ended yet, or (`active_only`) those holding runs at `now`."""
    if not include_ended and not active_only:
        rows = conn.execute(_NOT_ENDED, {"now": now})  # every gate decision's guard context reads this
    else:
        query = select(*_COLUMNS)
        if not include_ended:
            query = query.where(silences.c.ends_at > now)
        if active_only:
            query = query.where(silences.c.starts_at <= now)
        rows = conn.execute(query.order_by(silences.c.id.desc()))
    return [_record(row._asdict(), now) for row in rows]


_NOT_ENDED = select(*_COLUMNS).where(silences.c.ends_at > bindparam("now")).order_by(silences.c.id.desc())


def _record(values: dict[str, Any], now: datetime) -> Silence:
    active = values["starts_at"] <= now < values["ends_at"]
    return Silence.trusted({name: active if name == "active" else values[name] for name in _FIELDS})


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _check_name(field: str, name: str) -> None:
    if not name.strip():
        raise InvalidArgument(f"{field} is empty")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"{field} is longer than {MAX_NAME} characters")
