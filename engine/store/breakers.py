"""Circuit breakers per playbook version: counted where runs finish, read once per intake batch.

The rule is engine.policy.breakers.after_run (a good run sets the count to 0, a bad one adds 1,
the Nth bad run in a row opens the breaker); it is applied here in SQL, inside the transaction
that finishes the run, so two workers finishing runs of one version at once both count and only
one of them sees the breaker open. An open breaker stays open (and keeps counting) until a
person resets it; the row survives restarts.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Executable, Row, Select, and_, case, insert, select, update

from engine.clock import SYSTEM_CLOCK, Clock
from engine.errors import Conflict, NotFound
from engine.records import Breaker
from engine.store.db import Database
from engine.store.replicas import insert_new
from engine.store.tables import audit_log, breakers

BREAKER_FIELDS = Breaker.field_names()
OPEN, CLOSED = "open", "closed"
#: The audit-log kind of a person's reset.
RESET = "breaker_reset"


def opened_reason(failures: int) -> str:
    """Why a breaker opened: what its row keeps and the breaker gate repeats."""
    return f"{failures} consecutive failed or ineffective runs"


class Breakers:
    def __init__(self, db: Database, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock

    def record(
        self, conn: Connection, playbook: str, version: int, bad: bool, threshold: int, now: datetime
    ) -> str | None:
        """Count one finished run of `playbook@version` in the caller's write transaction; the
        reason text when this run opened the breaker, None otherwise."""
        key = _key(playbook, version)
        conn.execute(_insert_missing(conn, playbook, version))
        failures = conn.execute(
            update(breakers)
            .where(key)
            .values(failures=breakers.c.failures + 1 if bad else 0)
            .returning(breakers.c.failures)
        ).scalar_one()
        if not bad or failures < threshold:
            return None
        reason = opened_reason(failures)
        opened = conn.execute(
            update(breakers)
            .where(and_(key, breakers.c.status == CLOSED))
            .values(status=OPEN, opened_at=now, reason=reason)
        ).rowcount
        return reason if opened == 1 else None

    def open_map(self) -> dict[tuple[str, int], str]:
        """Open breakers, (playbook, version) -> why: what the breaker gate looks at."""
        query = select(breakers.c.playbook, breakers.c.version, breakers.c.reason).where(
            breakers.c.status == OPEN
        )
        with self.db.read() as conn:
            return {(name, int(version)): reason or "" for name, version, reason in conn.execute(query)}

    def get(self, playbook: str, version: int) -> Breaker:
        with self.db.read() as conn:
            row = conn.execute(_columns().where(_key(playbook, version))).first()
        if row is None:
            raise NotFound(f"no breaker for {playbook}@{version} (no run of that version has finished)")
        return _breaker(row)

    def reset(self, playbook: str, version: int, by: str) -> Breaker:
        """Close an open breaker (a person has looked at the playbook); audited under `by`."""
        now = self.clock.now()
        with self.db.write() as conn:
            status = conn.execute(select(breakers.c.status).where(_key(playbook, version))).scalar()
            if status is None:
                raise NotFound(f"no breaker for {playbook}@{version} (no run of that version has finished)")
            if status != OPEN:
                raise Conflict(f"the breaker of {playbook}@{version} is not open: nothing to reset")
            done = conn.execute(
                update(breakers)
                .where(and_(_key(playbook, version), breakers.c.status == OPEN))
                .values(status=CLOSED, failures=0, reset_at=now, reset_by=by)
            ).rowcount
            if done != 1:
                raise Conflict(f"the breaker of {playbook}@{version} was reset by someone else just now")
            conn.execute(
                insert(audit_log).values(
                    at=now,
                    actor=by,
                    kind=RESET,
                    incident_id=None,
                    run_id=None,
                    message=f"breaker of {playbook}@{version} reset by {by}",
                )
            )
        return self.get(playbook, version)

    def list(self) -> builtins.list[Breaker]:
        """Every breaker, open ones first, then by playbook and version."""
        query = _columns().order_by(
            case((breakers.c.status == OPEN, 0), else_=1), breakers.c.playbook, breakers.c.version
        )
        with self.db.read() as conn:
            return [_breaker(row) for row in conn.execute(query)]


def read_open(conn: Connection) -> list[Breaker]:
    """The open breakers by playbook and version, in the caller's read (`suture status`, and every
    gate decision's guard context: the statement is built once)."""
    return [_breaker(row) for row in conn.execute(_OPEN)]


def _key(playbook: str, version: int) -> ColumnElement[bool]:
    return and_(breakers.c.playbook == playbook, breakers.c.version == version)


def _columns() -> Select[Any]:
    return select(*[breakers.c[name] for name in BREAKER_FIELDS])


_OPEN = _columns().where(breakers.c.status == OPEN).order_by(breakers.c.playbook, breakers.c.version)


def _breaker(row: Row[Any]) -> Breaker:
    return Breaker.trusted(dict(zip(BREAKER_FIELDS, row, strict=True)))


def _insert_missing(conn: Connection, playbook: str, version: int) -> Executable:
    """A closed row with no failures unless the version has one (both backends' ON CONFLICT)."""
    return insert_new(conn, breakers, [breakers.c.playbook, breakers.c.version]).values(
        playbook=playbook, version=version, status=CLOSED, failures=0
    )
