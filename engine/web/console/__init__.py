"""The web console: server-rendered pages for on-call and the team lead, on the daemon's own port.

Jinja2 templates through FastAPI, no build step, nothing loaded from outside the package; forms
work without JavaScript. People sign in with `access.users`; a signed cookie carries the session
and every state-changing form a CSRF token bound to it.
"""

from engine.web.console.routes import add_console

__all__ = ["add_console"]
