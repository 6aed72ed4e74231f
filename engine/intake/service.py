"""What the rest of the daemon sees of intake beyond the writer: helper processes, the raw ASGI
front, health. The fast path (engine/intake/fastpath/) stays behind these three functions, so
it can change, or be switched off, without the web layer or the daemon knowing its modules."""

from __future__ import annotations

from typing import Protocol

from starlette.types import ASGIApp

from engine.config import Config
from engine.hooks import Hooks
from engine.intake.fastpath.front import WebhookFront
from engine.intake.fastpath.helpers import HelperPool
from engine.intake.receive import Relay, WebhookReceiver
from engine.intake.writer import IntakeWriter


class Helpers(Relay, Protocol):
    def intake_health(self) -> str | None: ...

    def close(self, timeout: float = 10.0) -> None: ...


def start_helpers(config: Config, hooks: Hooks, *, shared_database: bool) -> Helpers | None:
    """The intake helper pool, when configured and the database can be opened by other processes."""
    if not config.server.intake_helpers or not shared_database:
        return None
    return HelperPool(config, hooks)


def front_door(app: ASGIApp, receivers: list[WebhookReceiver]) -> ASGIApp:
    """`app` behind the raw ASGI front that hands alert POSTs straight to their receiver."""
    return WebhookFront(app, receivers)


def intake_health(writer: IntakeWriter, helpers: Helpers | None) -> str | None:
    """Why intake cannot commit now, in one line, or None: this process's writer, then its helpers."""
    return writer.intake_health() or (helpers.intake_health() if helpers is not None else None)
