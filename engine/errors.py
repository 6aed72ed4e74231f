"""One exception tree; the CLI and the API turn these into user messages."""

from __future__ import annotations


class SutureError(Exception):
    """Root of every error Suture raises on purpose."""


class ConfigError(SutureError):
    """config.yaml is wrong; the message names file, key and expectation."""


class CatalogError(SutureError):
    """codes/ or playbooks/ are invalid; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class TemplateError(SutureError):
    """A template failed to render (undefined name, sandbox violation, syntax)."""


class StoreUnavailable(SutureError):
    """The database could not take a write; senders should retry (HTTP 503)."""


class NotFound(SutureError):
    """A requested object does not exist."""


class Conflict(SutureError):
    """The object is not in a state that allows the request (e.g. approving a finished run)."""


class InvalidPayload(SutureError):
    """An inbound body is not valid for its source; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ActionError(SutureError):
    """A step's action failed; `retryable` tells temporary from permanent."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)
