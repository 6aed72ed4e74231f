"""What every console page shares: who is looking, how a page is rendered, how a form is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from engine.access import ANONYMOUS, AccessControl, Actor, Role
from engine.errors import ConfigError
from engine.web.console import formatting
from engine.web.console.session import COOKIE, Session, Sessions

#: Largest form a console page posts (a note, a silence's comment).
MAX_FORM_BYTES = 64 * 1024
#: Nothing outside the daemon, ever: no CDN, no font, no beacon. Inline style only for the SVG
#: charts' own style elements; no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    """A page that needs a signed-in user: the answer is the sign-in page, then back here."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(path)


class Refused(Exception):
    """An action the console will not take (403): no CSRF token, not signed in, role too low."""

    def __init__(self, message: str, status: int = 403) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: a signed-in user (with the CSRF token their forms carry) or, where
    reads are open, `anonymous`, who sees everything and can change nothing."""

    actor: Actor
    session: Session | None
    csrf: str | None

    @property
    def may_operate(self) -> bool:
        return self.session is not None and self.actor.may("operate")


@dataclass(frozen=True)
class Form:
    actor: Actor
    fields: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default).strip()


class ConsoleContext:
    def __init__(self, services: Any, access: AccessControl, sessions: Sessions) -> None:
        self.services = services
        self.access = access
        self.sessions = sessions
        self.secure_cookie = str(services.config.server.public_url or "").startswith("https://")
        self.templates = Environment(
            loader=PackageLoader("engine.web.console", "templates"),
            autoescape=select_autoescape(["html", "svg"], default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        formatting.install(self.templates)

    # ------------------------------------------------------------ who

    def viewer(self, request: Request) -> Viewer:
        """The viewer of a read-only page; SignInNeeded when reads are not open to anonymous."""
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is not None:
            actor = self.access.user(session.user)
            if actor is not None:
                return Viewer(actor, session, self.sessions.csrf(session))
        if not self.access.configured or self.access.open_reads:
            return Viewer(ANONYMOUS, None, None)
        raise SignInNeeded(_here(request))

    def anonymous(self) -> Viewer:
        return Viewer(ANONYMOUS, None, None)

    async def form(self, request: Request, needed: Role = "operate") -> Form:
        """A posted form of a signed-in user with role `needed` and the CSRF token of their
        session; Refused otherwise, before anything changes."""
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise Refused("a console action is a form post (application/x-www-form-urlencoded)", 415)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(f"the form is larger than {MAX_FORM_BYTES} bytes", 413)
        fields = form_fields(body)
        session = self.sessions.read(request.cookies.get(COOKIE))
        actor = self.access.user(session.user) if session is not None else None
        if session is None or actor is None:
            raise Refused("sign in to do this")
        if not self.sessions.csrf_ok(session, fields.get("csrf")):
            raise Refused("the form's CSRF token is missing or wrong: reload the page and try again")
        if not actor.may(needed):
            raise Refused(f"{actor.name} has role {actor.role}; this needs role {needed}")
        return Form(actor, fields)

    # ---------------------------------------------------------- answers

    def page(self, viewer: Viewer, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            viewer=viewer, now=self.services.clock.now(), status=status, **values
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def problem(self, request: Request, status: int, message: str) -> HTMLResponse:
        """A refusal or an error as a page that says what to do."""
        try:
            viewer = self.viewer(request)
        except SignInNeeded:
            viewer = self.anonymous()
        return self.page(viewer, "problem.html", status=status, message=message)

    def back(self, path: str, flash: str | None = None) -> Response:
        """After an action: see the page it changed (303, so a reload does not post again)."""
        target = path if flash is None else f"{path}{'&' if '?' in path else '?'}done={quote(flash)}"
        return RedirectResponse(target, status_code=303, headers=HEADERS)

    def now(self) -> datetime:
        return self.services.clock.now()


def form_fields(body: bytes) -> dict[str, str]:
    """An urlencoded form body; a field given twice counts as given last."""
    pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in pairs.items()}


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


#: A session key shorter than this is refused: it would let anyone forge a sign-in.
MIN_SECRET_CHARS = 32


def session_key(env_name: str | None) -> Sessions:
    """The session signer: from the environment variable when configured, else drawn now."""
    if env_name is None:
        return Sessions.drawn()
    value = os.environ.get(env_name, "")
    if len(value) < MIN_SECRET_CHARS:
        state = "is not set" if not value else f"holds fewer than {MIN_SECRET_CHARS} characters"
        raise ConfigError(f"console.session_secret_env: the environment variable {env_name} {state}")
    return Sessions(value.encode("utf-8"))
