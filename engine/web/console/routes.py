"""The console's routes on the daemon's app: sign-in and out, the static files, each page group."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from engine.web.console import catalog, dashboard, people
from engine.web.console.context import (
    HEADERS,
    MAX_FORM_BYTES,
    ConsoleContext,
    Refused,
    SignInNeeded,
    form_fields,
    session_key,
)
from engine.web.console.session import COOKIE


def add_console(app: FastAPI, services: Any) -> None:
    config = services.config
    context = ConsoleContext(services, app.state.access, session_key(config.console.session_secret_env))
    app.mount(
        "/console/static", StaticFiles(packages=[("engine.web.console", "static")]), name="console-static"
    )
    _add_errors(app, context)
    _add_sign_in(app, context)
    for group in (people, dashboard, catalog):
        app.include_router(group.router(context))


def _add_errors(app: FastAPI, context: ConsoleContext) -> None:
    @app.exception_handler(SignInNeeded)
    async def _sign_in(_request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.path)}", status_code=303, headers=HEADERS)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return context.problem(request, exc.status, exc.message)


def _safe_next(path: str | None) -> str:
    """Only a path of this site: `next` must never send a signed-in user elsewhere."""
    if not path or not path.startswith("/") or path.startswith("//") or urlsplit(path).netloc:
        return "/incidents"
    return path


def _add_sign_in(app: FastAPI, context: ConsoleContext) -> None:
    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/incidents", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(next: str | None = None) -> Response:
        return context.page(context.anonymous(), "login.html", next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        fields = form_fields((await request.body())[:MAX_FORM_BYTES])
        target = _safe_next(fields.get("next"))
        # scrypt costs tens of milliseconds by design: off the event loop, as the API's check is.
        actor = await run_in_threadpool(
            context.access.sign_in, fields.get("name", ""), fields.get("password", "")
        )
        if actor is None:
            error = "wrong name or password"
            return context.page(context.anonymous(), "login.html", status=401, next=target, error=error)
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        response.set_cookie(
            COOKIE,
            context.sessions.issue(actor.name),
            max_age=context.sessions.max_age,
            httponly=True,
            samesite="lax",
            secure=context.secure_cookie,
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await context.form(request, needed="read")
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE)
        return response
