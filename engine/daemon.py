"""`suture serve`: wire store, catalog, intake, workers, scheduler and the HTTP API together."""

from __future__ import annotations

import gc
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from engine.catalog.loader import Catalog, load_catalog
from engine.config import Config
from engine.errors import CatalogError
from engine.execution.worker import Incarnation, PlaybookResolver, WorkerPool
from engine.intake.classify import CatalogView, Intake
from engine.intake.fastpath.helpers import HelperPool, intake_health
from engine.scheduler import schedule_polls
from engine.store import Store, open_database
from engine.store.db import sqlite_file
from engine.templating import Renderer
from engine.web.api import Services, create_asgi

log = structlog.get_logger("suture.daemon")

PAUSED_KEY = "paused"
#: How long past its playbook timeout a run on another host may go silent before it is abandoned.
STALE_MARGIN = timedelta(minutes=5)


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def load_checked_catalog(config: Config, store: Store | None) -> Catalog:
    """The catalog, cross-checked against the playbook versions already stored."""
    stored = store.stored_playbook_hashes() if store is not None else None
    return load_catalog(config.codes_dir, config.playbooks_dir, stored)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = open_database(
            config.database_url, upgrade=True, sqlite_synchronous=config.database.sqlite_synchronous
        )
        self.store = Store(self.db)
        catalog = load_checked_catalog(config, self.store)
        self.store.sync_catalog(catalog)
        self.renderer = Renderer(config.secret_values())
        self.resolver = PlaybookResolver(self.store, lambda: self.intake.view.catalog)
        self.incarnation = Incarnation.new()
        self.pool = WorkerPool(
            config,
            self.store,
            self.resolver,
            self.renderer,
            paused=lambda: bool(self.store.get_state(PAUSED_KEY)),
            incarnation=self.incarnation,
        )
        self.intake = Intake(self.store, CatalogView.of(catalog), on_runs_queued=self.pool.wake)
        # Helpers need a database other processes can open: not an in-memory SQLite.
        shared = not (self.db.is_sqlite and sqlite_file(self.db.url) is None)
        self.helpers = HelperPool(config) if config.server.intake_helpers and shared else None
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._ready = threading.Event()
        self._reload_lock = threading.Lock()

    def recover(self) -> dict[str, list[int]]:
        """Runs a dead daemon left `running` are re-queued (idempotent) or marked interrupted.

        A run is abandoned when the daemon start holding it is gone (same host: see
        `_holder_is_dead`), or when it has shown no life for longer than its playbook's timeout
        plus a margin (another host).
        """
        abandoned: dict[int, bool] = {}
        now = datetime.now(UTC)
        for run in self.store.running_runs():
            try:
                playbook = self.resolver.get(run["playbook"], run["playbook_version"])
                idempotent, limit = playbook.idempotent, playbook.timeout + STALE_MARGIN
            except Exception:  # noqa: BLE001 - an unknown playbook is simply not re-run
                idempotent, limit = False, STALE_MARGIN
            stale = run["heartbeat_at"] is None or now - run["heartbeat_at"] > limit
            if stale or self._holder_is_dead(run["worker"]):
                abandoned[run["id"]] = idempotent
        outcome = self.store.recover_interrupted(abandoned)
        if outcome["requeued"] or outcome["interrupted"]:
            log.warning("runs_recovered", **outcome)
        return outcome

    def _holder_is_dead(self, worker: str | None) -> bool:
        """Whether the daemon start named in `runs.worker` is surely gone; other hosts: never sure.

        Our pid with another boot id is a predecessor (a container's PID 1 restarted); so is our
        pid without a boot id, a row from before boot ids, since we always write ours.
        """
        holder, me = Incarnation.parse(worker), self.incarnation
        if holder is None or holder.host != me.host or holder.boot == me.boot:
            return False
        if holder.pid == me.pid:
            return True
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def reload(self) -> bool:
        """SIGHUP: swap in the new catalog if it is valid and stored, keep the old one otherwise.

        Runs in a thread of its own: a failure nobody foresaw (the database locked, a loader bug)
        is logged as `catalog_reload_failed` instead of dying with the thread unnoticed.
        """
        with self._reload_lock:
            try:
                catalog = load_checked_catalog(self.config, self.store)
                self.store.sync_catalog(catalog)
            except CatalogError as exc:
                log.error("catalog_reload_refused", problems=exc.problems)
                return False
            except Exception as exc:  # noqa: BLE001 - the reload thread must outlive any failure
                first = str(exc).splitlines()[0] if str(exc) else ""
                log.error("catalog_reload_failed", error=type(exc).__name__ + (f": {first}" if first else ""))
                return False
            self.intake.view = CatalogView.of(catalog)
            log.info("catalog_reloaded", codes=len(catalog.codes), playbooks=len(catalog.playbooks))
            return True

    def start(self) -> None:
        self.recover()
        self.intake.start()
        self.pool.start()
        self.pool.wake()  # runs that were queued while we were down
        self.scheduler.add_job(self.recover, "interval", seconds=60, id="recover", max_instances=1)
        schedule_polls(self.scheduler, self.config, self.store, self.intake)
        self.scheduler.start()
        # Everything loaded so far lives as long as the daemon: keep it out of the collector's
        # full passes, which otherwise pause intake for ~60 ms about once a second under load.
        gc.collect()
        gc.freeze()
        self._ready.set()

    def stop(self) -> None:
        self._ready.clear()
        self.scheduler.shutdown(wait=False)
        if self.helpers is not None:
            self.helpers.close()
        self.intake.stop()
        self.pool.stop()
        self.db.dispose()

    def app(self) -> Any:
        services = Services(
            self.config,
            self.store,
            self.intake,
            ready=lambda: self._ready.is_set() and intake_health(self.intake, self.helpers) is None,
            wake_workers=self.pool.wake,
            helpers=self.helpers,
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
        self.start()
        log.info("serving", host=self.config.server.host, port=self.config.server.port)
        try:
            server.run()
        finally:
            self.stop()
            log.info("stopped")
