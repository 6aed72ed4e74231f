"""What an alert endpoint answers: the JSON body, its status, and `Retry-After` on every 503."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    pass


#: Every 503 from an alert endpoint carries `Retry-After` with this many seconds.
RETRY_AFTER_SECONDS = 5


_RETRY_AFTER = str(RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    def render(self) -> bytes:
        return orjson.dumps(self.body, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)

    def headers(self) -> dict[str, str] | None:
        """Headers beyond the content type: a 503 says when to retry."""
        return {"Retry-After": _RETRY_AFTER} if self.status == 503 else None


@dataclass(frozen=True)
class Rejected:
    """A body refused before any write: the metric's reason and the answer."""

    reason: str
    answer: Answer


@dataclass(frozen=True)
class Outcome:
    """What became of one submission, in the shape an intake helper process sends back."""

    status: int
    content: bytes
    reason: str | None = None
    opened: int = 0
    runs_queued: bool = False


def error(status: int, message: str, field: str | None = None) -> Answer:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return Answer(status, body)


@dataclass(frozen=True)
class Relayed(Answer):
    """An answer a helper process already rendered."""

    content: bytes = b""

    def render(self) -> bytes:
        return self.content


UNAVAILABLE = error(503, "alerts not stored: the database is unavailable, retry later")


OVERLOADED = error(503, "alerts not stored: intake is full, retry later")


def is_json(content_type: str | None) -> bool:
    """`application/json`, in any case, with or without parameters (`; charset=utf-8`)."""
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == "application/json"


def unsupported(content_type: str | None) -> Answer:
    """The same words as the rest of the API's 415 (engine/api.py `json_problem`)."""
    if content_type is None:
        return error(415, "Content-Type must be application/json", field="content-type")
    kind = content_type.split(";", 1)[0].strip().lower()[:80]
    return error(415, f"Content-Type must be application/json (got {kind!r})", field="content-type")
