"""The `wait` step (`wait: 10s`): pause the run, within the step's time budget."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, ClassVar

from engine.config import Config
from engine.durations import format_duration
from engine.errors import StepTimedOut
from engine.execution.actions.base import ActionContext, Rendering, failed
from engine.models import ActionResult


class WaitAction:
    """Sleep for the given duration; a duration longer than the step budget times out.

    The step sleeps `min(duration, budget)`: when the duration does not fit in the
    budget, the step waits out the budget and fails with `timed_out=True` (not
    retryable: the next attempt would not fit either). `wait: 0s` returns at once.
    """

    name: ClassVar[str] = "wait"

    def render(self, params: timedelta, rendering: Rendering) -> timedelta:
        return params  # a duration holds no template

    def default_timeout(self, rendered: timedelta, config: Config) -> float:
        """The wait itself plus a second: a wait fits its own step unless `timeout` says less."""
        return rendered.total_seconds() + 1.0

    def shown(self, rendered: timedelta) -> dict[str, Any]:
        return {"seconds": rendered.total_seconds()}

    def execute(self, params: timedelta, ctx: ActionContext) -> ActionResult:
        seconds = params.total_seconds()
        if seconds <= 0:
            return ActionResult(ok=True)
        budget = max(0.0, float(ctx.timeout_seconds))
        if seconds > budget:
            if budget > 0:
                time.sleep(budget)
            too_long = (
                f"wait: {format_duration(params)} is longer than the step's time budget "
                f"of {budget:g}s; timed out"
            )
            return failed(StepTimedOut(too_long, retryable=False))
        time.sleep(seconds)
        return ActionResult(ok=True)
