"""The HTTP edge: authenticate, bound, parse, hand to intake, answer. No remediation here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from connectors import CONNECTORS
from engine import metrics
from engine.config import Config
from engine.errors import Conflict, NotFound, StoreUnavailable
from engine.intake import Intake
from engine.intake_helpers import HelperPool
from engine.store import Store
from engine.timeparse import parse_since
from engine.webhooks import WebhookFront, WebhookReceiver, error

log = structlog.get_logger("suture.api")

MAX_ID = 2**62  # larger ids cannot exist; refusing them keeps SQLite's INTEGER from overflowing


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
    helpers: HelperPool | None = None


class Decision(BaseModel):
    """Who approves or rejects a run, and why."""

    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)


def _error(status: int, message: str, field: str | None = None) -> ORJSONResponse:
    answer = error(status, message, field)
    return ORJSONResponse(answer.body, status_code=answer.status)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Suture",
        version="0.1.0",
        description="Event-driven auto-remediation: alerts in, coded incidents and remediation runs out.",
        default_response_class=ORJSONResponse,
    )
    app.state.services = services
    vendor_schemas: dict[str, Any] = {}
    receivers = [
        WebhookReceiver(services.config, services.intake, c, services.helpers, services.wake_workers)
        for c in CONNECTORS.values()
    ]
    for receiver in receivers:
        vendor_schemas.update(_add_alert_route(app, receiver))
    app.state.receivers = receivers
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


def create_asgi(services: Services) -> WebhookFront:
    """What `suture serve` runs: the FastAPI app behind the webhook fast path."""
    app = create_app(services)
    return WebhookFront(app, app.state.receivers)


def _add_alert_route(app: FastAPI, receiver: WebhookReceiver) -> dict[str, Any]:
    """The documented route; `WebhookFront` serves the same receiver ahead of FastAPI."""
    source = receiver.source
    schema = receiver.connector.body_model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})

    async def receive(request: Request) -> Response:
        answer = await receiver.receive(request.headers, request.stream())
        return Response(answer.render(), status_code=answer.status, media_type="application/json")

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
