"""Console sessions: a signed, expiring cookie naming the user, and a CSRF token bound to it.

The cookie carries only the user's name and a random nonce; the role is read from the config in
force at every request, so a user removed or demoted loses it at once. The signing key comes
from `console.session_secret_env` (shared by every replica, sessions survive restarts) or is
drawn at start (sessions end with the process)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "suture_session"
#: How long a sign-in lasts: one long shift.
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Session:
    user: str
    nonce: str


class Sessions:
    def __init__(self, key: bytes, max_age: int = SESSION_SECONDS) -> None:
        self.max_age = max_age
        self._cookies = URLSafeTimedSerializer(key, salt="suture-console-session")
        self._csrf_key = hmac.new(key, b"suture-console-csrf", hashlib.sha256).digest()

    @classmethod
    def drawn(cls) -> Sessions:
        return cls(secrets.token_bytes(32))

    def issue(self, user: str) -> str:
        """A new cookie value for `user` (a new nonce: a new CSRF token at every sign-in)."""
        return str(self._cookies.dumps({"u": user, "n": secrets.token_urlsafe(16)}))

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._cookies.loads(cookie, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("u"), str)
            or not isinstance(data.get("n"), str)
        ):
            return None
        return Session(data["u"], data["n"])

    def csrf(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf(session), token)
