"""`suture serve`: wire store, catalog, intake, workers, scheduler and the HTTP API together."""

from __future__ import annotations

import signal
import threading
from typing import Any

import structlog
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from engine.api import Services, create_app
from engine.catalog import Catalog, load_catalog
from engine.config import Config
from engine.errors import CatalogError
from engine.intake import CatalogView, Intake
from engine.store import Store, open_database
from engine.templating import Renderer
from engine.worker import PlaybookResolver, WorkerPool

log = structlog.get_logger("suture.daemon")

PAUSED_KEY = "paused"


def load_checked_catalog(config: Config, store: Store | None) -> Catalog:
    """The catalog, cross-checked against the playbook versions already stored."""
    stored = store.stored_playbook_hashes() if store is not None else None
    return load_catalog(config.codes_dir, config.playbooks_dir, stored)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = open_database(config.database_url, upgrade=True)
        self.store = Store(self.db)
        catalog = load_checked_catalog(config, self.store)
        self.store.sync_catalog(catalog)
        self.renderer = Renderer(config.secret_values())
        self.resolver = PlaybookResolver(self.store, lambda: self.intake.view.catalog)
        self.pool = WorkerPool(
            config,
            self.store,
            self.resolver,
            self.renderer,
            paused=lambda: bool(self.store.get_state(PAUSED_KEY)),
        )
        self.intake = Intake(self.store, CatalogView.of(catalog), on_runs_queued=self.pool.wake)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._ready = threading.Event()
        self._reload_lock = threading.Lock()

    def recover(self) -> dict[str, list[int]]:
        """Runs a dead daemon left `running` are re-queued (idempotent) or marked interrupted."""
        flags: dict[tuple[str, int], bool] = {}
        for run in self.store.list_runs(status="running", limit=10_000):
            key = (run["playbook"], run["playbook_version"])
            if key not in flags:
                try:
                    flags[key] = self.resolver.get(*key).idempotent
                except Exception:  # noqa: BLE001 - an unknown playbook is simply not re-run
                    flags[key] = False
        outcome = self.store.recover_interrupted(flags)
        if outcome["requeued"] or outcome["interrupted"]:
            log.warning("runs_recovered", **outcome)
        return outcome

    def reload(self) -> bool:
        """SIGHUP: swap in the new catalog if it is valid, keep the old one otherwise."""
        with self._reload_lock:
            try:
                catalog = load_checked_catalog(self.config, self.store)
            except CatalogError as exc:
                log.error("catalog_reload_refused", problems=exc.problems)
                return False
            self.store.sync_catalog(catalog)
            self.intake.view = CatalogView.of(catalog)
            log.info("catalog_reloaded", codes=len(catalog.codes), playbooks=len(catalog.playbooks))
            return True

    def start(self) -> None:
        self.recover()
        self.intake.start()
        self.pool.start()
        self.pool.wake()  # runs that were queued while we were down
        self.scheduler.start()
        self._ready.set()

    def stop(self) -> None:
        self._ready.clear()
        self.scheduler.shutdown(wait=False)
        self.intake.stop()
        self.pool.stop()
        self.db.dispose()

    def app(self) -> Any:
        services = Services(self.config, self.store, self.intake, ready=self._ready.is_set)
        return create_app(services)

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
        self.start()
        log.info("serving", host=self.config.server.host, port=self.config.server.port)
        try:
            server.run()
        finally:
            self.stop()
            log.info("stopped")
