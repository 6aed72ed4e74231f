"""One exception tree. Each class says what a failure means, so callers decide by class, not by text.

    SutureError
    ├── ConfigError, YamlSyntaxError, CatalogError, TemplateError   the files are wrong
    ├── InvalidPayload, InvalidArgument, NotFound, Conflict         the request is wrong
    ├── StoreUnavailable                                            try again later
    └── StepFailed                                                  a step's action did not do its job
        ├── TemporaryFailure    trying again may help
        ├── PermanentFailure    trying again meets the same answer
        └── StepTimedOut        the step's time ran out

The CLI prints any SutureError as one line and exits non-zero; the API answers each user-input
class with its status (400, 404, 409, 422). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class SutureError(Exception):
    """Root of every error Suture raises on purpose."""


# ------------------------------------------------------------------ the files


class ConfigError(SutureError):
    """config.yaml is wrong; the message names file, key and expectation."""


class YamlSyntaxError(SutureError):
    """A file that is not YAML Suture accepts; always `file:line: message`, never a traceback."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}")


class CatalogError(SutureError):
    """codes/ or playbooks/ are invalid; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class TemplateError(SutureError):
    """A template failed to render (undefined name, sandbox violation, syntax)."""


# ---------------------------------------------------------------- the request


class InvalidPayload(SutureError):
    """An inbound body is not valid for its source; `field` names what is wrong (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class InvalidArgument(SutureError):
    """A value given to a command or in a query string is not valid (`--since nonsense`): 400, exit 1."""


class NotFound(SutureError):
    """A requested object does not exist."""


class Conflict(SutureError):
    """The object is not in a state that allows the request (e.g. approving a finished run)."""


class StoreUnavailable(SutureError):
    """The database could not take a write; senders should retry (HTTP 503)."""


class LeaseLost(SutureError):
    """A worker's claim on a run is no longer its own (the lease ran out and another replica
    took the run back): it must stop and write nothing more for that run."""


# ----------------------------------------------------------------- the steps


class StepFailed(SutureError):
    """A step's action failed; the message is what the run's history shows (never a secret)."""

    #: Whether another attempt (the step's `retries`) is worth making.
    retryable: bool = False
    #: Whether the step ran out of time (the run ends `timed_out`, not `failed`).
    timed_out: bool = False


class TemporaryFailure(StepFailed):
    """Trying again may help: connection refused or reset, a connect timeout, HTTP 5xx or 429."""

    retryable = True


class PermanentFailure(StepFailed):
    """Trying again meets the same answer: auth refused, HTTP 4xx, host key mismatch, a refused URL."""


class StepTimedOut(StepFailed):
    """The step's time budget ran out; retryable unless the next attempt could not fit either."""

    timed_out = True

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
