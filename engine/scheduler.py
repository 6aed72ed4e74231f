"""Periodic jobs: polling monitoring APIs that cannot push, reconciling Zabbix, and retention.

A poll returns what is firing now. Everything firing goes through intake like a webhook
(so dedup and classification are the same); open incidents of that source that the poll
no longer returns are resolved, which is how a pulled alert that disappears is closed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from apscheduler.schedulers.base import BaseScheduler

from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config, RetentionConfig
from engine.errors import StoreUnavailable, SutureError
from engine.hooks import NO_HOOKS, Hooks, PollFailed, PollSucceeded
from engine.intake.classify import Intake
from engine.logging import get_logger
from engine.models import Alert, AlertStatus
from engine.store import Store
from engine.store.catalog_history import POLL_KEY_PREFIX
from engine.store.retention import Retention

log = get_logger("suture.scheduler")

Fetch = Callable[[], list[Alert]]
COMMIT_WAIT_SECONDS = 30.0
#: How stale the recorded time of an unchanged poll outcome may get: polls run every 30 s, and one
#: `state` write per poll turn would only move a timestamp `suture status` shows to the minute.
POLL_RECORD_EVERY = timedelta(seconds=60)


class PollJob:
    """One pull source: fetch the active alerts, submit them, resolve what vanished."""

    def __init__(
        self,
        source: str,
        fetch: Fetch,
        store: Store,
        intake: Intake,
        fetch_present: Fetch | None = None,
        hooks: Hooks = NO_HOOKS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source = source
        self.clock = clock
        self.fetch = fetch
        #: What still exists even if not to be acted on (silenced, inhibited): never resolved.
        self.fetch_present = fetch_present
        self.store = store
        self.intake = intake
        #: Hears PollFailed and PollSucceeded (metrics: failures and last success per source).
        self.hooks = hooks
        #: What `state` holds for this source (engine.records.PollState without `source`); read once.
        self._recorded: dict[str, Any] | None = None

    def __call__(self) -> None:
        try:
            active = self.fetch()
            present = self.fetch_present() if self.fetch_present is not None else active
        except SutureError as exc:
            # A failed poll resolves nothing: an unreachable API is not a recovery.
            log.warning("poll_failed", source=self.source, error=str(exc))
            self.hooks.emit(PollFailed(self.source))
            self._record(self.clock.now(), str(exc))
            return
        seen = {alert.fingerprint for alert in active} | {alert.fingerprint for alert in present}
        now = self.clock.now()
        still_open = self.store.open_incidents_of_source(self.source)
        # An alert the last poll returned too, of the same instance, tells nothing new: submitting
        # it again would store an event and count an occurrence every interval, forever.
        known = {(row.fingerprint, row.starts_at) for row in still_open}
        fresh = [alert for alert in active if (alert.fingerprint, alert.starts_at) not in known]
        gone = [
            Alert(
                source=self.source,
                name=row.alertname,
                fingerprint=row.fingerprint,
                status=AlertStatus.resolved,
                labels=row.labels,
                starts_at=row.starts_at,
                ends_at=now,
            )
            for row in still_open
            if row.fingerprint not in seen
        ]
        alerts = fresh + gone
        if not alerts:
            self.hooks.emit(PollSucceeded(self.source, now))
            self._record(now, None)
            return
        body = orjson.dumps(
            {"poll": self.source, "alerts": [a.model_dump(mode="json") for a in alerts]}
        ).decode()
        submission = self.intake.prepare(self.source, body, alerts)
        receipt = self.intake.submit(submission).result(timeout=COMMIT_WAIT_SECONDS)
        log.info(
            "poll_stored",
            source=self.source,
            active=len(active),
            new=len(fresh),
            resolved=len(receipt.resolved),
        )
        self.hooks.emit(PollSucceeded(self.source, now))
        self._record(now, None)

    def _record(self, now: datetime, error: str | None) -> None:
        """Keep `poll:<source>` for `suture status`: written when the outcome changes (ok to failing,
        back, or another error line) or when its recorded time is a minute old, not every turn."""
        key = POLL_KEY_PREFIX + self.source
        try:
            if self._recorded is None:
                stored = self.store.get_state(key)
                self._recorded = dict(stored) if isinstance(stored, dict) else {}
            old = self._recorded
            line = None if error is None else (error.strip().splitlines() or [""])[0][:500]
            field = "last_success" if error is None else "last_failure"
            new = {
                "last_success": old.get("last_success"),
                "last_failure": old.get("last_failure"),
                "error": old.get("error") if error is None else line,
                field: now.isoformat(),
            }
            succeeded, failed = _when(old.get("last_success")), _when(old.get("last_failure"))
            failing_before = failed is not None and (succeeded is None or failed > succeeded)
            changed = failing_before != (error is not None) or new["error"] != old.get("error")
            previous = succeeded if error is None else failed
            stale = previous is None or now - previous >= POLL_RECORD_EVERY
            if changed or stale:
                self.store.set_state(key, new)
                self._recorded = new
        except Exception as exc:  # noqa: BLE001 - the poll is done; its record waits for the next turn
            log.warning("poll_record_failed", source=self.source, error=type(exc).__name__)


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class PruneJob:
    """Retention: empty event bodies and step output older than configured, batch after batch
    (each its own short transaction, so intake waits for one batch at most) until a batch comes
    back short or `max_batches` were done; the next turn goes on from there."""

    def __init__(
        self,
        retention: Retention,
        config: RetentionConfig,
        clock: Clock = SYSTEM_CLOCK,
        batch: int = 1000,
        max_batches: int = 100,
    ) -> None:
        self.retention = retention
        self.config = config
        self.clock = clock
        self.batch = batch
        self.max_batches = max_batches

    @property
    def enabled(self) -> bool:
        return self.config.events is not None or self.config.step_output is not None

    def __call__(self) -> dict[str, int]:
        now = self.clock.now()
        pruned: dict[str, int] = {}
        kinds = (
            ("events", self.config.events, self.retention.prune_events),
            ("step_output", self.config.step_output, self.retention.prune_step_output),
        )
        try:
            for kind, keep, prune in kinds:
                if keep is None:
                    continue
                pruned[kind] = 0
                for _ in range(self.max_batches):
                    done = prune(now - keep, self.batch)
                    pruned[kind] += done
                    if done < self.batch:
                        break
        except StoreUnavailable as exc:
            log.warning("prune_failed", error=str(exc), **pruned)  # the next turn goes on
            return pruned
        if any(pruned.values()):
            log.info("pruned", **pruned)
        return pruned


class OncePerPeriod:
    """A scheduled job that runs once per period across every replica on the database: each
    replica ticks, and the tick that takes the job's turn runs it (engine.store.replicas)."""

    def __init__(self, job: Callable[[], Any], name: str, every: timedelta, store: Store, owner: str) -> None:
        self.job = job
        self.name = name
        self.every = every
        self.store = store
        self.owner = owner

    def __call__(self) -> Any:
        try:
            if not self.store.take_turn(self.name, self.every, self.owner):
                return None  # another replica ran it this period
        except StoreUnavailable as exc:
            log.warning("job_turn_failed", job=self.name, error=str(exc))
            return None
        return self.job()


class Turns:
    """Schedules jobs once per period across replicas, as the replica `owner`."""

    def __init__(self, scheduler: BaseScheduler, store: Store, owner: str) -> None:
        self.scheduler = scheduler
        self.store = store
        self.owner = owner

    def every(self, job: Callable[[], Any], name: str, seconds: float, **options: Any) -> Any:
        """An interval job `name` (its APScheduler id too); `options` as for `add_job`."""
        once = OncePerPeriod(job, name, timedelta(seconds=seconds), self.store, self.owner)
        options.setdefault("max_instances", 1)
        options.setdefault("coalesce", True)
        return self.scheduler.add_job(once, "interval", seconds=seconds, id=name, **options)


def schedule_polls(
    turns: Turns,
    config: Config,
    store: Store,
    intake: Intake,
    hooks: Hooks = NO_HOOKS,
    clock: Clock = SYSTEM_CLOCK,
) -> list[PollJob]:
    """Add one interval job per pull source, and the Zabbix reconcile when its API is configured;
    each runs once per interval across replicas."""
    zabbix = config.sources.get("zabbix")
    reconcile_zabbix = zabbix is not None and bool(zabbix.url and zabbix.api_token_env)
    if not config.pull and not reconcile_zabbix:
        return []
    from connectors import pull, zabbix_api  # the HTTP client is only imported by daemons that poll

    jobs: list[tuple[PollJob, float]] = []
    for source in config.pull:
        token = config.pull_token(source.name)
        options: dict[str, Any] = {
            "source": source.name,
            "token": token,
            "timeout": source.timeout.total_seconds(),
        }
        if source.kind == "alertmanager":
            fetch = functools.partial(pull.fetch_alertmanager, source.url, **options)
            present = functools.partial(
                pull.fetch_alertmanager, source.url, include_suppressed=True, **options
            )
            job = PollJob(source.name, fetch, store, intake, present, hooks, clock)
        else:
            fetch = functools.partial(pull.fetch_prometheus, source.url, **options)
            job = PollJob(source.name, fetch, store, intake, hooks=hooks, clock=clock)
        jobs.append((job, source.interval.total_seconds()))

    if reconcile_zabbix and zabbix is not None and zabbix.api_token_env:
        api_token = config.source_secrets("zabbix").api_token or ""

        def fetch_zabbix() -> list[Alert]:
            assert zabbix is not None and zabbix.url
            return zabbix_api.fetch_zabbix_problems(zabbix.url, token=api_token, timezone=zabbix.timezone)

        reconcile = PollJob("zabbix", fetch_zabbix, store, intake, hooks=hooks, clock=clock)
        jobs.append((reconcile, zabbix.interval.total_seconds()))

    for job, seconds in jobs:
        turns.every(job, f"poll-{job.source}", seconds, next_run_time=datetime.now(UTC))
    return [job for job, _ in jobs]
