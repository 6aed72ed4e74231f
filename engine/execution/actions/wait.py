"""The `wait` step (`wait: 10s`): pause the run, within the step's time budget."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import ClassVar

from engine.durations import format_duration
from engine.execution.actions.base import ActionContext
from engine.models import ActionResult


class WaitAction:
    """Sleep for the given duration; a duration longer than the step budget times out.

    The step sleeps `min(duration, budget)`: when the duration does not fit in the
    budget, the step waits out the budget and fails with `timed_out=True` (not
    retryable: the next attempt would not fit either). `wait: 0s` returns at once.
    """

    name: ClassVar[str] = "wait"

    def execute(self, params: timedelta, ctx: ActionContext) -> ActionResult:
        seconds = params.total_seconds()
        if seconds <= 0:
            return ActionResult(ok=True)
        budget = max(0.0, float(ctx.timeout_seconds))
        if seconds > budget:
            if budget > 0:
                time.sleep(budget)
            return ActionResult(
                ok=False,
                timed_out=True,
                retryable=False,
                error=(
                    f"wait: {format_duration(params)} is longer than the step's time budget "
                    f"of {budget:g}s; timed out"
                ),
            )
        time.sleep(seconds)
        return ActionResult(ok=True)
