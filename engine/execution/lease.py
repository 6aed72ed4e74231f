"""Keep a claimed run's lease while it executes, and tell the runner when it is gone.

The lease is renewed from a thread of its own, so a step that takes minutes keeps it; a replica
that was paused (SIGSTOP, a long GC, a partition) past the lease finds on waking that another
replica may have taken the run back, and stops before its next step. Every write of the run is
fenced in the store as well (engine.store.Store.record_step): this only stops it sooner.
"""

from __future__ import annotations

import threading
from datetime import datetime
from types import TracebackType

from engine.clock import Clock
from engine.errors import StoreUnavailable
from engine.logging import get_logger
from engine.models import Lease
from engine.store import Store

log = get_logger("suture.worker")

#: Renewals per lease period: two may fail (a busy database) before the lease runs out.
RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    """Renews `lease` every third of `workers.lease` until closed; `lost()` says whether it is gone."""

    def __init__(self, store: Store, lease: Lease, clock: Clock) -> None:
        self.store = store
        self.lease = lease
        self.clock = clock
        self._until: datetime = clock.now() + store.lease
        self._lost = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"suture-lease-{lease.run_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._closed.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        every = self.store.lease.total_seconds() / RENEWALS_PER_LEASE
        while not self._closed.wait(every) and not self._lost.is_set():
            self._renew()

    def _renew(self) -> bool:
        try:
            until = self.store.renew_lease(self.lease)
        except StoreUnavailable as exc:
            log.warning("lease_renewal_failed", run_id=self.lease.run_id, error=str(exc))
            return self.clock.now() < self._until  # it may still hold; the store fences every write
        if until is None:
            self._lost.set()
            return False
        self._until = until
        return True

    def lost(self) -> str | None:
        """Why the run must stop here, or None while its lease is still ours.

        Past the lease's end (this process was paused, or the database unreachable) the store is
        asked: nobody took the run back if the renewal lands, and the run goes on."""
        if not self._lost.is_set() and self.clock.now() >= self._until:
            self._renew()
        if self._lost.is_set() or self.clock.now() >= self._until:
            return f"the lease of attempt {self.lease.attempt} ran out; another replica may hold the run now"
        return None
