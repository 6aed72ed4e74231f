"""The notifier: expands outbox events into deliveries and sends them, off intake and runs.

One thread watches the outbox (woken by the hooks, else every `poll` seconds); attempts run in
a small pool, at most one per channel at a time and oldest first per channel, so a channel that
is down for minutes gets its messages in order once it is back, and never delays another
channel, an intake commit or a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from engine.clock import SYSTEM_CLOCK, Clock
from engine.errors import NotFound, PermanentFailure, SutureError, TemporaryFailure
from engine.hooks import NO_HOOKS, Hooks, NotificationAttempted
from engine.logging import get_logger
from engine.notify.channels.base import Channel
from engine.notify.compose import Composer
from engine.notify.routing import Router
from engine.store import Store
from engine.store.outbox import Delivery

log = get_logger("suture.notify")

#: Outbox events expanded per notifier turn.
DISPATCH_BATCH = 1000

#: A delivery still failing this long after it was stored is given up (`failed`).
GIVE_UP_AFTER = timedelta(hours=24)


def backoff(
    attempts: int, first: timedelta = timedelta(seconds=2), most: timedelta = timedelta(minutes=5)
) -> timedelta:
    """The wait after the `attempts`-th failed attempt: doubling from `first`, at most `most`."""
    doublings = min(max(attempts - 1, 0), 32)  # past the cap anyway; 2**47 s overflows a timedelta
    return min(first * (2**doublings), most)


class Notifier:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        router: Router,
        composer: Composer,
        *,
        clock: Clock = SYSTEM_CLOCK,
        hooks: Hooks = NO_HOOKS,
        poll: float = 1.0,
        settle: float = 0.2,
        stale_after: timedelta = timedelta(minutes=2),
        first_retry: timedelta = timedelta(seconds=2),
        max_retry: timedelta = timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.router = router
        self.composer = composer
        self.clock = clock
        self.hooks = hooks
        self.poll = poll
        self.settle = settle
        self.stale_after = stale_after
        self.first_retry = first_retry
        self.max_retry = max_retry
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(8, len(self.channels))), thread_name_prefix="notify"
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self._thread.start()

    def wake(self, *_: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            # Under a storm every intake commit wakes us: take the turn at most every `settle`
            # seconds, so the notifier's work comes in batches and leaves intake its share.
            self._stop.wait(self.settle)
            self._wake.clear()
            try:
                self.run_once()
            except SutureError as exc:  # the database is away: the next turn tries again
                log.warning("notifier_turn_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - the notifier must outlive any failure
                log.exception("notifier_turn_failed")

    def run_once(self, *, wait: bool = False) -> None:
        """Expand what the outbox holds, then start an attempt on each channel that has one due."""
        self.dispatch()
        now = self.clock.now()
        futures = []
        for channel in self.store.outbox.channels_with_work(
            sorted(self.channels), now, now - self.stale_after
        ):
            with self._lock:
                if channel in self._busy:
                    continue
                self._busy.add(channel)
            futures.append(self._pool.submit(self._drain, channel))
        if wait:
            for future in futures:
                future.result()

    def dispatch(self) -> int:
        """One delivery per channel that hears of each new outbox event, one batch per turn: under
        a storm the backlog is expanded over several turns instead of taking the daemon's core."""
        events = self.store.outbox.undispatched(DISPATCH_BATCH)
        if not events:
            return 0
        found = self.store.routing_facts([e.incident_id for e in events if e.incident_id is not None])
        expanded = []
        for event in events:
            facts = found.get(event.incident_id) if event.incident_id is not None else None
            channels: list[str] = []
            if facts is not None:
                code, severity, target = facts
                routed = self.router.channels_for(event.event, self.composer.facts(code, severity, target))
                channels = [c for c in routed if c in self.channels]
            expanded.append((event, channels))
        if len(events) == DISPATCH_BATCH:
            self._wake.set()  # more to expand: the next turn comes after `settle`
        return self.store.outbox.dispatch(expanded, self.clock.now())

    def _drain(self, channel: str) -> None:
        """Attempt the channel's deliveries in order until one has to wait or none is left."""
        try:
            while not self._stop.is_set():
                now = self.clock.now()
                delivery = self.store.outbox.claim(channel, now, now - self.stale_after)
                if delivery is None or not self._attempt(delivery):
                    return
        except Exception:  # noqa: BLE001 - a broken attempt is retried on a later turn
            log.exception("notification_attempt_crashed", channel=channel)
        finally:
            with self._lock:
                self._busy.discard(channel)

    def _attempt(self, delivery: Delivery) -> bool:
        """One attempt; True if the channel may take its next delivery now."""
        started = time.monotonic()
        outcome = "retry"
        try:
            if delivery.incident_id is None:
                raise PermanentFailure("the notification names no incident")
            notice = self.composer.notice(
                delivery.event, delivery.incident_id, delivery.run_id, delivery.reason, self.clock.now()
            )
            answer = self.channels[delivery.channel].send(notice)
        except (PermanentFailure, NotFound) as exc:
            outcome = "failed"  # a refusal that will not change: the channel's next one may go
            self._settle_failed(delivery, exc, retry_at=None)
            return True
        except Exception as exc:  # noqa: BLE001 - temporary, or a bug in a channel: retried, never lost
            if not isinstance(exc, TemporaryFailure):
                log.exception("notification_attempt_crashed", channel=delivery.channel)
            now = self.clock.now()
            if now - delivery.created_at >= GIVE_UP_AFTER:
                outcome = "failed"
                self._settle_failed(delivery, exc, retry_at=None)
                return True
            self._settle_failed(
                delivery, exc, retry_at=now + backoff(delivery.attempts, self.first_retry, self.max_retry)
            )
            return False  # later deliveries of this channel wait behind this one: order is kept
        else:
            outcome = "sent"
            self.store.outbox.settle(delivery, self.clock.now(), answer=answer)
            log.info(
                "notified", channel=delivery.channel, about=delivery.event, incident_id=delivery.incident_id
            )
            return True
        finally:
            self.hooks.emit(
                NotificationAttempted(delivery.channel, delivery.event, outcome, time.monotonic() - started)
            )

    def _settle_failed(self, delivery: Delivery, exc: Exception, *, retry_at: datetime | None) -> None:
        error = str(exc) if isinstance(exc, SutureError) else f"internal error: {type(exc).__name__}"
        self.store.outbox.settle(delivery, self.clock.now(), error=error, retry_at=retry_at)
        log.warning(
            "notification_failed",
            channel=delivery.channel,
            about=delivery.event,
            error=error,
            retry=retry_at is not None,
        )
