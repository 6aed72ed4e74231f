"""`webhook`: Suture's own JSON, for receivers the operator writes (DESIGN.md, "Notification events").

    {"event": "escalation", "incident": {...}, "run": {...}, "sent_at": "2026-12-01T12:30:00Z"}

`run` is there only when the event is about one. The body is serialized once, and with a
`signing_secret` the header `X-Suture-Signature: sha256=<hex>` is the HMAC-SHA256 of exactly
those bytes, so a receiver checks the bytes it got, not a re-encoding of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from engine.notify.channels.http import post_json, shown_url, url_secrets
from engine.notify.channels.text import utc_text
from engine.notify.notice import Notice

SIGNATURE_HEADER = "X-Suture-Signature"


def body(notice: Notice) -> bytes:
    document: dict[str, Any] = {"event": notice.event, "incident": notice.incident}
    if notice.run is not None:
        document["run"] = notice.run
    document["sent_at"] = utc_text(notice.sent_at)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=_json_value).encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_text(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def signature(secret: str, data: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


class WebhookChannel:
    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float,
        signing_secret: SecretStr | None = None,
        url_secret_name: str | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout
        self._signing = signing_secret
        self._shown = shown_url(url, secret_name=url_secret_name)
        self._secrets = [signing_secret, *(url_secrets(url) if url_secret_name else ())]

    def send(self, notice: Notice) -> str:
        data = body(notice)
        headers = {}
        if self._signing is not None:
            headers[SIGNATURE_HEADER] = signature(self._signing.get_secret_value(), data)
        return post_json(
            self._url,
            data,
            what=f"channel {self.name}",
            shown=self._shown,
            timeout=self._timeout,
            secrets=self._secrets,
            headers=headers,
        )
