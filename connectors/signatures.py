"""Request authentication helpers for the alert endpoints: HMAC signatures and bearer tokens.

Both compare in constant time (`hmac.compare_digest`) and answer False, never raise,
for anything malformed, so the API can map every failure to one 401.

Grafana (webhook contact point, "HMAC signature" settings) signs the raw body with
HMAC-SHA256 and sends the lowercase hex digest in `X-Grafana-Alerting-Signature`; when a
timestamp header is configured (conventionally `X-Grafana-Alerting-Signature-Timestamp`,
Unix seconds) the signed message is `<timestamp>:<body>` instead, which lets a receiver
refuse replays of old requests.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

SIGNATURE_HEADER = "X-Grafana-Alerting-Signature"
TIMESTAMP_HEADER = "X-Grafana-Alerting-Signature-Timestamp"
_PREFIX = "sha256="


def sign_hmac_sha256(secret: bytes, body: bytes, timestamp: str | None = None) -> str:
    """The lowercase hex digest a sender puts in the signature header."""
    message = body if timestamp is None else f"{timestamp}:".encode() + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_hmac_sha256(
    secret: bytes,
    body: bytes,
    header_value: str,
    timestamp: str | None = None,
    max_skew_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """True if `header_value` is the HMAC-SHA256 of the body (hex, optionally `sha256=`-prefixed).

    With `timestamp` (Unix seconds, as sent) the signed message is `f"{timestamp}:" + body`
    and the timestamp must lie within `max_skew_seconds` of `now` (default: the clock),
    in either direction.
    """
    if not secret or not isinstance(header_value, str):
        return False
    provided = header_value.strip()
    if provided[: len(_PREFIX)].lower() == _PREFIX:
        provided = provided[len(_PREFIX) :]
    if timestamp is not None and not _fresh(timestamp, max_skew_seconds, now):
        return False
    expected = sign_hmac_sha256(secret, body, timestamp)
    return hmac.compare_digest(expected.encode("ascii"), provided.lower().encode("utf-8", "replace"))


def _fresh(timestamp: str, max_skew_seconds: int, now: float | None) -> bool:
    try:
        sent = float(timestamp.strip())
    except (ValueError, AttributeError):
        return False
    if not math.isfinite(sent):
        return False
    current = time.time() if now is None else now
    return abs(current - sent) <= max_skew_seconds


def bearer_token_ok(expected: str, authorization_header: str | None) -> bool:
    """True if the header is `Bearer <expected>` (any case of "Bearer"); an empty `expected` never matches."""
    if not expected or not authorization_header:
        return False
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(expected.encode("utf-8", "replace"), token.strip().encode("utf-8", "replace"))
