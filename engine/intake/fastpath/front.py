"""The ASGI layer `suture serve` puts in front of FastAPI: alert POSTs go to their receiver.

It skips FastAPI's routing, middleware and dependency machinery: under an alert storm that
machinery was a quarter of the daemon's CPU (py-spy, bench ingest). Every other request goes
to FastAPI unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    pass
from engine.intake.answers import RETRY_AFTER_SECONDS, error
from engine.intake.receive import WebhookReceiver
from engine.logging import get_logger

log = get_logger("suture.api")


class WebhookFront:
    """ASGI: alert POSTs to their receiver directly, everything else to `app` (FastAPI)."""

    def __init__(self, app: ASGIApp, receivers: list[WebhookReceiver]) -> None:
        self.app = app
        self.receivers = {receiver.path: receiver for receiver in receivers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            receiver = self.receivers.get(scope["path"])
            if receiver is not None:
                await self._handle(receiver, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _handle(self, receiver: WebhookReceiver, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await receiver.receive(Headers(scope=scope), _body_chunks(receive))
        except _ClientGone:
            return  # nothing was stored and nobody is left to answer
        except Exception:  # noqa: BLE001 - the same last resort FastAPI's error middleware gives
            log.exception("webhook_failed", source=receiver.source)
            answer = error(500, "internal error")
        content = answer.render()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        if answer.status == 503:
            headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class _ClientGone(Exception):
    """The sender disconnected before its body was complete."""


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return
