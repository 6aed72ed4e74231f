"""Retention: empty raw webhook bodies and step output past their age, a bounded batch at a time.

Rows are never deleted: alerts reference their event, and runs, incidents and statistics read
step results for status, exit code and timing. Only the bulky parts go: an event's `body` and
a step's `stdout`/`stderr` become ''. Each call is one short transaction over at most `batch`
rows found through a partial index of the rows not emptied yet (migration 0005), because on
SQLite it holds the write lock intake needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, Table, and_, literal_column, or_, select, update

from engine.store.db import Database
from engine.store.tables import events, step_results

Kind = Literal["events", "step_output"]

#: Spelled as the partial indexes' predicates are (a bound parameter would keep SQLite and
#: PostgreSQL's generic plans from using them).
_EMPTY: ColumnElement[str] = literal_column("''")


@dataclass(frozen=True)
class _Prunable:
    table: Table
    #: When a row was made: what its age is counted from, and the order batches go in.
    born: ColumnElement[Any]
    #: Rows that still hold something to empty (the predicate of their partial index).
    unpruned: ColumnElement[bool]
    emptied: dict[str, str]


_KINDS: dict[Kind, _Prunable] = {
    "events": _Prunable(events, events.c.received_at, events.c.body != _EMPTY, {"body": ""}),
    "step_output": _Prunable(
        step_results,
        step_results.c.started_at,
        or_(step_results.c.stdout != _EMPTY, step_results.c.stderr != _EMPTY),
        {"stdout": "", "stderr": ""},
    ),
}


def batch_query(kind: Kind, before: datetime, batch: int) -> Select[tuple[int]]:
    """The ids of the next batch to empty, oldest first (its plan is checked by the tests)."""
    found = _KINDS[kind]
    return (
        select(found.table.c.id)
        .where(and_(found.born < before, found.unpruned))
        .order_by(found.born)
        .limit(batch)
    )


class Retention:
    def __init__(self, db: Database) -> None:
        self.db = db

    def prune_events(self, before: datetime, batch: int = 1000) -> int:
        """Empty the raw body of up to `batch` events received before `before`, oldest first;
        returns how many (fewer than `batch`: nothing older is left)."""
        return self._prune("events", before, batch)

    def prune_step_output(self, before: datetime, batch: int = 1000) -> int:
        """Empty stdout and stderr of up to `batch` step results started before `before`, oldest
        first; status, exit code, params and timing stay. Returns how many."""
        return self._prune("step_output", before, batch)

    def _prune(self, kind: Kind, before: datetime, batch: int) -> int:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        found = _KINDS[kind]
        with self.db.write() as conn:
            ids = list(conn.execute(batch_query(kind, before, batch)).scalars())
            if not ids:
                return 0
            # `unpruned` again: another replica may have emptied some of them first.
            done = conn.execute(
                update(found.table)
                .where(and_(found.table.c.id.in_(ids), found.unpruned))
                .values(**found.emptied)
            ).rowcount
            return int(done)
