"""The store a replay writes into: the live `Store`, with two of the gates' reads answered from
memory, because in a scratch store nothing but the replay's own commits can change them.

- The run history (`recent_runs_in`): the only runs are those the replay's batches queued, so
  each committed batch's runs are remembered as the query would find them (their incident's
  code and target, queued at the batch's time, skipped and shadow runs left out), for as long
  as the longest look-back of the catalog. Reading it back from the table was a fifth of a
  replay, as each batch's query returns every run of its codes within the look-back.
- The guard context (`guard_context`): nothing in a replay pauses automation or opens a
  breaker, and the silences are the period's, copied before the first batch, so the context read
  once holds until the clock passes the next time a silence starts or ends.

Everything else (dedup lookups, storm and flapping counts, budgets, every write) is the live
store's, and every decision is the live intake's, made of these reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import OperationalError

from engine.clock import Clock
from engine.collector import collector_paused
from engine.errors import StoreUnavailable
from engine.models import RunStatus, Submission
from engine.store import Store
from engine.store.db import Database
from engine.store.ingest import Applied, Keep, NewRun, RunPlanner, apply_batch
from engine.store.store import GuardContext
from engine.store.tables import events, incidents

RunKey = tuple[str, str]  # (code, target)

#: Batches a scratch store commits together: a transaction per batch was a tenth of a replay, and
#: one for the whole replay would keep every page it changed in the in-memory journal.
BATCHES_PER_COMMIT = 500

#: What the scratch store writes besides what the replay's dedup, gates and report read back:
#: nothing (no alert rows but those dedup reads, no timeline, no label or context documents, and
#: one event row that every body counts on).
SCRATCH = Keep(alerts=False, audit=False, documents=False)


class RecentRuns:
    """When the replay's runs were queued, by code and target, oldest first, for `lookback`."""

    def __init__(self, lookback: timedelta) -> None:
        self.lookback = lookback
        self._by_code: dict[str, dict[str, deque[datetime]]] = {}
        self._order: deque[tuple[datetime, str, str]] = deque()

    def add(self, key: RunKey, queued_at: datetime) -> None:
        code, target = key
        self._by_code.setdefault(code, {}).setdefault(target, deque()).append(queued_at)
        self._order.append((queued_at, code, target))

    def forget_before(self, now: datetime) -> None:
        """Let go of the runs no look-back reaches any more: what is kept stays bounded."""
        oldest = now - self.lookback
        order, by_code = self._order, self._by_code
        while order and order[0][0] < oldest:
            _, code, target = order.popleft()
            targets = by_code[code]
            times = targets[target]
            times.popleft()
            if not times:
                del targets[target]

    def since(self, codes: Collection[str], since: datetime) -> Mapping[RunKey, Sequence[datetime]]:
        """What `recent_runs(conn, codes, since)` reads from the table, for these runs: worked out
        for the keys the gates ask for, not for every target of the codes."""
        return _RunsSince(self._by_code, frozenset(codes), since)


class _RunsSince(Mapping[RunKey, Sequence[datetime]]):
    """The runs of `codes` queued at `since` or later, by code and target, read on demand."""

    def __init__(
        self, by_code: dict[str, dict[str, deque[datetime]]], codes: frozenset[str], since: datetime
    ) -> None:
        self._by_code = by_code
        self._codes = codes
        self._since = since

    def get(self, key: RunKey, default: Any = None) -> Any:
        """The planner's one read: `history.get((code, target), ())`."""
        code, target = key
        times = self._by_code.get(code, {}).get(target) if code in self._codes else None
        recent = [at for at in times if at >= self._since] if times else None
        return recent or default

    def __getitem__(self, key: RunKey) -> list[datetime]:
        recent: list[datetime] | None = self.get(key)
        if recent is None:
            raise KeyError(key)
        return recent

    def __iter__(self) -> Iterator[RunKey]:
        for code in self._codes:
            for target in self._by_code.get(code, {}):
                if (code, target) in self:
                    yield (code, target)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: Indexes of the live schema that no read of a replay uses (the dedup lookups, the gates' counts,
#: the final read of each incident's first run use others): every row the replay writes would
#: update them for nothing, a third of what its inserts cost SQLite. Dropped, without IF EXISTS,
#: so that one renamed in the schema fails the replay's tests instead of staying behind.
UNREAD_INDEXES = (
    "ix_alerts_received_at",
    "ix_alerts_incident_id",
    "ix_incidents_status_opened_at",
    "ix_incidents_opened_at",
    "ix_incidents_code_target_opened_at",
    "ix_runs_status_queued_at",
    "ix_runs_playbook_queued_at",
    "ix_runs_queued",
    "ix_runs_undecided",
    "ix_audit_log_at",
    "ix_audit_log_incident_id_at",
    "ix_audit_log_run_id",
    "ix_events_unpruned",
)


def drop_unread_indexes(db: Database) -> None:
    """Before the first batch: the scratch store keeps only the indexes a replay reads through."""
    with db.write() as conn:
        for name in UNREAD_INDEXES:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')


class ScratchStore(Store):
    """A replay's scratch store. `lookback`: the longest run history any code of the catalog
    reads; `silences`: when each silence copied into it starts and ends."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        lookback: timedelta,
        silences: Iterable[tuple[datetime, datetime]] = (),
    ) -> None:
        super().__init__(db, clock=clock)
        self.runs = RecentRuns(lookback)
        self._changes = sorted({at for pair in silences for at in pair})
        self._context: GuardContext | None = None
        #: The times the cached context holds for: from its read until the next silence change.
        self._holds: tuple[datetime, datetime | None] = (clock.now(), None)
        #: The write transaction the batches share until the next commit.
        self._open: Connection | None = None
        self._batches = 0
        with db.write() as conn:
            row = insert(events).values(source="replay", received_at=clock.now(), body="", alert_count=0)
            event = conn.execute(row.returning(events.c.id)).scalar_one()
        self.keep = replace(SCRATCH, event=int(event))

    def ingest(self, batch: list[Submission], plan: Callable[[Connection], RunPlanner]) -> Applied:
        """`Store.ingest` writing only what the replay reads back (`self.keep`), into the
        transaction the batches share. One attempt: the race it retries is between PostgreSQL
        replicas, and a scratch store has one writer; a batch that fails ends the replay, so no
        batch needs a transaction of its own."""
        now = self.clock.now()
        with collector_paused(), self._unavailable_as_store_error():
            conn = self._transaction()
            applied = apply_batch(conn, batch, now, plan(conn), self.notify, self.keep)
            self._remember(applied, now)
        self._batches += 1
        if self._batches % BATCHES_PER_COMMIT == 0:
            self.commit()
        return applied

    def commit(self) -> None:
        """Commit what the batches wrote since the last commit; before any read of its own."""
        if self._open is not None:
            with self._unavailable_as_store_error():
                self._open.commit()
            self.close()

    def close(self) -> None:
        """Let go of the shared transaction, uncommitted (a replay that stopped early)."""
        if self._open is not None:
            conn, self._open = self._open, None
            conn.close()

    def _transaction(self) -> Connection:
        if self._open is None:
            conn = self.db.engine.connect().execution_options(suture_write=True)
            conn.begin()
            self._open = conn
        return self._open

    @contextmanager
    def _unavailable_as_store_error(self) -> Iterator[None]:
        """A failed batch or commit: the shared transaction is rolled back and the failure is
        `StoreUnavailable`, as from `Database.write`, so that nothing is retried on top of a
        transaction that holds half a batch (the replay stops at it)."""
        try:
            yield
        except Exception as exc:
            self.close()
            detail = exc.orig if isinstance(exc, OperationalError) else exc
            raise StoreUnavailable(f"scratch store: {detail}") from exc

    def recent_runs_in(
        self, conn: Connection, codes: Collection[str], since: datetime
    ) -> Mapping[RunKey, Sequence[datetime]]:
        return self.runs.since(codes, since)

    def guard_context(self, conn: Connection | None = None) -> GuardContext:
        now = self.clock.now()
        start, end = self._holds
        if self._context is None or now < start or (end is not None and now >= end):
            self._context = super().guard_context(conn or self._transaction())
            self._holds = (now, next((at for at in self._changes if at > now), None))
        return self._context

    def _remember(self, applied: Applied, now: datetime) -> None:
        """The batch's runs that the run history counts, under their incident's code and target."""
        counted = [run for run in applied.runs if _counted(run)]
        if counted:
            keys: dict[int | None, RunKey] = {
                opened.incident_id: (opened.code, opened.target) for opened in applied.opened()
            }
            earlier = {run.incident_id for run in counted} - keys.keys()
            if earlier:
                keys.update(self._keys_of(earlier))
            for run in counted:
                self.runs.add(keys[run.incident_id], now)
        self.runs.forget_before(now)

    def _keys_of(self, incident_ids: Collection[int | None]) -> dict[int | None, RunKey]:
        """Code and target of incidents opened by earlier batches (a run asked for later, at its
        `policy.min_occurrences`-th delivery)."""
        query = select(incidents.c.id, incidents.c.code, incidents.c.target).where(
            incidents.c.id.in_(sorted(i for i in incident_ids if i is not None))
        )
        rows = self._transaction().execute(query)
        return {row.id: (row.code, row.target) for row in rows}


def _counted(run: NewRun) -> bool:
    """Whether the run history query finds this run: written, neither skipped nor a shadow."""
    return run.id is not None and run.status is not RunStatus.skipped and not run.shadow
