"""`suture serve`: wire store, catalog, intake, workers, scheduler and the HTTP API together."""

from __future__ import annotations

import gc
import signal
import socket
import threading
from datetime import timedelta
from typing import Any

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import make_url

from engine import metrics
from engine.analytics import count_hours
from engine.catalog.loader import Catalog, load_catalog
from engine.catalog.versions import stored_versions
from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config
from engine.errors import CatalogError, ConfigError
from engine.execution.recovery import recover_runs
from engine.execution.verdicts import RunVerdicts
from engine.execution.worker import Incarnation, PlaybookResolver, WorkerPool
from engine.hooks import CatalogReloadFailed, Hooks, IncidentResolved
from engine.intake.classify import CatalogView, Intake
from engine.intake.service import intake_health, start_helpers
from engine.logging import get_logger
from engine.models import PAUSED_KEY, Code, Policy
from engine.notify.escalation import DeadlineCheck
from engine.notify.service import build_notifier
from engine.policy.guards import Rails
from engine.scheduler import PruneJob, Turns, schedule_polls
from engine.store import Store, open_database
from engine.store.catalog_history import CATALOG_RELOAD_KEY
from engine.store.db import sqlite_file
from engine.store.gauges import read_gauges
from engine.store.history import History
from engine.store.retention import Retention
from engine.store.wakeups import RunsQueuedListener
from engine.templating import Renderer
from engine.web.api import Services, create_asgi

log = get_logger("suture.daemon")

#: How often the hours stats reads whole are brought up to date.
COUNT_HOURS_EVERY_S = 300
#: How long after start the heap is collected and frozen (see `Daemon.start`).
SETTLE_HEAP_AFTER_S = 1.0


def _listen(host: str, port: int) -> socket.socket:
    """The daemon's listening socket, bound before it starts anything and before it says `serving`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        log.error("listen_failed", host=host, port=port, error=exc.strerror or str(exc))
        raise ConfigError(
            f"server: cannot listen on {host}:{port}: {exc.strerror or exc}"
            " (another process holds it? change server.port)"
        ) from None
    listener.listen(2048)
    return listener


def _settle_heap() -> None:
    gc.collect()
    gc.freeze()


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def load_checked_catalog(config: Config, store: Store | None) -> Catalog:
    """The catalog, cross-checked against the playbook versions already stored."""
    stored = store.stored_playbook_hashes() if store is not None else None
    return load_catalog(config.codes_dir, config.playbooks_dir, stored)


class Daemon:
    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        self.hooks = Hooks()
        metrics.install(self.hooks)
        self.db = open_database(
            config.database_url, upgrade="if_behind", sqlite_synchronous=config.database.sqlite_synchronous
        )
        self.store = Store(self.db, config.heard_events(), clock=clock, lease=config.workers.lease)
        metrics.watch_store(lambda: read_gauges(self.db, self.clock.now()))
        try:
            catalog = load_checked_catalog(config, self.store)
        except CatalogError as exc:
            self._record_reload("refused", len(exc.problems), str(exc))
            raise
        self.store.sync_catalog(*stored_versions(catalog))
        self._record_reload("ok")
        self.renderer = Renderer(config.secret_values())
        self.resolver = PlaybookResolver(self.store, lambda: self.intake.view.catalog)
        self.incarnation = Incarnation.new()
        rails = Rails.of(config)
        self.pool = WorkerPool(
            config,
            self.store,
            self.resolver,
            self.renderer,
            paused=lambda: bool(self.store.get_state(PAUSED_KEY)),
            incarnation=self.incarnation,
            hooks=self.hooks,
            clock=self.clock,
            rails=rails,
        )
        self.intake = Intake(
            self.store,
            CatalogView.of(catalog, config.escalation),
            on_runs_queued=self.pool.wake,
            hooks=self.hooks,
            rails=rails,
        )
        self.notifier = build_notifier(config, self.store, self._code, self.clock, self.hooks)
        policy_of = self._policy
        self.verdicts = RunVerdicts(self.store, policy_of, self.clock)
        self.deadlines = DeadlineCheck(
            self.store,
            config.escalation.repeat,
            policy_of,
            clock=self.clock,
            hooks=self.hooks,
            wake=self.notifier.wake,
        )
        self.prune = PruneJob(Retention(self.db), config.retention, clock=self.clock)
        # Helpers need a database other processes can open: not an in-memory SQLite.
        shared = not (self.db.is_sqlite and sqlite_file(self.db.url) is None)
        self.helpers = start_helpers(config, self.hooks, shared_database=shared)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        # PostgreSQL: another replica's queued runs wake this one's workers at once.
        self.listener = None if self.db.is_sqlite else RunsQueuedListener(self.db.engine.url, self.pool.wake)
        self._ready = threading.Event()
        self._settle: threading.Timer | None = None
        self._reload_lock = threading.Lock()

    def _policy(self, code: str) -> Policy | None:
        found = self._code(code)
        return found.policy if found is not None else None

    def _code(self, code: str) -> Code | None:
        """A code of the catalog in force (a reload swaps it)."""
        return self.intake.view.catalog.find_code(code)

    def count_hours(self) -> int:
        """Keep the past hours stats reads counted (engine.store.buckets), with the windows in force."""
        codes = {entry.code.code: entry.code for entry in self.intake.view.catalog.codes}
        return count_hours(History(self.db), codes, self.clock.now())

    def recover(self) -> dict[str, list[int]]:
        """Runs a dead daemon left `running` are re-queued (idempotent) or marked interrupted."""
        return recover_runs(self.store, self.resolver.get, self.incarnation, self.clock.now())

    def reload(self) -> bool:
        """SIGHUP: swap in the new catalog if it is valid and stored, keep the old one otherwise.

        Runs in a thread of its own: a failure nobody foresaw (the database locked, a loader bug)
        is logged as `catalog_reload_failed` instead of dying with the thread unnoticed.
        """
        with self._reload_lock:
            try:
                catalog = load_checked_catalog(self.config, self.store)
                self.store.sync_catalog(*stored_versions(catalog))
            except CatalogError as exc:
                log.error("catalog_reload_refused", problems=exc.problems)
                self.hooks.emit(CatalogReloadFailed(refused=True))
                self._record_reload("refused", len(exc.problems), str(exc))
                return False
            except Exception as exc:  # noqa: BLE001 - the reload thread must outlive any failure
                first = str(exc).splitlines()[0] if str(exc) else ""
                log.error("catalog_reload_failed", error=type(exc).__name__ + (f": {first}" if first else ""))
                self.hooks.emit(CatalogReloadFailed(refused=False))
                self._record_reload("failed", 0, type(exc).__name__ + (f": {first}" if first else ""))
                return False
            self.intake.view = CatalogView.of(catalog, self.config.escalation)
            log.info("catalog_reloaded", codes=len(catalog.codes), playbooks=len(catalog.playbooks))
            self._record_reload("ok")
            return True

    def _record_reload(self, outcome: str, problems: int = 0, error: str | None = None) -> None:
        """The last catalog load for `suture status` (engine.records.CatalogReload); a store that
        cannot take it is logged, never a reason to fail the load itself."""
        value = {
            "at": self.clock.now().isoformat(),
            "outcome": outcome,
            "problems": problems,
            "error": (error.splitlines() or [""])[0][:500] if error is not None else None,
        }
        try:
            self.store.set_state(CATALOG_RELOAD_KEY, value)
        except Exception as exc:  # noqa: BLE001 - same reason as in reload()
            log.warning("catalog_reload_record_failed", error=type(exc).__name__)

    def start(self) -> None:
        self.recover()
        self.intake.start()
        self.pool.start()
        if self.listener is not None:
            self.listener.start()
        self.pool.wake()  # runs that were queued while we were down
        # Every scheduled job runs once per period across the replicas on this database.
        turns = Turns(self.scheduler, self.store, str(self.incarnation))
        # Often enough that a dead replica's run waits little more than its lease.
        lease = self.config.workers.lease.total_seconds()
        turns.every(self.recover, "recover", max(1.0, min(60.0, lease / 2)))
        schedule_polls(turns, self.config, self.store, self.intake, self.hooks, self.clock)
        check_every = self.config.escalation.check_every.total_seconds()
        turns.every(self.deadlines, "deadlines", check_every, next_run_time=self.clock.now())
        # The same turn as deadlines: a succeeded run's verdict is due when its window ends, and
        # at once when its alert resolves (then on the replica that heard it, outside the turns:
        # judging is idempotent).
        turns.every(self.verdicts, "verdicts", check_every)
        self.hooks.subscribe(
            IncidentResolved,
            lambda _event: self.scheduler.add_job(
                self.verdicts, id="verdicts-now", max_instances=1, replace_existing=True
            ),
        )
        if self.prune.enabled:
            # Hourly, first a minute after start: recovery and the backlog of a start go first.
            turns.every(self.prune, "retention", 3600, next_run_time=self.clock.now() + timedelta(seconds=60))
        # Every few minutes: what stats reads whole stays counted, and what a row touched since is
        # counted again (the first turn, a minute after start, may count up to 90 days).
        turns.every(
            self.count_hours,
            "count_hours",
            COUNT_HOURS_EVERY_S,
            next_run_time=self.clock.now() + timedelta(seconds=60),
        )
        if self.config.notifications:
            self.notifier.start()
        self.scheduler.start()
        self._ready.set()
        # Everything loaded by then lives as long as the daemon: keep it out of the collector's
        # full passes, which otherwise pause intake for ~60 ms about once a second under load.
        # Once the daemon answers: the collection before the freeze takes as long as such a pass.
        self._settle = threading.Timer(SETTLE_HEAP_AFTER_S, _settle_heap)
        self._settle.daemon = True
        self._settle.start()

    def stop(self) -> None:
        self._ready.clear()
        if self._settle is not None:
            self._settle.cancel()
        self.scheduler.shutdown(wait=False)
        self.notifier.stop()
        if self.helpers is not None:
            self.helpers.close()
        self.intake.stop()
        if self.listener is not None:
            self.listener.stop()
        self.pool.stop()
        self.db.dispose()

    def _log_start(self) -> None:
        """What a reader of the log needs first: what runs, on what, and who may send unauthenticated."""
        from connectors import CONNECTORS

        config, catalog = self.config, self.intake.view.catalog
        unauthenticated = [
            name
            for name in CONNECTORS
            if config.source(name).enabled
            and config.source_secrets(name).token is None
            and config.source_secrets(name).signature_secret is None
        ]
        log.info(
            "started",
            version=metrics.suture_version(),
            config_dir=str(config.base_dir),
            database=make_url(config.database_url).render_as_string(hide_password=True),
            codes=len(catalog.codes),
            playbooks=len(catalog.playbooks),
            workers=config.workers.concurrency,
            pull_sources=[source.name for source in config.pull],
            unauthenticated_sources=unauthenticated,
        )

    def app(self) -> Any:
        services = Services(
            self.config,
            self.store,
            self.intake,
            ready=lambda: self._ready.is_set() and intake_health(self.intake, self.helpers) is None,
            wake_workers=self.pool.wake,
            wake_notifier=self.notifier.wake,
            helpers=self.helpers,
            clock=self.clock,
            hooks=self.hooks,
        )
        return create_asgi(services)

    def serve(self) -> None:
        app = self.app()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=self.config.server.host,
                port=self.config.server.port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, daemon=True).start())
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler
        # it found: make that an exit through `finally`, so helpers, writer and workers stop.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        host, port = self.config.server.host, self.config.server.port
        listener = _listen(host, port)  # before anything starts: a taken port is one clear error
        self.start()
        self._log_start()
        log.info("serving", host=host, port=listener.getsockname()[1])
        try:
            server.run(sockets=[listener])
        finally:
            self.stop()
            log.info("stopped")
