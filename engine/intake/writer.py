"""One writer thread owns every intake write, grouping concurrent webhooks into shared commits.

Requests hand it a Submission and wait for the commit that holds it, so concurrent webhooks
share transactions instead of fighting over SQLite's lock (see shared/PERFORMANCE.md: one
writer with grouped commits has the best tail).

Before each write transaction the writer reads the run history the batch's policy gates look
back on; the store then asks the gates (`engine/intake/runs.py`, in memory) for the run of
each incident it opens. After the commit, the writer announces what was stored on the hooks."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime

from sqlalchemy import Connection

from engine.errors import StoreUnavailable
from engine.hooks import NO_HOOKS, Hooks, IncidentOpened, IncidentResolved, RunHeld, RunQueued
from engine.intake.runs import BatchPlanner, BatchReads, Reads, guard_query, history_spans, runnable
from engine.logging import get_logger
from engine.models import ClassifiedAlert, RunStatus, Submission
from engine.policy.guards import NO_RAILS, Rails
from engine.policy.guards import guards as policy_guards
from engine.records import Receipt
from engine.store import Store
from engine.store.ingest import Applied, RunPlanner

log = get_logger("suture.intake")

_Queued = tuple[Submission, "Future[Receipt]", int, int]  # submission, its future, alerts, chars


MAX_BATCH = 256


#: Writer threads on PostgreSQL, which commits transactions side by side (SQLite has one writer
#: at a time, so more threads would only queue on its lock). Batches of one process never hold
#: the same fingerprint at once: each fingerprint's alerts commit in the order they arrived.
POSTGRES_WRITERS = 4


class IntakeFull(StoreUnavailable):
    """Intake already holds as much as it may: the body is refused before it is queued."""


#: What may wait for the writer (queued or in the commit under way), in alerts and in body
#: characters: behind a database that does not commit, further bodies are refused (503) at
#: once instead of piling up in memory. Far above what a storm keeps waiting: senders wait for
#: their answer, so the queue holds at most one body per sender.
MAX_QUEUED_ALERTS = 10_000


MAX_QUEUED_CHARS = 8 * 1024 * 1024


#: Work owed this long without a finished commit: intake calls itself wedged (`/readyz` 503).
WEDGED_SECONDS = 5.0


#: While commits fail, how often the idle writer tries an empty commit to learn it can again,
#: so readiness comes back without waiting for traffic that a failing `/readyz` turned away.
PROBE_SECONDS = 1.0


FULL_LOG_SECONDS = 10.0


class IntakeWriter:
    """The writer thread alone: what an intake helper process runs (the daemon classifies).

    A submission's future goes running when its commit begins: until then the waiting request
    may cancel it (withdraw the body, so its 503 is true) and the writer skips it. The writer
    only ever completes futures it set running, so a late request cannot break it.
    """

    def __init__(
        self,
        store: Store,
        on_runs_queued: Callable[[], None] | None = None,
        hooks: Hooks = NO_HOOKS,
        rails: Rails = NO_RAILS,
    ) -> None:
        self.store = store
        #: Maintenance windows and fleet budgets from config.yaml.
        self.rails = rails
        self._on_runs_queued = on_runs_queued
        self.hooks = hooks
        self._committed: list[Applied] = []  # since the last `after_commit`
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._items: deque[_Queued] = deque()
        self._alerts = 0  # queued or being committed
        self._chars = 0
        self._owed_since: float | None = None  # work waiting and no commit finished since
        self._failure: str | None = None  # the last commit failed, nothing committed since
        self._open = False
        self._stopping = False
        self._full_logged = 0.0
        self._committed_lock = threading.Lock()
        #: Fingerprints of the batches being committed now (with several writers).
        self._inflight: set[str] = set()
        self._threads: list[threading.Thread] = []

    @property
    def writers(self) -> int:
        return 1 if self.store.db.is_sqlite else POSTGRES_WRITERS

    def start(self) -> None:
        with self._lock:
            self._open, self._stopping = True, False
        self._threads = [
            threading.Thread(target=self._run, name=f"suture-intake-writer-{n}", daemon=True)
            for n in range(self.writers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Commit what is queued, then end the threads."""
        if self._threads:
            with self._wake:
                self._open, self._stopping = False, True
                self._wake.notify_all()
            for thread in self._threads:
                thread.join(timeout=10)
            self._threads = []

    def submit(self, submission: Submission) -> Future[Receipt]:
        """Queue for the writer; the future completes once the submission is committed, or at
        once with `IntakeFull` when intake already holds its maximum."""
        future: Future[Receipt] = Future()
        alerts, chars = len(submission.alerts), len(submission.body)
        with self._lock:
            if not self._open:
                problem: StoreUnavailable = StoreUnavailable("intake writer is not running")
            elif self._alerts and (
                self._alerts + alerts > MAX_QUEUED_ALERTS or self._chars + chars > MAX_QUEUED_CHARS
            ):
                problem = IntakeFull(f"intake holds {self._alerts} alerts waiting to be committed")
            else:
                if not self._items:
                    self._wake.notify()  # the writer only ever waits on an empty queue
                self._items.append((submission, future, alerts, chars))
                self._alerts += alerts
                self._chars += chars
                if self._owed_since is None:
                    self._owed_since = time.monotonic()
                return future
        now = time.monotonic()
        if isinstance(problem, IntakeFull) and now - self._full_logged > FULL_LOG_SECONDS:
            self._full_logged = now  # once in a while: a flood sheds thousands a second
            log.warning("intake_full", error=str(problem))
        future.set_exception(problem)
        return future

    def intake_health(self) -> str | None:
        """None while this writer can commit; otherwise why not, in one line (for `/readyz`)."""
        if not self._threads or not all(thread.is_alive() for thread in self._threads):
            return "intake writer is not running"
        with self._lock:
            failure, owed_since, queued = self._failure, self._owed_since, len(self._items)
        if failure is not None:
            return f"intake cannot commit: {failure}"
        if owed_since is not None and (waited := time.monotonic() - owed_since) > WEDGED_SECONDS:
            return f"intake has not committed for {waited:.0f} s ({queued} bodies waiting)"
        return None

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                if not batch:
                    self._probe()
                    continue
                try:
                    self._write(batch)
                finally:
                    self._release(batch)
        finally:
            self._close()

    def _take(self) -> list[_Queued] | None:
        """The next batch: whole, with every future set running; [] to probe; None to stop."""
        with self._wake:
            while True:
                while not self._items:
                    if self._stopping:
                        return None
                    probing = self._failure is not None
                    self._wake.wait(PROBE_SECONDS if probing else None)
                    if probing and not self._items and not self._stopping:
                        return []
                batch = self._pick() if len(self._threads) > 1 else self._first()
                if batch:
                    return batch
                if not self._items:
                    self._owed_since = None
                elif self._inflight:
                    self._wake.wait()  # what is left waits for another writer's fingerprints

    def _first(self) -> list[_Queued]:
        """One writer: the oldest MAX_BATCH submissions still wanted (under the lock)."""
        batch: list[_Queued] = []
        while self._items and len(batch) < MAX_BATCH:
            item = self._items.popleft()
            if item[1].set_running_or_notify_cancel():
                batch.append(item)
            else:  # withdrawn by its request
                self._alerts -= item[2]
                self._chars -= item[3]
        return batch

    def _pick(self) -> list[_Queued]:
        """Several writers: the oldest submissions that share no fingerprint with a batch being
        committed, nor with an older submission left waiting, so that each fingerprint's alerts
        commit in arrival order (a resolution never overtakes its firing). Under the lock."""
        batch: list[_Queued] = []
        blocked = set(self._inflight)
        taken: set[str] = set()
        kept: deque[_Queued] = deque()
        while self._items:
            item = self._items.popleft()
            fingerprints = {c.alert.fingerprint for c in item[0].alerts}
            if len(batch) >= MAX_BATCH or not fingerprints.isdisjoint(blocked):
                kept.append(item)
                blocked |= fingerprints
            elif item[1].set_running_or_notify_cancel():
                batch.append(item)
                taken |= fingerprints
            else:
                self._alerts -= item[2]
                self._chars -= item[3]
        self._items = kept
        self._inflight |= taken
        return batch

    def _release(self, batch: list[_Queued]) -> None:
        """The batch is committed (or refused): its fingerprints are free for the other writers."""
        if len(self._threads) < 2:
            return
        with self._wake:
            for item in batch:
                self._inflight.difference_update(c.alert.fingerprint for c in item[0].alerts)
            if self._items:
                self._wake.notify_all()

    def _write(self, batch: list[_Queued]) -> None:
        receipts: list[Receipt] = []
        failure: str | None = None
        try:
            outcomes = self.commit([item[0] for item in batch])
            for (_, future, _, _), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Receipt):
                    receipts.append(outcome)
                    future.set_result(outcome)
                else:
                    failure = failure or str(outcome)
                    future.set_exception(outcome)
        except Exception as exc:  # noqa: BLE001 - the writer outlives anything a commit does
            log.exception("intake_writer_error", error=str(exc))
            failure = f"intake writer error: {exc}"
            for _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(failure))
        self._settle(batch, None if receipts else failure)
        if receipts:
            try:
                self.after_commit(receipts)
            except Exception as exc:  # noqa: BLE001 - stored and answered already; keep writing
                log.exception("intake_after_commit_failed", error=str(exc))

    def _probe(self) -> None:
        """An empty commit while commits fail: does the database take writes again?"""
        try:
            self.store.ingest([], _no_history)
        except Exception as exc:  # noqa: BLE001 - any failure just means: not yet
            self._settle([], str(exc) or type(exc).__name__)
        else:
            self._settle([], None)

    def _settle(self, batch: list[_Queued], failure: str | None) -> None:
        with self._lock:
            for item in batch:
                self._alerts -= item[2]
                self._chars -= item[3]
            self._owed_since = time.monotonic() if self._items else None
            recovered = self._failure is not None and failure is None
            self._failure = failure
        if recovered:
            log.info("intake_commits_again")

    def _close(self) -> None:
        """The thread is ending: refuse new bodies and fail those nobody will commit."""
        with self._lock:
            stopping, self._open = self._stopping, False
            left, self._items = list(self._items), deque()
            self._alerts = self._chars = 0
            self._owed_since = None
        if not stopping:
            log.critical("intake_writer_died")
        for _, future, _, _ in left:
            if future.set_running_or_notify_cancel():
                future.set_exception(StoreUnavailable("intake writer stopped"))

    def commit(self, batch: list[Submission]) -> list[Receipt | StoreUnavailable]:
        """Store the batch in one transaction: a receipt per submission, or why it was not stored."""
        try:
            applied = self.store.ingest(batch, self._planner(batch))
        except StoreUnavailable as exc:
            # The database, not a submission: retrying one by one would only wait again.
            log.error("intake_write_failed", error=str(exc), bodies=len(batch))
            return [exc] * len(batch)
        except Exception as exc:  # noqa: BLE001 - every sender must hear the outcome
            if len(batch) > 1:
                # One poisoned submission must not fail its neighbours: retry one by one.
                return [outcome for submission in batch for outcome in self.commit([submission])]
            log.error("intake_write_failed", error=str(exc), source=batch[0].source)
            return [StoreUnavailable(f"could not store alerts: {exc}")]
        with self._committed_lock:
            self._committed.append(applied)
        return list(applied.receipts)

    def _planner(self, batch: list[Submission]) -> Callable[[Connection], RunPlanner]:
        """The gates' view of this batch, read in its write transaction when its first incident
        with a run opens (a batch that only counts repeats reads nothing): the switch, silences
        and breakers, the code-and-target run history, storm and flapping counts and budget
        windows, each only if some alert of the batch may need it. Read under the write, the
        decision and what it writes are one step, across replicas too (`Store.hold_gates`); the
        worker still asks the gates again when it claims (`chain.recheck`)."""
        items = runnable(batch)
        if not items:
            return _no_history

        def planner(conn: Connection) -> RunPlanner:
            return BatchPlanner({}, reads=BatchReads(lambda: self._read_for(conn, batch, items)))

        return planner

    def _read_for(self, conn: Connection, batch: list[Submission], items: list[ClassifiedAlert]) -> Reads:
        query, spans = guard_query(items, self.rails.budget), history_spans(batch)
        if spans or not query.empty:
            # Batches whose gates count runs or openings (other writers', other replicas') take
            # turns from here to their commit, so each counts what the others queued (no-op on
            # SQLite, where writers take turns anyway). Gates that count nothing need no turn.
            self.store.hold_gates(conn)
        context = self.store.guard_context(conn)
        guards = policy_guards(context.paused, context.silences, context.open_breakers, self.rails)
        facts = self.store.guard_facts(query, conn)
        history: Mapping[tuple[str, str], Sequence[datetime]] = {}
        if spans:
            since = self.store.clock.now() - max(spans.values())
            history = self.store.recent_runs_in(conn, spans.keys(), since)
        return history, guards, facts

    def after_commit(self, receipts: list[Receipt]) -> list[Applied]:
        """Log what was stored, wake the workers if runs were queued, announce it on the hooks;
        what the batches committed since the last call did, for a caller that reads it (replay)."""
        for receipt in receipts:
            log.info(
                "event_stored",
                event_id=receipt.event_id,
                alerts=receipt.alerts,
                opened=receipt.opened,
                resolved=receipt.resolved,
                runs_queued=receipt.runs_queued,
            )
        if self._on_runs_queued is not None and any(r.runs_queued for r in receipts):
            self._on_runs_queued()
        with self._committed_lock:
            committed, self._committed = self._committed, []
        announce(self.hooks, committed)
        return committed


def _no_history(_conn: Connection) -> RunPlanner:
    """A planner for a batch whose codes limit nothing: no history to read."""
    return BatchPlanner({})


def announce(hooks: Hooks, committed: list[Applied]) -> None:
    """The hooks' events of committed batches; built only for events someone listens to."""
    if hooks.wants(IncidentOpened):
        for applied in committed:
            for opened in applied.opened():
                hooks.emit(IncidentOpened(opened.incident_id, opened.code, opened.severity, opened.target))
    if hooks.wants(IncidentResolved):
        for applied in committed:
            for receipt in applied.receipts:
                for incident_id in receipt.resolved:
                    hooks.emit(IncidentResolved(incident_id, "alert_resolved"))
    if hooks.wants(RunQueued) or hooks.wants(RunHeld):
        for applied in committed:
            for run in applied.runs:
                if run.id is None:
                    continue
                if run.status is RunStatus.queued:
                    hooks.emit(RunQueued(run.id, run.incident_id, run.playbook, run.version))
                else:
                    reason = run.reason or run.status.value
                    gate = run.gate or ("approval" if run.status is RunStatus.awaiting_approval else "")
                    hooks.emit(RunHeld(run.id, run.incident_id, run.playbook, reason, run.status.value, gate))
