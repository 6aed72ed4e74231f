"""Hear, on PostgreSQL, that some replica queued runs (`NOTIFY suture_runs` at its commit).

A notification is a hint, not a guarantee: one sent while this listener reconnects is lost, so
workers still poll (`workers.poll_interval`). It only spares a replica's idle workers that wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL

from engine.logging import get_logger
from engine.store.replicas import RUNS_CHANNEL

log = get_logger("suture.store")

#: How long one wait for a notification lasts before the listener looks whether it should stop.
WAIT_SECONDS = 1.0
#: Reconnecting after a lost connection waits this long at first, doubling up to the cap.
RETRY_FIRST, RETRY_CAP = 0.5, 10.0


class RunsQueuedListener:
    """A thread on its own connection (outside the pool) that calls `wake` per notification."""

    def __init__(self, url: URL, wake: Callable[[], None]) -> None:
        self._connect_args: dict[str, Any] = url.translate_connect_args(username="user", database="dbname")
        self._connect_args.update(url.query)
        self._wake = wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="suture-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=WAIT_SECONDS * 3)

    def _loop(self) -> None:
        import psycopg

        delay = RETRY_FIRST
        while not self._stopping.is_set():
            try:
                with psycopg.connect(autocommit=True, connect_timeout=5, **self._connect_args) as conn:
                    conn.execute(f"LISTEN {RUNS_CHANNEL}")
                    delay = RETRY_FIRST
                    self._wake()  # runs queued while this listener was away
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=WAIT_SECONDS):
                            self._wake()
            except psycopg.Error as exc:
                log.warning("listen_lost", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_CAP)
