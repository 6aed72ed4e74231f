"""Who may use the API: role tokens and password users from `access:`, decided without I/O.

The API asks one question per request, `AccessControl.decide(authorization, needed)`, and gets
an `Actor` (whose name is what the audit log records) or a `Denied` (401 or 403 and why).
Secrets are compared with `hmac.compare_digest` over digests of equal length, so neither the
content nor the length of a token leaks through timing; an unknown user name still costs one
scrypt, so probing for names is no faster than probing for passwords.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from engine.errors import InvalidArgument, SutureError

Role = Literal["read", "operate"]

#: Which roles satisfy which need: `operate` implies `read`.
_GRANTS: dict[Role, frozenset[Role]] = {
    "read": frozenset({"read", "operate"}),
    "operate": frozenset({"operate"}),
}

#: scrypt parameters for new hashes: 16 MiB of memory per check (128 * r * n bytes).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES, _KEY_BYTES = 16, 32
#: Parameters accepted in a configured hash: a typo must not ask for gigabytes per request.
_MAX_N, _MAX_R, _MAX_P, _MAX_MEMORY = 2**20, 32, 16, 256 * 1024 * 1024

NO_ACCESS_CONFIGURED = (
    "no access configured: add access.tokens or access.users (role operate) to config.yaml "
    "to change anything over the API; the suture CLI works without it"
)


class AccessDenied(SutureError):
    """A request the API refuses before doing anything: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str, challenges: tuple[str, ...] = ()) -> None:
        self.status = status
        self.message = message
        self.challenges = challenges
        super().__init__(message)


@dataclass(frozen=True)
class Actor:
    """An authenticated caller; `name` is what actions are recorded under."""

    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return self.role in _GRANTS[needed]


#: The caller of an open read: nobody in particular, never recorded as an actor of a change.
ANONYMOUS = Actor("anonymous", "read")


@dataclass(frozen=True)
class PasswordHash:
    """A parsed `scrypt:<n>:<r>:<p>:<salt b64>:<hash b64>`."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, password: str) -> bool:
        derived = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(derived, self.key)

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        key = base64.b64encode(self.key).decode()
        return f"scrypt:{self.n}:{self.r}:{self.p}:{salt}:{key}"


def _memory(n: int, r: int, p: int) -> int:
    """What hashlib.scrypt needs for these parameters (OpenSSL's own estimate)."""
    return 128 * r * (n + p + 2)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    memory = _memory(n, r, p) + 1024 * 1024
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=memory)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new salted hash for access.users[].password_hash."""
    if not password:
        raise InvalidArgument("the password is empty")
    salt = os.urandom(_SALT_BYTES)
    return str(PasswordHash(n, r, p, salt, _scrypt(password, salt, n, r, p, _KEY_BYTES)))


def parse_password_hash(text: str) -> PasswordHash:
    """Parse and bound a configured hash; ValueError says what is wrong (never echoes the hash)."""
    expected = "expected scrypt:<n>:<r>:<p>:<salt base64>:<hash base64> as printed by `suture access hash`"
    parts = text.strip().split(":")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(expected)
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(expected) from None
    if n < 2 or n > _MAX_N or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two from 2 to {_MAX_N}")
    if not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P or _memory(n, r, p) > _MAX_MEMORY:
        raise ValueError(f"scrypt r must be 1..{_MAX_R} and p 1..{_MAX_P}, within {_MAX_MEMORY >> 20} MiB")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("scrypt salt must be at least 8 bytes and the hash at least 16")
    return PasswordHash(n, r, p, salt, key)


@dataclass(frozen=True)
class Token:
    """A configured API token; its value prints as `**********`."""

    name: str
    value: SecretStr
    role: Role


@dataclass(frozen=True)
class User:
    name: str
    password: PasswordHash
    role: Role


class AccessControl:
    """The API's access rules, with token values already read from the environment."""

    def __init__(self, tokens: Sequence[Token], users: Sequence[User], *, open_reads: bool = False) -> None:
        self._tokens = [
            (_digest(t.value.get_secret_value().encode("utf-8")), Actor(t.name, t.role)) for t in tokens
        ]
        self._users = {u.name: (u.password, Actor(u.name, u.role)) for u in users}
        self.open_reads = open_reads
        challenges = []
        if tokens:
            challenges.append('Bearer realm="suture"')
        if users:
            challenges.append('Basic realm="suture", charset="UTF-8"')
        self.challenges = tuple(challenges)
        # Spent on an unknown user name so that it costs what a wrong password costs.
        self._decoy = PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"suture-decoy-salt", b"\0" * _KEY_BYTES)

    @property
    def configured(self) -> bool:
        return bool(self._tokens or self._users)

    def decide(self, authorization: str | None, needed: Role) -> Actor:
        """The caller of a request needing `needed`, or AccessDenied (401 or 403)."""
        if not self.configured:
            # Only reachable on a loopback server.host: config refuses anything else.
            if needed == "read":
                return ANONYMOUS
            raise AccessDenied(403, NO_ACCESS_CONFIGURED)
        if not authorization or not authorization.strip():
            if needed == "read" and self.open_reads:
                return ANONYMOUS
            raise AccessDenied(401, "authentication required", self.challenges)
        actor = self.authenticate(authorization)
        if actor is None:
            raise AccessDenied(401, "unauthorized", self.challenges)
        if not actor.may(needed):
            raise AccessDenied(403, f"{actor.name} has role {actor.role}; this needs role {needed}")
        return actor

    def authenticate(self, authorization: str) -> Actor | None:
        """The actor an Authorization header proves, or None; never says which part was wrong."""
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return self._bearer(credentials)
        if scheme.lower() == "basic" and credentials:
            return self._basic(credentials)
        return None

    def _bearer(self, token: str) -> Actor | None:
        given = _digest(token.encode("utf-8", "replace"))
        found = None
        for expected, actor in self._tokens:  # every token compared, whichever matches
            if hmac.compare_digest(given, expected) and found is None:
                found = actor
        return found

    def _basic(self, credentials: str) -> Actor | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, colon, password = decoded.partition(":")
        if not colon:
            return None
        return self.sign_in(name, password)

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def user(self, name: str) -> Actor | None:
        """A configured user by name, with the role the config in force gives them."""
        entry = self._users.get(name)
        return None if entry is None else entry[1]

    def sign_in(self, name: str, password: str) -> Actor | None:
        """The user a name and password prove (the console's sign-in form, HTTP Basic), or None."""
        entry = self._users.get(name)
        if entry is None:
            self._decoy.matches(password)
            return None
        hashed, actor = entry
        return actor if hashed.matches(password) else None


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
