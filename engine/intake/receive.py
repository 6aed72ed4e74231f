"""One vendor webhook, received: authenticate, bound, parse, classify, commit, answer.

`WebhookReceiver` holds the whole decision and is shared by the documented FastAPI route
and by the fast path's raw ASGI front (engine/intake/fastpath/front.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Protocol

import orjson
from pydantic import SecretStr

from connectors import Connector
from connectors.signatures import bearer_token_ok, verify_hmac_sha256
from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config, SourceConfig
from engine.errors import InvalidPayload, StoreUnavailable
from engine.hooks import NO_HOOKS, AlertsReceived, BodyRejected, Hooks, WebhookReady
from engine.intake.answers import (
    OVERLOADED,
    UNAVAILABLE,
    Answer,
    Outcome,
    Rejected,
    Relayed,
    error,
    is_json,
    unsupported,
)
from engine.intake.classify import Intake
from engine.intake.writer import IntakeFull
from engine.logging import get_logger
from engine.models import Alert, Submission
from engine.records import Receipt


class Forwarder(Protocol):
    async def forward(self, submission: Submission) -> Outcome | None:
        """The helper's outcome after its commit, or None when the body must be committed here."""
        ...


class Relay(Protocol):
    """Where a body may be committed instead of this process's writer (the fast path's helpers).

    A protocol, so receiving knows nothing of helper processes and the fast path may import it."""

    def pick(self, alerts: int) -> Forwarder | None: ...


log = get_logger("suture.api")


#: How long a body waits for its commit. One whose commit has not begun by then is withdrawn
#: (503, and never stored); one whose commit is under way waits for it up to
#: `OUTCOME_WAIT_SECONDS` more, so its answer says what became of it.
COMMIT_WAIT_SECONDS = 10.0


OUTCOME_WAIT_SECONDS = 50.0


SIGNATURE_HEADERS = {"grafana": "X-Grafana-Alerting-Signature"}


DEFAULT_SIGNATURE_HEADER = "X-Suture-Signature"


REJECTIONS = (
    "unauthorized",
    "unsupported_media_type",
    "too_large",
    "bad_signature",
    "invalid",
    "unavailable",
    "overloaded",
)


class WebhookReceiver:
    """The answer to one POST /api/v1/alerts/<source>; 202 only once the alerts are committed."""

    def __init__(
        self,
        config: Config,
        intake: Intake,
        connector: Connector,
        helpers: Relay | None = None,
        wake_workers: Callable[[], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.config = config
        self.intake = intake
        self.connector = connector
        self.helpers = helpers
        self.wake_workers = wake_workers
        self.clock = clock
        self.source = source = connector.source
        self.path = f"/api/v1/alerts/{source}"
        # The config is frozen and its secrets are read once: no request looks either up again.
        self.settings = config.source(source)
        self.secrets = config.source_secrets(source)
        self.hooks = hooks
        # Built once: the rejection events are the same few objects for every request.
        self._rejected = {reason: BodyRejected(source, reason) for reason in REJECTIONS}
        hooks.emit(WebhookReady(source, REJECTIONS))

    def _reject(self, reason: str, answer: Answer) -> Answer:
        """Every refused body is told in the log (a sender misconfigured is found there first)."""
        self.hooks.emit(self._rejected[reason])
        log.warning(
            "webhook_rejected",
            source=self.source,
            reason=reason,
            status=answer.status,
            error=answer.body.get("error"),
            field=answer.body.get("field"),
        )
        return answer

    def _received(self, alerts: int, opened: int, started: float) -> None:
        if self.hooks.wants(AlertsReceived):
            self.hooks.emit(AlertsReceived(self.source, alerts, time.perf_counter() - started, opened))

    async def receive(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> Answer:
        started = time.perf_counter()
        source, config, settings = self.source, self.config, self.settings
        if not settings.enabled:
            return error(404, f"source {source} is disabled in config.yaml")
        if not _token_ok(self.secrets.token, headers.get("authorization")):
            return self._reject("unauthorized", error(401, "unauthorized"))
        content_type = headers.get("content-type")
        if content_type != "application/json" and not is_json(content_type):
            return self._reject("unsupported_media_type", unsupported(content_type))
        limit = config.server.max_body_bytes
        too_large = error(413, f"body is larger than server.max_body_bytes ({limit} bytes)")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return self._reject("too_large", too_large)
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                return self._reject("too_large", too_large)
        raw = bytes(body)
        del body
        secret = self.secrets.signature_secret
        denied = _signature_problem(source, settings, secret, headers, raw, self.clock) if secret else None
        if denied is not None:
            return self._reject("bad_signature", denied)
        admitted = admit(config, self.intake, self.connector, raw, now=self.clock.now())
        del raw  # the submission keeps the text; a waiting body should hold it once, not thrice
        if isinstance(admitted, Rejected):
            return self._reject(admitted.reason, admitted.answer)
        helper = self.helpers.pick(len(admitted.alerts)) if self.helpers is not None else None
        if helper is not None and (outcome := await helper.forward(admitted)) is not None:
            return self._relay(outcome, len(admitted.alerts), started)
        return await self._commit(admitted, started)

    async def _commit(self, admitted: Submission, started: float) -> Answer:
        """Commit with this process's writer; the answer waits for the commit."""
        try:
            receipt = await committed(self.intake.submit(admitted))
        except IntakeFull:
            return self._reject("overloaded", OVERLOADED)  # the writer logs it, once in a while
        except StoreUnavailable as exc:
            log.error("alerts_not_stored", source=self.source, error=str(exc))
            return self._reject("unavailable", UNAVAILABLE)
        except TimeoutError:
            # The only 503 that may not mean "not stored": the commit began and has not ended.
            log.error(
                "alerts_outcome_unknown",
                source=self.source,
                error=f"commit still running after {COMMIT_WAIT_SECONDS + OUTCOME_WAIT_SECONDS:.0f} s",
            )
            return self._reject("unavailable", UNAVAILABLE)
        self._received(len(admitted.alerts), len(receipt.opened), started)
        return Answer(202, receipt.as_json())

    def _relay(self, outcome: Outcome, alerts: int, started: float) -> Answer:
        """A helper's outcome, announced here: the hooks (and metrics) live in this process."""
        if outcome.reason is not None:
            self.hooks.emit(self._rejected[outcome.reason])
        if outcome.status == 202:
            self._received(alerts, outcome.opened, started)
            if outcome.runs_queued and self.wake_workers is not None:
                self.wake_workers()
        return Relayed(outcome.status, {}, outcome.content)


async def committed(future: Future[Receipt]) -> Receipt:
    """The receipt of a submitted body (`COMMIT_WAIT_SECONDS`): withdrawn if its commit has not
    begun by then (`StoreUnavailable`), `TimeoutError` if its begun commit outlasts the bound."""
    if future.done():
        return future.result()  # refused at once: full, or no writer
    waiting = asyncio.wrap_future(future)
    try:
        async with asyncio.timeout(COMMIT_WAIT_SECONDS):
            return await asyncio.shield(waiting)
    except TimeoutError:
        if future.cancel():  # still queued: the writer will skip it
            raise StoreUnavailable(
                f"commit did not begin within {COMMIT_WAIT_SECONDS:.0f} s; withdrawn"
            ) from None
    async with asyncio.timeout(OUTCOME_WAIT_SECONDS):
        return await waiting


def admit(
    config: Config, intake: Intake, connector: Connector, raw: bytes, *, now: datetime
) -> Submission | Rejected:
    """From an authenticated body to a classified submission: JSON, vendor parse, limits."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejected("invalid", error(400, f"body is not valid JSON: {exc}", field="body"))
    source = connector.source
    try:
        alerts = connector.parse(payload, config.source(source), now)
        check_limits(config, alerts)
    except InvalidPayload as exc:
        return Rejected("invalid", error(422, f"{exc.field}: {exc.message}", field=exc.field))
    return intake.prepare(source, raw.decode("utf-8", "replace"), alerts)


def _token_ok(expected: SecretStr | None, header: str | None) -> bool:
    """Constant-time bearer check when a token is configured; the answer never says which part was wrong."""
    return expected is None or bearer_token_ok(expected.get_secret_value(), header)


def _signature_problem(
    source: str,
    settings: SourceConfig,
    secret: SecretStr,
    headers: Mapping[str, str],
    body: bytes,
    clock: Clock,
) -> Answer | None:
    """HMAC-SHA256 over the raw body (or `timestamp:body`, fresh by `clock`) with the source's secret."""
    header = settings.signature_header or SIGNATURE_HEADERS.get(source, DEFAULT_SIGNATURE_HEADER)
    given = headers.get(header)
    timestamp = headers.get(settings.timestamp_header) if settings.timestamp_header else None
    if not given or (settings.timestamp_header and not timestamp):
        return error(401, f"missing signature header {header}")
    now = clock.now().timestamp() if timestamp is not None else None
    if not verify_hmac_sha256(secret.get_secret_value().encode(), body, given, timestamp=timestamp, now=now):
        return error(401, "signature does not match the body")
    return None


def _plainly_within(mapping: dict[str, str], limit: int) -> bool:
    """True when no key or value of `mapping` can break a limit: checked with C-level string
    operations per mapping, so the per-value loop below runs only to name a culprit."""
    keys, values = mapping.keys(), mapping.values()
    return (
        max(map(len, keys)) <= 256
        and max(map(len, values)) * 4 <= limit
        and "\x00" not in "".join(keys)
        and "\x00" not in "".join(values)
    )


def check_limits(config: Config, alerts: list[Alert]) -> None:
    """Per-body and per-value bounds, in one pass over every value."""
    server = config.server
    if len(alerts) > server.max_alerts_per_body:
        raise InvalidPayload(
            "alerts", f"at most {server.max_alerts_per_body} alerts per body (got {len(alerts)})"
        )
    max_label = server.max_label_bytes
    limits = (
        ("labels", "max_label_bytes", max_label),
        ("annotations", "max_annotation_bytes", server.max_annotation_bytes),
    )
    # NUL is refused on every backend because PostgreSQL cannot store it in text or JSONB,
    # so both backends give the same answer.
    for index, alert in enumerate(alerts):
        for field, value in (("fingerprint", alert.fingerprint), ("name", alert.name)):
            if "\x00" in value:
                raise InvalidPayload(f"alerts.{index}.{field}", "contains a NUL character")
            # A str never takes more than 4 bytes per character in UTF-8: encode only if it might.
            if len(value) * 4 > max_label and len(value.encode()) > max_label:
                raise InvalidPayload(
                    f"alerts.{index}.{field}", f"longer than server.max_label_bytes ({max_label})"
                )
        for kind, setting, limit in limits:
            mapping = getattr(alert, kind)
            if not mapping or _plainly_within(mapping, limit):
                continue
            for key, value in mapping.items():
                if "\x00" in key or "\x00" in value:
                    raise InvalidPayload(f"alerts.{index}.{kind}.{key}", "contains a NUL character")
                if len(key) > 256:
                    raise InvalidPayload(
                        f"alerts.{index}.{kind}", f"key longer than 256 characters: {key[:40]!r}..."
                    )
                if len(value) * 4 > limit and len(value.encode()) > limit:
                    raise InvalidPayload(
                        f"alerts.{index}.{kind}.{key}", f"value longer than server.{setting} ({limit} bytes)"
                    )
