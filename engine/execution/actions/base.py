"""The one interface every step action implements, and what actions share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.config import Config
from engine.errors import PermanentFailure, StepFailed, StepTimedOut, TemporaryFailure
from engine.models import ActionResult
from engine.templating import RenderSession


class RunResources:
    """Things an action may keep for the rest of one run (SSH connections); closed at its end."""

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must never fail a run
                pass


@dataclass
class ActionContext:
    config: Config
    #: The incident's target host, already rendered (e.g. "web-1").
    target: str
    #: Wall-clock budget for this attempt, in seconds.
    timeout_seconds: float
    #: Cap for stdout and stderr each, in bytes.
    output_limit_bytes: int
    resources: RunResources = field(default_factory=RunResources)
    #: The step's name as the run record shows it.
    step: str = ""


@dataclass(frozen=True)
class Rendering:
    """What an action renders its step's templates with: the run's renderer, the names known so
    far, and the code's match patterns (a label matching its declared pattern may start with "-")."""

    renderer: RenderSession
    variables: Mapping[str, Any]
    patterns: Mapping[str, str] = field(default_factory=dict)

    def text(self, template: str, *, shell: bool = False) -> str:
        """One template; `shell=True` shell-quotes each value."""
        return self.renderer.render(template, self.variables, shell=shell, patterns=self.patterns)

    def value(self, value: Any) -> Any:
        """Every string inside dicts and lists rendered; keys and other values kept."""
        return self.renderer.render_value(value, self.variables)


class Action(Protocol):
    """One step kind. The runner knows none of them: it asks the action registered under the
    step's key (`ssh`, `http`, `wait`) to render, bound, show and execute its parameters.

    `params` is the step's value for that key (SshStep, HttpStep, timedelta); `rendered` is what
    `render` made of it. `render` raises TemplateError; `execute` reports failure in its result.
    """

    def render(self, params: Any, rendering: Rendering) -> Any: ...

    def default_timeout(self, rendered: Any, config: Config) -> float:
        """Seconds an attempt may take when the step sets no `timeout`."""
        ...

    def shown(self, rendered: Any) -> dict[str, Any]:
        """The parameters the run record shows (secrets are redacted after)."""
        ...

    def execute(self, rendered: Any, ctx: ActionContext) -> ActionResult: ...


def failed(failure: StepFailed, **output: Any) -> ActionResult:
    """The result of an attempt that failed as `failure` says; `output` is what it saw before."""
    return ActionResult(
        ok=False, error=str(failure), retryable=failure.retryable, timed_out=failure.timed_out, **output
    )


def failure_of(result: ActionResult) -> StepFailed | None:
    """What a result's failure means, as a class the runner decides by; None when it succeeded."""
    if result.ok:
        return None
    message = result.error or "failed"
    if result.timed_out:
        return StepTimedOut(message, retryable=result.retryable)
    return TemporaryFailure(message) if result.retryable else PermanentFailure(message)


TRUNCATION_MARKER = "\n[... output truncated by suture: {omitted} more bytes ...]"


def cap_output(data: bytes | str, limit: int) -> str:
    """Decode and cut output to `limit` bytes, saying how much was cut."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if len(raw) <= limit:
        return raw.decode("utf-8", "replace")
    kept = raw[:limit].decode("utf-8", "ignore")
    return kept + TRUNCATION_MARKER.format(omitted=len(raw) - limit)
