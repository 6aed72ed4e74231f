"""Periodic jobs: polling monitoring APIs that cannot push, reconciling Zabbix, and retention.

A poll returns what is firing now. Everything firing goes through intake like a webhook
(so dedup and classification are the same); open incidents of that source that the poll
no longer returns are resolved, which is how a pulled alert that disappears is closed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from apscheduler.schedulers.base import BaseScheduler

from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config, RetentionConfig
from engine.errors import StoreUnavailable, SutureError
from engine.hooks import NO_HOOKS, Hooks, PollFailed, PollSucceeded
from engine.intake.classify import Intake
from engine.models import Alert, AlertStatus
from engine.store import Store
from engine.store.retention import Retention

log = structlog.get_logger("suture.scheduler")

Fetch = Callable[[], list[Alert]]
COMMIT_WAIT_SECONDS = 30.0


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
    ) -> None:
        self.source = source
        self.fetch = fetch
        #: What still exists even if not to be acted on (silenced, inhibited): never resolved.
        self.fetch_present = fetch_present
        self.store = store
        self.intake = intake
        #: Hears PollFailed and PollSucceeded (metrics: failures and last success per source).
        self.hooks = hooks

    def __call__(self) -> None:
        try:
            active = self.fetch()
            present = self.fetch_present() if self.fetch_present is not None else active
        except SutureError as exc:
            # A failed poll resolves nothing: an unreachable API is not a recovery.
            log.warning("poll_failed", source=self.source, error=str(exc))
            self.hooks.emit(PollFailed(self.source))
            return
        seen = {alert.fingerprint for alert in active} | {alert.fingerprint for alert in present}
        now = datetime.now(UTC)
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
            for row in self.store.open_incidents_of_source(self.source)
            if row.fingerprint not in seen
        ]
        alerts = active + gone
        if not alerts:
            self.hooks.emit(PollSucceeded(self.source, now))
            return
        body = orjson.dumps(
            {"poll": self.source, "alerts": [a.model_dump(mode="json") for a in alerts]}
        ).decode()
        submission = self.intake.prepare(self.source, body, alerts)
        receipt = self.intake.submit(submission).result(timeout=COMMIT_WAIT_SECONDS)
        log.info("poll_stored", source=self.source, active=len(active), resolved=len(receipt.resolved))
        self.hooks.emit(PollSucceeded(self.source, now))


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


def schedule_polls(
    scheduler: BaseScheduler, config: Config, store: Store, intake: Intake, hooks: Hooks = NO_HOOKS
) -> list[PollJob]:
    """Add one interval job per pull source, and the Zabbix reconcile when its API is configured."""
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
            job = PollJob(source.name, fetch, store, intake, fetch_present=present, hooks=hooks)
        else:
            fetch = functools.partial(pull.fetch_prometheus, source.url, **options)
            job = PollJob(source.name, fetch, store, intake, hooks=hooks)
        jobs.append((job, source.interval.total_seconds()))

    if reconcile_zabbix and zabbix is not None and zabbix.api_token_env:
        api_token = config.source_secrets("zabbix").api_token or ""

        def fetch_zabbix() -> list[Alert]:
            assert zabbix is not None and zabbix.url
            return zabbix_api.fetch_zabbix_problems(zabbix.url, token=api_token, timezone=zabbix.timezone)

        reconcile = PollJob("zabbix", fetch_zabbix, store, intake, hooks=hooks)
        jobs.append((reconcile, zabbix.interval.total_seconds()))

    for job, seconds in jobs:
        scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=f"poll-{job.source}",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
    return [job for job, _ in jobs]
