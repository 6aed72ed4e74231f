"""A step action whose outcomes are scripted, so the runner's control flow (on_failure, verify,
rollback, retries, deadlines) is tested in milliseconds with no server.

Register one StubAction under every step key (`Runner(..., actions=stub.registry())`) and
script each step, by name, one outcome per attempt: `StubAction({"restart": [fail(), succeed()]})`.
The last outcome of a step repeats; an unscripted step succeeds. With a ManualClock an attempt
takes its `seconds` on that clock, and, like a real action, never more than its budget: an
outcome that would take longer times out when the budget runs out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine.clock import ManualClock
from engine.config import Config
from engine.errors import PermanentFailure, StepTimedOut, TemporaryFailure
from engine.execution.actions.base import Action, ActionContext, Rendering, failed
from engine.models import ACTION_NAMES, ActionResult, StepParams


@dataclass(frozen=True)
class Outcome:
    """What one scripted attempt does; build one with succeed, fail, time_out or crash."""

    result: ActionResult
    #: Seconds the attempt takes on the clock; None: all of its budget.
    seconds: float | None = 0.0
    raises: Exception | None = None


def succeed(
    *, stdout: str = "", registered: Mapping[str, Any] | None = None, seconds: float = 0.0
) -> Outcome:
    """The attempt works; `registered` is what `register:` exposes (default: stdout, exit 0)."""
    exposed = dict(registered) if registered is not None else {"stdout": stdout, "stderr": "", "exit_code": 0}
    return Outcome(ActionResult(ok=True, stdout=stdout, exit_code=0, registered=exposed), seconds)


def fail(
    error: str = "scripted failure",
    *,
    temporary: bool = True,
    seconds: float = 0.0,
    retry_after: float | None = None,
    stderr: str = "",
) -> Outcome:
    """The attempt fails; a temporary failure is retried (within `retries`), a permanent one is not.

    `retry_after` is the delay a server asked for (as an HTTP 429 with Retry-After gives).
    """
    registered: dict[str, Any] = {"retry_after": retry_after} if retry_after is not None else {}
    failure = TemporaryFailure(error) if temporary else PermanentFailure(error)
    return Outcome(failed(failure, stderr=stderr, registered=registered), seconds)


def time_out(*, seconds: float | None = None) -> Outcome:
    """The attempt runs out of time: after its whole budget, or after `seconds`."""
    return Outcome(_timed_out(), seconds)


def crash(exc: Exception) -> Outcome:
    """The action raises `exc`: a bug, or (a StepFailed) its failure told by raising."""
    return Outcome(failed(PermanentFailure("not reached")), 0.0, raises=exc)


def _timed_out() -> ActionResult:
    return failed(StepTimedOut("scripted attempt timed out"))


@dataclass(frozen=True)
class StubCall:
    """One attempt the runner asked for."""

    step: str
    #: The step's templates as rendered ("command" -> "echo 'x'").
    params: dict[str, Any]
    budget: float
    target: str


@dataclass
class StubAction:
    """Stands in for ssh, http and wait at once; remembers every call in `calls`."""

    script: Mapping[str, Outcome | Sequence[Outcome]] = field(default_factory=dict)
    clock: ManualClock | None = None
    #: The budget of a step that sets no `timeout`.
    timeout_seconds: float = 30.0
    calls: list[StubCall] = field(default_factory=list)

    def registry(self) -> dict[str, Action]:
        """This stub under every step key."""
        return dict.fromkeys(ACTION_NAMES, self)

    def render(self, params: StepParams, rendering: Rendering) -> dict[str, Any]:
        if isinstance(params, timedelta):
            return {"seconds": params.total_seconds()}
        rendered: dict[str, Any] = {}
        for template in params.templates():
            key = ".".join(map(str, template.path))
            if key in rendered:
                key = f"{key}.{len(rendered)}"
            rendered[key] = rendering.text(template.source, shell=template.shell)
        return rendered

    def default_timeout(self, rendered: dict[str, Any], config: Config) -> float:
        return self.timeout_seconds

    def shown(self, rendered: dict[str, Any]) -> dict[str, Any]:
        return dict(rendered)

    def execute(self, rendered: dict[str, Any], ctx: ActionContext) -> ActionResult:
        outcome = self._next(ctx.step)
        self.calls.append(StubCall(ctx.step, dict(rendered), ctx.timeout_seconds, ctx.target))
        budget = max(0.0, ctx.timeout_seconds)
        seconds = budget if outcome.seconds is None else outcome.seconds
        if self.clock is not None:
            self.clock.advance(timedelta(seconds=min(seconds, budget)))
        if outcome.raises is not None:
            raise outcome.raises
        if seconds > budget:
            return _timed_out()
        return outcome.result.model_copy(deep=True)

    def attempts(self, step: str) -> int:
        """How many times the runner executed `step`."""
        return sum(call.step == step for call in self.calls)

    def _next(self, step: str) -> Outcome:
        scripted = self.script.get(step)
        if scripted is None:
            return succeed()
        if isinstance(scripted, Outcome):
            return scripted
        if not scripted:
            return succeed()
        return scripted[min(self.attempts(step), len(scripted) - 1)]
