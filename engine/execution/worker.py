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
from typing import Any

import structlog
import yaml

from engine import metrics
from engine.catalog.loader import Catalog
from engine.config import Config
from engine.errors import StoreUnavailable
from engine.execution.runner import Runner
from engine.models import Playbook, RunStatus
from engine.store import Store
from engine.templating import Renderer

log = structlog.get_logger("suture.worker")

PERSIST_ATTEMPTS = 5


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


def _persist(write: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Write a run's history, riding out a busy database: what a step did must not be lost."""
    for attempt in range(PERSIST_ATTEMPTS):
        try:
            write(*args, **kwargs)
            return
        except StoreUnavailable:
            if attempt == PERSIST_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


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
    ) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        self.runner = Runner(config, renderer)
        self._paused = paused
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
        with self._cond:
            self._pending += 1
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

    def _record(self, run_id: int, step: dict[str, Any]) -> None:
        _persist(self.store.record_step, run_id, step)
        metrics.STEP_SECONDS.labels(step["action"]).observe(step["duration_ms"] / 1000)

    def execute(self, run: dict[str, Any], worker: str) -> RunStatus:
        """Execute one claimed run to its final status and store every step."""
        run_id = run["id"]
        bound = log.bind(run_id=run_id, incident_id=run["incident_id"], worker=worker)
        bound.info("run_claimed", playbook=run["playbook"], version=run["playbook_version"])
        metrics.WORKERS_BUSY.inc()
        try:
            try:
                playbook = self.resolver.get(run["playbook"], run["playbook_version"])
            except Exception as exc:  # noqa: BLE001 - a missing playbook must fail the run, not the worker
                self.store.finish_run(
                    run_id, RunStatus.failed, f"cannot load playbook: {exc}", remediated=False
                )
                return RunStatus.failed
            outcome = self.runner.execute(
                playbook,
                run["context"],
                dry_run=bool(run["dry_run"]),
                record=lambda step: self._record(run_id, step),
                patterns=self.resolver.patterns(run["context"]),
            )
            _persist(
                self.store.finish_run, run_id, outcome.status, outcome.error, remediated=outcome.remediated
            )
            metrics.RUNS_FINISHED.labels(outcome.status.value).inc()
            bound.info("run_finished", status=outcome.status.value, error=outcome.error)
            return outcome.status
        except Exception:  # noqa: BLE001 - a bug must fail this run, never kill the worker thread
            bound.exception("run_crashed")
            try:
                self.store.finish_run(
                    run_id, RunStatus.failed, "internal error while executing", remediated=False
                )
            except Exception:  # noqa: BLE001 - recovery at next start will catch it
                pass
            return RunStatus.failed
        finally:
            metrics.WORKERS_BUSY.dec()
