"""The HTTP edge: authenticate, bound, parse, hand to intake, answer. No remediation here."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from connectors import CONNECTORS
from engine import metrics
from engine.access import AccessDenied, Actor, Role
from engine.analytics import read_stats
from engine.analytics.past import teach
from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config
from engine.durations import parse_since
from engine.errors import Conflict, InvalidArgument, NotFound, StoreUnavailable
from engine.hooks import NO_HOOKS, Hooks
from engine.intake.answers import error
from engine.intake.classify import Intake
from engine.intake.receive import WebhookReceiver
from engine.intake.service import Helpers, front_door
from engine.logging import get_logger
from engine.models import Code
from engine.policy.maintenance import configured_windows, status_entries
from engine.policy.silences import SilenceTermError, silence_terms
from engine.records import (
    AuditEntry,
    Breaker,
    Health,
    Incident,
    IncidentAlert,
    IncidentDetail,
    IncidentState,
    Note,
    Notification,
    Page,
    PlaybookSummary,
    Ready,
    ReceiptAnswer,
    Run,
    RunDetail,
    RunState,
    Silence,
    Stats,
    Status,
    StepResult,
)
from engine.store import Store
from engine.store.catalog_history import CatalogHistory
from engine.store.history import History
from engine.web.console import add_console

log = get_logger("suture.api")

MAX_ID = 2**62  # larger ids cannot exist; refusing them keeps SQLite's INTEGER from overflowing
#: Largest body an /api/v1 request other than an alert may send (a decision's reason fits easily).
MAX_REQUEST_BODY_BYTES = 64 * 1024


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
    wake_notifier: Callable[[], None] = lambda: None
    helpers: Helpers | None = None
    clock: Clock = SYSTEM_CLOCK
    hooks: Hooks = NO_HOOKS


class Decision(BaseModel):
    """Why a run is approved or rejected; who decides is the authenticated caller."""

    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(
        default=None,
        max_length=128,
        deprecated=True,
        description="Ignored: the decision is recorded under the authenticated name.",
    )
    reason: str | None = Field(default=None, max_length=2000)


class NoteBody(BaseModel):
    """A person's note; who wrote it is the authenticated caller."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)


class ResolveBody(BaseModel):
    """Closing an incident by hand, with an optional note kept on it."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, min_length=1, max_length=10_000)


class SilenceBody(BaseModel):
    """A new silence; who made it is the authenticated caller. Give the end as `ends_at` or `for`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"match": {"code": "DISK-.*", "target": "db-1"}, "for": "2h", "comment": "new disk"}]
        },
    )
    match: dict[str, str] = Field(
        description="KEY: REGEX, each matched in full; keys: code, target, severity, source, alertname,"
        " labels.NAME. Every matcher must match."
    )
    starts_at: str | None = Field(default=None, max_length=64, description="ISO 8601; default now.")
    ends_at: str | None = Field(default=None, max_length=64, description="ISO 8601 (UTC if no zone).")
    for_: str | None = Field(
        default=None, alias="for", max_length=32, description="How long from `starts_at`, e.g. 2h."
    )
    comment: str = Field(min_length=1, max_length=10_000)


class PauseBody(BaseModel):
    """Why automation is paused, for the audit log (optional)."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, min_length=1, max_length=10_000)


class ErrorBody(BaseModel):
    """Every error the API answers: a message, and the field it is about when there is one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": "run 7 not found"}, {"error": "limit: ...", "field": "limit"}]
        }
    )
    error: str
    field: str | None = None


class CodeEntry(Code):
    """A code of the catalog in force, with the playbook version its incidents run now."""

    playbook_version: int | None = None


def _error(
    status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> ORJSONResponse:
    answer = error(status, message, field)
    return ORJSONResponse(answer.body, status_code=answer.status, headers=headers)


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _ERROR_MEANINGS[status]} for status in statuses}


_ERROR_MEANINGS = {
    400: "A parameter is invalid",
    401: "Missing or wrong credentials (Bearer token or HTTP Basic)",
    403: "The credentials' role does not allow this, or no access is configured",
    404: "No such object",
    409: "The run is not awaiting approval",
    413: "Body too large",
    415: "A POST body must be Content-Type: application/json",
    422: "A field is invalid; `field` names it",
    503: "The database is unavailable, or intake is full; retry after `Retry-After` seconds",
}


def json_problem(headers: Mapping[str, str]) -> str | None:
    """Why a POST may not go on for its content type, or None.

    A body must be `application/json`: browsers send text/plain and form bodies to any site
    without asking, JSON only after a CORS preflight Suture never grants. An empty POST with
    no content type (what `curl -X POST` sends) is allowed with a Bearer token only: a browser
    adds cached Basic credentials to a cross-site request by itself, but never a Bearer token.
    """
    media = headers.get("content-type")
    if media is not None:
        kind = media.split(";", 1)[0].strip().lower()
        return None if kind == "application/json" else f"Content-Type must be application/json (got {kind!r})"
    empty = headers.get("content-length", "0").strip() == "0" and "transfer-encoding" not in headers
    bearer = headers.get("authorization", "").strip()[:7].lower() == "bearer "
    return None if empty and bearer else "Content-Type must be application/json"


def needed_role(method: str) -> Role:
    """Reads need `read`; anything that may change state needs `operate`."""
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "operate"


class GuardedRoute(APIRoute):
    """An /api/v1 route other than an alert endpoint: content type, then access, then a bounded body,
    all before FastAPI parses anything, so a refused request costs nothing and changes nothing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            headers = request.headers
            if request.method == "POST" and (problem := json_problem(headers)) is not None:
                return _error(415, problem, "content-type")
            needed = needed_role(request.method)
            try:
                # Off the event loop: checking a password costs a scrypt.
                actor = await run_in_threadpool(
                    request.app.state.access.decide, headers.get("authorization"), needed
                )
            except AccessDenied as denied:
                log.info("access_denied", method=request.method, path=request.url.path, status=denied.status)
                challenge = {"WWW-Authenticate": ", ".join(denied.challenges)} if denied.challenges else None
                return _error(denied.status, denied.message, headers=challenge)
            request.state.actor = actor
            if request.method != "GET" and (too_large := await _read_bounded_body(request)) is not None:
                return too_large
            return await handler(request)

        return guarded


async def _read_bounded_body(request: Request) -> Response | None:
    """Read the body now, refusing it past MAX_REQUEST_BODY_BYTES; FastAPI then reuses it."""
    too_large = _error(413, f"body is larger than {MAX_REQUEST_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BODY_BYTES:
        return too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BODY_BYTES:
            return too_large
    request._body = bytes(body)  # Starlette's cache: request.body() answers from it
    return None


def authenticated(request: Request) -> Actor:
    """The caller GuardedRoute authenticated; what an action is recorded under."""
    actor: Actor = request.state.actor
    return actor


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Suture",
        version="0.1.0",
        description="Event-driven auto-remediation: alerts in, coded incidents and remediation runs out.",
        default_response_class=ORJSONResponse,
    )
    app.state.services = services
    app.state.access = services.config.access_control()
    vendor_schemas: dict[str, Any] = {}
    receivers = [
        WebhookReceiver(
            services.config,
            services.intake,
            c,
            services.helpers,
            services.wake_workers,
            services.clock,
            services.hooks,
        )
        for c in CONNECTORS.values()
    ]
    for receiver in receivers:
        vendor_schemas.update(_add_alert_route(app, receiver))
    app.state.receivers = receivers
    _add_error_handlers(app)
    app.include_router(_api_router(services))
    _add_probe_routes(app, services)
    if services.config.console.enabled:
        add_console(app, services)

    def openapi() -> dict[str, Any]:
        # Vendor bodies are read raw (for size limits and exact storage), so FastAPI does not
        # see their models: add their nested schemas to the document ourselves.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(vendor_schemas)
            _restore_examples(schemas)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


#: The answers whose schemas carry examples (see engine.records).
_EXAMPLED: tuple[type[BaseModel], ...] = (
    Incident,
    IncidentDetail,
    IncidentAlert,
    AuditEntry,
    Run,
    RunDetail,
    StepResult,
    ReceiptAnswer,
    Silence,
    Breaker,
    ErrorBody,
)


def _restore_examples(schemas: dict[str, Any]) -> None:
    """FastAPI drops every null from the document, its examples' fields too; a field that is
    always sent, null or not, must stay in them: put each model's own examples back."""
    for model in _EXAMPLED:
        examples = model.model_json_schema().get("examples")
        if examples and model.__name__ in schemas:
            schemas[model.__name__]["examples"] = examples


def create_asgi(services: Services) -> ASGIApp:
    """What `suture serve` runs: the FastAPI app behind the webhook fast path."""
    app = create_app(services)
    return front_door(app, app.state.receivers)


def _add_alert_route(app: FastAPI, receiver: WebhookReceiver) -> dict[str, Any]:
    """The documented route; `WebhookFront` serves the same receiver ahead of FastAPI."""
    source = receiver.source
    schema = receiver.connector.body_model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})

    async def receive(request: Request) -> Response:
        answer = await receiver.receive(request.headers, request.stream())
        content, status = answer.render(), answer.status
        return Response(content, status_code=status, headers=answer.headers(), media_type="application/json")

    receive.__name__ = f"receive_{source}"
    refusals = {
        400: "Body is not JSON",
        401: "Missing or wrong bearer token",
        413: "Body too large",
        415: "Content-Type is not application/json",
        422: "A field is invalid; `field` names it",
        503: "Not stored; retry after the `Retry-After` seconds",
    }
    app.post(
        f"/api/v1/alerts/{source}",
        status_code=202,
        summary=f"Receive a {source} webhook",
        # The receiver renders its own answer; the model documents it.
        response_model=ReceiptAnswer,
        response_description="Committed: event, alerts and incidents are stored",
        responses={status: {"model": ErrorBody, "description": text} for status, text in refusals.items()},
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
        },
    )(receive)
    return dict(defs)


Listed = TypeVar("Listed", Incident, Run, Notification)


def _page(page: type[Page[Listed]], items: list[Listed], limit: int) -> Page[Listed]:
    full = len(items) == limit and items
    return page.trusted({"items": items, "next": items[-1].id if full else None})


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as `{"error", "field"?}`, FastAPI's own (unknown route, wrong method, bad field) too."""

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> Response:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> Response:
        return _error(409, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_request: Request, exc: StoreUnavailable) -> Response:
        return _error(503, str(exc))

    @app.exception_handler(InvalidArgument)
    async def _bad_argument(_request: Request, exc: InvalidArgument) -> Response:
        return _error(400, str(exc))

    @app.exception_handler(HTTPException)
    async def _routing(request: Request, exc: HTTPException) -> Response:
        path = request.url.path[:200]
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"not found: {path}"
        elif exc.status_code == 405:
            allowed = f" (allowed: {headers['Allow']})" if headers.get("Allow") else ""
            message = f"method {request.method} not allowed on {path}{allowed}"
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        problem = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        # ("query", "limit"), ("path", "run_id"), ("body", "reason"); just ("body",) for broken JSON
        loc = [str(part) for part in problem.get("loc", ())]
        field = ".".join(loc[1:]) or (loc[0] if loc else "request")
        return _error(422, f"{field}: {problem.get('msg', 'invalid value')}", field)


def _api_router(services: Services) -> APIRouter:
    """/api/v1 beyond the alert endpoints: every route authenticated by GuardedRoute."""
    store = services.store
    history = CatalogHistory(store.db)
    windows = configured_windows(services.config.maintenance)
    router = APIRouter(route_class=GuardedRoute, responses=_documented(401, 403, 422, 503))

    @router.get("/api/v1/incidents", responses=_documented(400))
    def list_incidents(
        status: IncidentState | None = None,
        code: str | None = None,
        since: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Page[Incident]:
        items = store.list_incidents(
            status=status, code=code, since=parse_since(since), limit=limit, before_id=cursor
        )
        return _page(Page[Incident], items, limit)

    @router.get("/api/v1/incidents/{incident_id}", responses=_documented(404))
    def get_incident(incident_id: int = Path(ge=1, le=MAX_ID)) -> IncidentDetail:
        detail = store.get_incident(incident_id)
        code = services.intake.view.catalog.find_code(detail.code)
        return teach(detail, code.knowledge if code else None, history.previous_incidents(detail))

    @router.post("/api/v1/pause", responses=_documented(413, 415))
    def pause(actor: Annotated[Actor, Depends(authenticated)], body: PauseBody | None = None) -> Status:
        """The global kill switch: no automatic run starts, running ones stop before their next step."""
        store.set_paused(True, actor.name, body.reason if body else None)
        return get_status()

    @router.post("/api/v1/resume", responses=_documented(413, 415))
    def resume(actor: Annotated[Actor, Depends(authenticated)]) -> Status:
        store.set_paused(False, actor.name)
        services.wake_workers()
        return get_status()

    @router.get("/api/v1/status")
    def get_status() -> Status:
        now = services.clock.now()
        return history.status(now, status_entries(windows, now))

    @router.get("/api/v1/runs", responses=_documented(400))
    def list_runs(
        status: RunState | None = None,
        playbook: str | None = None,
        since: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Page[Run]:
        items = store.list_runs(
            status=status, playbook=playbook, since=parse_since(since), limit=limit, before_id=cursor
        )
        return _page(Page[Run], items, limit)

    @router.get("/api/v1/runs/{run_id}", responses=_documented(404))
    def get_run(run_id: int = Path(ge=1, le=MAX_ID)) -> RunDetail:
        return store.get_run(run_id)

    changes = _documented(404, 409, 413, 415)

    @router.post("/api/v1/runs/{run_id}/approve", responses=changes)
    def approve_run(
        actor: Annotated[Actor, Depends(authenticated)],
        run_id: int = Path(ge=1, le=MAX_ID),
        body: Decision | None = None,
    ) -> RunDetail:
        run = store.decide_run(run_id, approve=True, by=actor.name)
        services.wake_workers()
        return run

    @router.post("/api/v1/runs/{run_id}/reject", responses=changes)
    def reject_run(
        actor: Annotated[Actor, Depends(authenticated)],
        run_id: int = Path(ge=1, le=MAX_ID),
        body: Decision | None = None,
    ) -> RunDetail:
        reason = body.reason if body else None
        return store.decide_run(run_id, approve=False, by=actor.name, reason=reason)

    @router.post("/api/v1/incidents/{incident_id}/ack", responses=changes)
    def acknowledge_incident(
        actor: Annotated[Actor, Depends(authenticated)], incident_id: int = Path(ge=1, le=MAX_ID)
    ) -> Incident:
        return store.acknowledge(incident_id, actor.name)

    @router.post("/api/v1/incidents/{incident_id}/notes", responses=changes, status_code=201)
    def add_note(
        actor: Annotated[Actor, Depends(authenticated)],
        body: NoteBody,
        incident_id: int = Path(ge=1, le=MAX_ID),
    ) -> Note:
        return store.add_note(incident_id, actor.name, body.text)

    @router.post("/api/v1/incidents/{incident_id}/resolve", responses=changes)
    def resolve_incident(
        actor: Annotated[Actor, Depends(authenticated)],
        incident_id: int = Path(ge=1, le=MAX_ID),
        body: ResolveBody | None = None,
    ) -> Incident:
        incident = store.resolve_by_hand(incident_id, actor.name, body.note if body else None)
        services.wake_notifier()
        return incident

    @router.get("/api/v1/notifications", responses=_documented(400))
    def list_notifications(
        status: Literal["pending", "sending", "sent", "failed"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> Page[Notification]:
        items = store.outbox.list(status=status, limit=limit, before_id=cursor)
        return _page(Page[Notification], items, limit)

    @router.get("/api/v1/codes")
    def list_codes() -> Page[CodeEntry]:
        catalog = services.intake.view.catalog
        items = []
        for entry in catalog.codes:
            playbook = catalog.playbook_for(entry.code)
            version = playbook.playbook.version if playbook else None
            # The code was validated when the catalog loaded: copy its fields, do not check them again.
            items.append(CodeEntry.model_construct(**dict(entry.code), playbook_version=version))
        return Page[CodeEntry](items=items, next=None)

    @router.get("/api/v1/playbooks")
    def list_playbooks() -> Page[PlaybookSummary]:
        catalog = services.intake.view.catalog
        items = [
            PlaybookSummary(
                name=e.playbook.name,
                version=e.playbook.version,
                description=e.playbook.description,
                sha256=e.sha256,
                idempotent=e.playbook.idempotent,
                steps=len(e.playbook.steps),
            )
            for e in sorted(catalog.playbooks.values(), key=lambda e: (e.playbook.name, e.playbook.version))
        ]
        return Page[PlaybookSummary](items=items, next=None)

    silences = store.silences

    @router.get("/api/v1/silences")
    def list_silences(
        include_ended: bool = Query(False, alias="all", description="Include silences that have ended."),
    ) -> Page[Silence]:
        """Silences that have not ended (or every one, `all=true`), newest first; one page."""
        return Page[Silence].trusted({"items": silences.list(include_ended=include_ended), "next": None})

    @router.post(
        "/api/v1/silences", response_model=Silence, status_code=201, responses=_documented(400, 413, 415)
    )
    def add_silence(actor: Annotated[Actor, Depends(authenticated)], body: SilenceBody) -> Response | Silence:
        try:
            matchers, start, end = silence_terms(
                body.match, body.starts_at, body.ends_at, body.for_, services.clock.now()
            )
        except SilenceTermError as exc:
            return _error(422, str(exc), exc.field)
        return silences.add(matchers, start, end, actor.name, body.comment)

    @router.delete("/api/v1/silences/{silence_id}", responses=_documented(404, 409, 413))
    def expire_silence(
        actor: Annotated[Actor, Depends(authenticated)], silence_id: int = Path(ge=1, le=MAX_ID)
    ) -> Silence:
        """End a silence now, recorded under the authenticated name."""
        return silences.expire(silence_id, actor.name)

    breakers = store.breakers

    @router.get("/api/v1/breakers")
    def list_breakers() -> Page[Breaker]:
        """Every circuit breaker, open ones first; one page."""
        return Page[Breaker].trusted({"items": breakers.list(), "next": None})

    @router.post("/api/v1/breakers/{playbook}/{version}/reset", responses=changes)
    def reset_breaker(
        actor: Annotated[Actor, Depends(authenticated)],
        playbook: str = Path(max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$"),
        version: int = Path(ge=1, le=MAX_ID),
    ) -> Breaker:
        """Close an open breaker, recorded under the authenticated name."""
        return breakers.reset(playbook, version, actor.name)

    stats_history = History(store.db)

    @router.get("/api/v1/stats", responses=_documented(400))
    def get_stats(since: str = "30d") -> Stats:
        """`suture stats --json`: incidents opened since `since` (a duration back or an ISO time)."""
        now = services.clock.now()
        start = parse_since(since, now)
        if start is None or start >= now:
            raise InvalidArgument(f"since: {since!r} is not in the past")
        codes = {entry.code.code: entry.code for entry in services.intake.view.catalog.codes}
        return read_stats(stats_history, codes, start, now)

    return router


def _add_probe_routes(app: FastAPI, services: Services) -> None:
    """Health, readiness and metrics: open to the machine's own probes and scrapers."""

    @app.get("/healthz")
    def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz", response_model=Ready, responses={503: {"model": ErrorBody, "description": "Not ready"}}
    )
    def readyz() -> Ready | Response:
        if not services.ready():
            return _error(503, "not ready")
        return Ready()

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
