"""The HTTP edge: authenticate, bound, parse, hand to intake, answer. No remediation here."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from connectors import CONNECTORS, Connector
from connectors.signatures import bearer_token_ok, verify_hmac_sha256
from engine import metrics
from engine.config import Config, SourceConfig
from engine.errors import Conflict, InvalidPayload, NotFound, StoreUnavailable
from engine.intake import Intake
from engine.store import Store
from engine.timeparse import parse_since

log = structlog.get_logger("suture.api")

COMMIT_WAIT_SECONDS = 10.0
MAX_ID = 2**62  # larger ids cannot exist; refusing them keeps SQLite's INTEGER from overflowing
SIGNATURE_HEADERS = {"grafana": "X-Grafana-Alerting-Signature"}
DEFAULT_SIGNATURE_HEADER = "X-Suture-Signature"


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)


@dataclass
class Services:
    config: Config
    store: Store
    intake: Intake
    ready: Callable[[], bool]
    wake_workers: Callable[[], None] = lambda: None


class Decision(BaseModel):
    """Who approves or rejects a run, and why."""

    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)


def _error(status: int, message: str, field: str | None = None) -> ORJSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return ORJSONResponse(body, status_code=status)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Suture",
        version="0.1.0",
        description="Event-driven auto-remediation: alerts in, coded incidents and remediation runs out.",
        default_response_class=ORJSONResponse,
    )
    app.state.services = services
    vendor_schemas: dict[str, Any] = {}
    for connector in CONNECTORS.values():
        vendor_schemas.update(_add_alert_route(app, services, connector))
    _add_read_routes(app, services)

    def openapi() -> dict[str, Any]:
        # Vendor bodies are read raw (for size limits and exact storage), so FastAPI does not
        # see their models: add their nested schemas to the document ourselves.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(vendor_schemas)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_alert_route(app: FastAPI, services: Services, connector: Connector) -> dict[str, Any]:
    source = connector.source
    schema = connector.body_model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        settings = services.config.source(source)
        if not settings.enabled:
            return _error(404, f"source {source} is disabled in config.yaml")
        if (denied := _check_token(settings.token_env, request.headers.get("authorization"))) is not None:
            metrics.WEBHOOKS_REJECTED.labels(source, "unauthorized").inc()
            return denied
        limit = services.config.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            metrics.WEBHOOKS_REJECTED.labels(source, "too_large").inc()
            return _error(413, f"body is larger than server.max_body_bytes ({limit} bytes)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                metrics.WEBHOOKS_REJECTED.labels(source, "too_large").inc()
                return _error(413, f"body is larger than server.max_body_bytes ({limit} bytes)")
        if (denied := _check_signature(source, settings, request, bytes(body))) is not None:
            metrics.WEBHOOKS_REJECTED.labels(source, "bad_signature").inc()
            return denied
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            metrics.WEBHOOKS_REJECTED.labels(source, "invalid").inc()
            return _error(400, f"body is not valid JSON: {exc}", field="body")
        try:
            alerts = connector.parse(payload, settings, datetime.now(UTC))
            _check_limits(services.config, alerts)
        except InvalidPayload as exc:
            metrics.WEBHOOKS_REJECTED.labels(source, "invalid").inc()
            return _error(422, f"{exc.field}: {exc.message}", field=exc.field)
        submission = services.intake.prepare(source, body.decode("utf-8", "replace"), alerts)
        try:
            receipt = await asyncio.wait_for(
                asyncio.wrap_future(services.intake.submit(submission)), COMMIT_WAIT_SECONDS
            )
        except (StoreUnavailable, TimeoutError) as exc:
            metrics.WEBHOOKS_REJECTED.labels(source, "unavailable").inc()
            log.error("alerts_not_stored", source=source, error=str(exc) or "commit timed out")
            return _error(503, "alerts not stored: the database is unavailable, retry later")
        metrics.ALERTS_RECEIVED.labels(source).inc(len(alerts))
        metrics.INCIDENTS_OPENED.inc(len(receipt.opened))
        metrics.INGEST_SECONDS.labels(source).observe(time.perf_counter() - started)
        return ORJSONResponse(receipt.as_json(), status_code=202)

    receive.__name__ = f"receive_{source}"
    app.post(
        f"/api/v1/alerts/{source}",
        status_code=202,
        summary=f"Receive a {source} webhook",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "202": {"description": "Committed: event, alerts and incidents are stored"},
                "400": {"description": "Body is not JSON"},
                "401": {"description": "Missing or wrong bearer token"},
                "413": {"description": "Body too large"},
                "422": {"description": "A field is invalid; `field` names it"},
                "503": {"description": "Not stored; retry"},
            },
        },
    )(receive)
    return dict(defs)


def _check_token(token_env: str | None, header: str | None) -> Response | None:
    """Constant-time bearer check; the answer never says which part was wrong."""
    expected = os.environ.get(token_env) if token_env else None
    if not expected:
        return None
    return None if bearer_token_ok(expected, header) else _error(401, "unauthorized")


def _check_signature(source: str, settings: SourceConfig, request: Request, body: bytes) -> Response | None:
    """HMAC-SHA256 over the raw body (or `timestamp:body`) when a secret is configured."""
    secret = os.environ.get(settings.signature_secret_env) if settings.signature_secret_env else None
    if not secret:
        return None
    header = settings.signature_header or SIGNATURE_HEADERS.get(source, DEFAULT_SIGNATURE_HEADER)
    given = request.headers.get(header)
    timestamp = request.headers.get(settings.timestamp_header) if settings.timestamp_header else None
    if not given or (settings.timestamp_header and not timestamp):
        return _error(401, f"missing signature header {header}")
    if not verify_hmac_sha256(secret.encode(), body, given, timestamp=timestamp):
        return _error(401, "signature does not match the body")
    return None


def _check_limits(config: Config, alerts: list[Any]) -> None:
    server = config.server
    if len(alerts) > server.max_alerts_per_body:
        raise InvalidPayload(
            "alerts", f"at most {server.max_alerts_per_body} alerts per body (got {len(alerts)})"
        )
    limits = {
        "labels": ("max_label_bytes", server.max_label_bytes),
        "annotations": ("max_annotation_bytes", server.max_annotation_bytes),
    }
    # One pass over every value. NUL is refused on every backend because PostgreSQL cannot
    # store it in text or JSONB, so both backends give the same answer.
    for index, alert in enumerate(alerts):
        for field, value in (("fingerprint", alert.fingerprint), ("name", alert.name)):
            if "\x00" in value:
                raise InvalidPayload(f"alerts.{index}.{field}", "contains a NUL character")
            if len(value.encode()) > server.max_label_bytes:
                raise InvalidPayload(
                    f"alerts.{index}.{field}",
                    f"longer than server.max_label_bytes ({server.max_label_bytes})",
                )
        for kind, (setting, limit) in limits.items():
            for key, value in getattr(alert, kind).items():
                if "\x00" in key or "\x00" in value:
                    raise InvalidPayload(f"alerts.{index}.{kind}.{key}", "contains a NUL character")
                if len(key) > 256:
                    raise InvalidPayload(
                        f"alerts.{index}.{kind}", f"key longer than 256 characters: {key[:40]!r}..."
                    )
                if len(value.encode()) > limit:
                    raise InvalidPayload(
                        f"alerts.{index}.{kind}.{key}", f"value longer than server.{setting} ({limit} bytes)"
                    )


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    return {"items": items, "next": items[-1]["id"] if len(items) == limit and items else None}


def _add_read_routes(app: FastAPI, services: Services) -> None:
    store = services.store

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> Response:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> Response:
        return _error(409, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_request: Request, exc: StoreUnavailable) -> Response:
        return _error(503, str(exc))

    @app.exception_handler(ValueError)
    async def _bad_value(_request: Request, exc: ValueError) -> Response:
        return _error(400, str(exc))

    @app.get("/api/v1/incidents")
    def list_incidents(
        status: str | None = None,
        code: str | None = None,
        since: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Any:
        items = store.list_incidents(
            status=status, code=code, since=parse_since(since), limit=limit, before_id=cursor
        )
        return _page(items, limit)

    @app.get("/api/v1/incidents/{incident_id}")
    def get_incident(incident_id: int = Path(ge=1, le=MAX_ID)) -> Any:
        return store.get_incident(incident_id)

    @app.get("/api/v1/runs")
    def list_runs(
        status: str | None = None,
        playbook: str | None = None,
        since: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Any:
        items = store.list_runs(
            status=status, playbook=playbook, since=parse_since(since), limit=limit, before_id=cursor
        )
        return _page(items, limit)

    @app.get("/api/v1/runs/{run_id}")
    def get_run(run_id: int = Path(ge=1, le=MAX_ID)) -> Any:
        return store.get_run(run_id)

    @app.post("/api/v1/runs/{run_id}/approve")
    def approve_run(run_id: int = Path(ge=1, le=MAX_ID), body: Decision | None = None) -> Any:
        run = store.decide_run(run_id, approve=True, by=(body.by if body else None) or "api")
        services.wake_workers()
        return run

    @app.post("/api/v1/runs/{run_id}/reject")
    def reject_run(run_id: int = Path(ge=1, le=MAX_ID), body: Decision | None = None) -> Any:
        return store.decide_run(
            run_id,
            approve=False,
            by=(body.by if body else None) or "api",
            reason=body.reason if body else None,
        )

    @app.get("/api/v1/codes")
    def list_codes() -> Any:
        catalog = services.intake.view.catalog
        items = []
        for entry in catalog.codes:
            item = entry.code.model_dump(mode="json", by_alias=True)
            playbook = catalog.playbook_for(entry.code)
            item["playbook_version"] = playbook.playbook.version if playbook else None
            items.append(item)
        return {"items": items, "next": None}

    @app.get("/api/v1/playbooks")
    def list_playbooks() -> Any:
        catalog = services.intake.view.catalog
        items = [
            {
                "name": e.playbook.name,
                "version": e.playbook.version,
                "description": e.playbook.description,
                "sha256": e.sha256,
                "idempotent": e.playbook.idempotent,
                "steps": len(e.playbook.steps),
            }
            for e in sorted(catalog.playbooks.values(), key=lambda e: (e.playbook.name, e.playbook.version))
        ]
        return {"items": items, "next": None}

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        if not services.ready():
            return _error(503, "not ready")
        return ORJSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
