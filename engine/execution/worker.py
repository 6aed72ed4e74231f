"""A bounded pool of threads that claim queued runs and execute them.

Workers sleep on a condition, not a polling loop: intake wakes one when it queues runs, and a
worker that claims a run wakes the next, so a burst fans out without every thread racing
for the write lock. The poll interval is only a safety net for runs queued elsewhere.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import yaml

from engine.catalog.loader import Catalog
from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config
from engine.errors import LeaseLost, StoreUnavailable
from engine.execution.actions import Registry
from engine.execution.lease import LeaseKeeper
from engine.execution.rechecks import RunChecks
from engine.execution.runner import Runner
from engine.hooks import NO_HOOKS, Hooks, RunFinished, RunHeld, RunStarted, WorkersBusy
from engine.logging import get_logger
from engine.models import Lease, Playbook, Policy, RunStatus
from engine.policy.guards import NO_RAILS, Rails
from engine.records import ClaimedRun
from engine.store import Store
from engine.templating import Renderer

log = get_logger("suture.worker")

PERSIST_ATTEMPTS = 5

T = TypeVar("T")


@dataclass(frozen=True)
class Incarnation:
    """One start of one daemon: host, pid, and a boot id no restart repeats.

    A pid alone repeats: in a container the daemon is PID 1 after every restart, so a run held
    by "PID 1" may be a dead predecessor's. Its workers write `host:pid:boot:thread` into
    `runs.worker`; rows from before boot ids read `host:pid:thread` and parse with `boot=None`.
    """

    host: str
    pid: int
    boot: str | None

    @classmethod
    def new(cls) -> Incarnation:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8))

    @classmethod
    def parse(cls, worker: str | None) -> Incarnation | None:
        """Who wrote `runs.worker`; None when it names no process (`cli`, empty)."""
        parts = (worker or "").split(":")
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2] if len(parts) >= 4 else None)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.boot}"


class PlaybookResolver:
    """A playbook version: from the catalog in force, or from the immutable stored body."""

    def __init__(self, store: Store, catalog: Callable[[], Catalog]) -> None:
        self._store = store
        self._catalog = catalog
        self._stored = lru_cache(maxsize=256)(self._from_store)

    def get(self, name: str, version: int) -> Playbook:
        entry = self._catalog().playbooks.get((name, version))
        return entry.playbook if entry is not None else self._stored(name, version)

    def _from_store(self, name: str, version: int) -> Playbook:
        return Playbook.model_validate(yaml.safe_load(self._store.playbook_body(name, version)))

    def patterns(self, context: dict[str, Any]) -> dict[str, str]:
        """The match patterns of the run's code in the catalog in force (see Runner.execute)."""
        code = (context.get("code") or {}).get("code")
        return self._catalog().match_patterns(code) if code else {}

    def policy(self, context: dict[str, Any]) -> Policy | None:
        """The run's code's policy in the catalog in force (None: the code is gone or limits nothing)."""
        code = (context.get("code") or {}).get("code")
        for entry in self._catalog().codes if code else ():
            if entry.code.code == code:
                return entry.code.policy
        return None


def _persist(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Write a run's history (or read what it needs), riding out a busy database: what a step did
    must not be lost, and a claimed run must not fail for one locked read."""
    for attempt in range(PERSIST_ATTEMPTS - 1):
        try:
            return call(*args, **kwargs)
        except StoreUnavailable:
            time.sleep(0.2 * (attempt + 1))
    return call(*args, **kwargs)


class WorkerPool:
    def __init__(
        self,
        config: Config,
        store: Store,
        resolver: PlaybookResolver,
        renderer: Renderer,
        *,
        paused: Callable[[], bool] = lambda: False,
        incarnation: Incarnation | None = None,
        hooks: Hooks = NO_HOOKS,
        clock: Clock = SYSTEM_CLOCK,
        actions: Registry | None = None,
        rails: Rails = NO_RAILS,
    ) -> None:
        self.config = config
        self.rails = rails
        self.store = store
        self.resolver = resolver
        self.hooks = hooks
        self.clock = clock
        self.runner = Runner(config, renderer, actions=actions, hooks=hooks, clock=clock)
        self._paused = paused
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.incarnation = incarnation or Incarnation.new()
        self.name = str(self.incarnation)

    def start(self) -> None:
        for n in range(self.config.workers.concurrency):
            thread = threading.Thread(
                target=self._loop, args=(f"{self.name}:{n}",), name=f"suture-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()

    def wake(self) -> None:
        # Capped: a worker that claims a run wakes the next, so a burst of wake-ups (one per
        # replica's commit, on PostgreSQL) need not queue more than one look per worker.
        with self._cond:
            self._pending = min(self._pending + 1, self.config.workers.concurrency)
            self._cond.notify()

    def _sleep(self) -> None:
        with self._cond:
            if self._pending == 0 and not self._stopping:
                self._cond.wait(self.config.workers.poll_interval.total_seconds())
            self._pending = max(0, self._pending - 1)

    def _loop(self, worker: str) -> None:
        while not self._stopping:
            try:
                # Both read the database: an outage must cost a poll, never the worker thread.
                run = None if self._paused() else self.store.claim_run(worker)
            except StoreUnavailable as exc:
                log.warning("claim_failed", worker=worker, error=str(exc))
                run = None
            if run is None:
                self._sleep()
                continue
            self.wake()  # there may be more: let the next idle worker look
            self.execute(run, worker)

    def _busy_by(self, change: int) -> None:
        # Announced under the lock: two workers' counts must not reach a gauge out of order.
        with self._busy_lock:
            self._busy += change
            self.hooks.emit(WorkersBusy(self._busy))

    def execute(self, run: ClaimedRun, worker: str) -> RunStatus:
        """Execute one claimed run to its final status and store every step.

        Announces RunStarted, then RunFinished once the final status is stored (not when storing
        it failed: recovery decides that run later), and WorkersBusy on the way in and out.
        """
        run_id, name, version = run.id, run.playbook, run.playbook_version
        bound = log.bind(run_id=run_id, incident_id=run.incident_id, worker=worker)
        bound.info("run_claimed", playbook=name, version=version)
        began = self.clock.monotonic()
        self._busy_by(+1)
        self.hooks.emit(RunStarted(run_id, name, version))

        def finished(status: RunStatus) -> RunStatus:
            seconds = self.clock.monotonic() - began
            self.hooks.emit(RunFinished(run_id, name, version, status.value, seconds))
            return status

        lease = Lease(run_id, worker, run.attempt)
        try:
            with LeaseKeeper(self.store, lease, self.clock) as keeper:
                return finished(self._execute(run, lease, keeper, bound))
        except LeaseLost as exc:
            # Another replica took the run back: whatever this one did is not the run's any more.
            bound.warning("lease_lost", attempt=run.attempt, error=str(exc))
            return RunStatus.interrupted
        except Exception:  # noqa: BLE001 - a bug must fail this run, never kill the worker thread
            bound.exception("run_crashed")
            try:
                self.store.finish_run(
                    run_id, RunStatus.failed, "internal error while executing", remediated=False, lease=lease
                )
            except Exception:  # noqa: BLE001 - recovery (after the lease) will catch it
                return RunStatus.failed
            return finished(RunStatus.failed)
        finally:
            self._busy_by(-1)

    def _execute(self, run: ClaimedRun, lease: Lease, keeper: LeaseKeeper, bound: Any) -> RunStatus:
        """The run under its lease: every write is fenced by it (LeaseLost ends the run here)."""
        run_id, name, version = run.id, run.playbook, run.playbook_version
        policy = self.resolver.policy(run.context)
        checks = RunChecks(self.store, self.rails, self.clock, run, policy)
        # A shadow run executes nothing: no gate has anything to hold it back from.
        if not run.shadow and (hold := _persist(checks.at_claim)) is not None:
            held, skipped = hold.reason, RunStatus.skipped
            _persist(self.store.finish_run, run_id, skipped, held, remediated=False, reason=held, lease=lease)
            bound.info("run_held", reason=held, gate=hold.gate)
            self.hooks.emit(RunHeld(run_id, run.incident_id, name, held, gate=hold.gate))
            return RunStatus.skipped
        try:
            playbook = self.resolver.get(name, version)
        except Exception as exc:  # noqa: BLE001 - a missing playbook must fail the run, not the worker
            message = f"cannot load playbook: {exc}"
            self.store.finish_run(run_id, RunStatus.failed, message, remediated=False, lease=lease)
            return RunStatus.failed
        gated = checks.applies and not run.shadow

        def proceed() -> str | None:
            """Before each step after the first: the lease first, then the gates' recheck."""
            return keeper.lost() or (_persist(checks.before_step) if gated else None)

        outcome = self.runner.execute(
            playbook,
            run.context,
            dry_run=bool(run.dry_run),
            record=lambda step: _persist(self.store.record_step, run_id, step, lease),
            patterns=self.resolver.patterns(run.context),
            run_id=run_id,
            proceed=proceed,
        )
        cancelled = outcome.status is RunStatus.cancelled
        counts = policy is not None and policy.breaker is not None and not run.dry_run and not cancelled
        _persist(
            self.store.finish_run,
            run_id,
            outcome.status,
            outcome.error,
            remediated=outcome.remediated,
            reason=outcome.error if cancelled else None,
            breaker=policy.breaker.failures if counts and policy and policy.breaker else None,
            lease=lease,
        )
        # A run that did not fix anything is what on-call greps the log for.
        fine = outcome.status in (RunStatus.succeeded, RunStatus.cancelled)
        level = bound.info if fine else bound.warning
        level("run_finished", status=outcome.status.value, error=outcome.error)
        return outcome.status
