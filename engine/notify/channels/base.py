"""The one interface every channel kind implements."""

from __future__ import annotations

from typing import Protocol

from engine.notify.notice import Notice


class Channel(Protocol):
    """Delivers notices to one configured destination.

    `send` returns what the channel answered, as one short line without secrets
    (`HTTP 202: {"status":"success",...}`, `250 2.0.0 Ok: queued`). It raises
    `engine.errors.TemporaryFailure` when trying again later may work (connection refused,
    timeout, 429, 5xx, SMTP 4xx) and `engine.errors.PermanentFailure` when it will not
    (another 4xx, SMTP 5xx, a body the channel refuses); messages carry no secret.
    """

    name: str
    kind: str

    def send(self, notice: Notice) -> str: ...
