"""Execute one playbook version for one run: steps, verify, rollback, retries, deadlines.

Knows no step kind, no HTTP and no SQL: each step's action comes from the registry by name and
renders, bounds, shows and executes its own parameters; results go to a `record` callback; time
comes from an injected clock and sleep, so this control flow is unit-tested with a StubAction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import Config
from engine.errors import PermanentFailure, StepFailed, StepTimedOut, TemplateError, TemporaryFailure
from engine.execution.actions import (
    Action,
    ActionContext,
    Registry,
    Rendering,
    RunResources,
    default_registry,
)
from engine.execution.actions.base import failed, failure_of
from engine.hooks import NO_HOOKS, Hooks, StepFinished
from engine.logging import get_logger
from engine.models import ActionResult, OnFailure, Playbook, RunStatus, Step
from engine.templating import Renderer

log = get_logger("suture.runner")

StepRecord = dict[str, Any]
Recorder = Callable[[StepRecord], None]


class _DryValue:
    """Stands for a response body a dry run never received: any field of it is itself, falsy."""

    def __getattr__(self, _name: str) -> _DryValue:
        return self

    def __getitem__(self, _key: Any) -> _DryValue:
        return self

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return ""


#: What a registered step exposes in a dry run, so later templates still render.
_DRY_REGISTERED = {"stdout": "", "stderr": "", "exit_code": 0, "status": 0, "body": "", "json": _DryValue()}


#: A failed attempt's record status, by what its failure means.
_STATUS_OF: dict[type[StepFailed], str] = {
    TemporaryFailure: "failed",
    PermanentFailure: "failed",
    StepTimedOut: "timed_out",
}

#: Seconds a rollback may run past the playbook's deadline: undoing must not be cut short.
ROLLBACK_SECONDS = 60.0


@dataclass
class RunOutcome:
    status: RunStatus
    error: str | None = None
    remediated: bool = False
    steps: list[StepRecord] = field(default_factory=list)


#: Asked before every step after the first: why the run must stop now, or None to go on.
Proceed = Callable[[], str | None]


class _Cancelled(Exception):
    """The problem went away (or a person stepped in) between two steps."""


class _PhaseFailed(Exception):
    def __init__(self, message: str, *, timed_out: bool = False, rollback: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.rollback = rollback


class Runner:
    """Shared by every worker thread; each `execute` keeps its state in an `_Execution`.

    `actions` defaults to the built-in registry (ssh, http, wait); `sleep` waits between
    attempts and `clock` measures deadlines and stamps records, so a test can move time by hand.
    """

    def __init__(
        self,
        config: Config,
        renderer: Renderer,
        *,
        actions: Registry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = SYSTEM_CLOCK,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.config = config
        self.renderer = renderer
        self._actions = actions
        self.sleep = sleep
        self.clock = clock
        self.hooks = hooks

    @property
    def actions(self) -> Registry:
        if self._actions is None:
            self._actions = default_registry()  # looked up late: paramiko only when a run executes
        return self._actions

    def execute(
        self,
        playbook: Playbook,
        context: dict[str, Any],
        *,
        dry_run: bool = False,
        record: Recorder | None = None,
        patterns: Mapping[str, str] | None = None,
        run_id: int | None = None,
        proceed: Proceed | None = None,
    ) -> RunOutcome:
        """Run the playbook to a final status; never raises for a step's failure.

        `patterns` are the code's match patterns ("labels.x" -> regex): a value of a label the
        code constrains may start with "-" where an SSH command reads options, if it matches.
        With a `run_id`, each recorded step is announced as a StepFinished hook event.
        `proceed` is asked before every step after the first (verification included, rollback
        not: undoing must finish); a reason ends the run `cancelled` with the remaining steps unrun.
        """
        execution = _Execution(self, playbook, context, dry_run, record, patterns or {}, run_id, proceed)
        try:
            return execution.run()
        finally:
            execution.resources.close()


class _Execution:
    def __init__(
        self,
        runner: Runner,
        playbook: Playbook,
        context: dict[str, Any],
        dry_run: bool,
        record: Recorder | None,
        patterns: Mapping[str, str],
        run_id: int | None,
        proceed: Proceed | None = None,
    ) -> None:
        self.runner = runner
        self.proceed = proceed
        self.started = 0  # steps begun, for `proceed`
        self.config = runner.config
        self.actions = runner.actions
        self.clock = runner.clock
        self.run_id = run_id
        # Per run: it also redacts whatever expressions touching secrets rendered to.
        self.renderer = runner.renderer.session()
        self.patterns = patterns
        self.playbook = playbook
        self.variables: dict[str, Any] = dict(context)
        self.target = str(context.get("target") or "")
        self.dry_run = dry_run
        self.record = record
        self.deadline = self.clock.monotonic() + playbook.timeout.total_seconds()
        self.resources = RunResources()
        self.outcome = RunOutcome(status=RunStatus.succeeded)
        self.seq = 0
        #: Steps that failed with `on_failure: continue`; the run says so even when it succeeds.
        self.continued: list[str] = []

    def run(self) -> RunOutcome:
        missing = self._preflight()
        if missing:
            self.outcome.status = RunStatus.failed
            self.outcome.error = self.renderer.redact(f"not started: {missing}")
            return self.outcome
        try:
            executed = self._phase("steps", self.playbook.steps)
            if not executed and not self.dry_run:
                self.outcome.status = RunStatus.skipped
                self.outcome.error = "every step was skipped by its `when` condition"
                return self.outcome
            self._phase("verify", self.playbook.verify, verifying=True)
        except _PhaseFailed as failure:
            return self._failed(failure)
        except _Cancelled as cancelled:
            self.outcome.status = RunStatus.cancelled
            self.outcome.error = self.renderer.redact(f"cancelled before the next step: {cancelled}")
            return self.outcome
        if self.continued:
            self.outcome.error = self.renderer.redact(
                f"{len(self.continued)} step(s) failed and were continued past: {'; '.join(self.continued)}"
            )
        # Only verification can vouch for a fix that went past a failed step.
        self.outcome.remediated = not self.dry_run and (not self.continued or bool(self.playbook.verify))
        return self.outcome

    def _preflight(self) -> str:
        """Every name taken from the alert, for every phase, checked before the first step runs.

        A run that stops half way has done half a change; a missing label is known before
        anything starts. Only names registered by steps may wait. A step with `when:` is
        checked for what its condition reads, since its templates render only if it holds.
        Each step found wanting gets a `failed` record; nothing is executed.
        """
        pb = self.playbook
        phases = (("steps", pb.steps), ("verify", pb.verify), ("rollback", pb.rollback))
        waiting = {step.register_as for _, steps in phases for step in steps if step.register_as}
        problems: list[str] = []
        for phase, steps in phases:
            for index, step in enumerate(steps):
                if step.when is not None:
                    sources = [(step.when, True)]
                else:
                    sources = [(template.source, False) for template in step.templates()]
                missing: list[str] = []
                for source, expression in sources:
                    missing += self.renderer.undefined_names(
                        source, self.variables, expression=expression, may_wait=waiting
                    )
                if not missing:
                    continue
                name = step.display_name(index)
                kind = {"steps": "step", "verify": "verification", "rollback": "rollback step"}[phase]
                problem = f"{kind} {name!r} uses {', '.join(dict.fromkeys(missing))}"
                error = f"{problem}; checked before any step ran, nothing was executed"
                self._emit(phase, name, step, "failed", {}, None, self.clock.monotonic(), 1, error=error)
                problems.append(problem)
        return "; ".join(problems)

    def _failed(self, failure: _PhaseFailed) -> RunOutcome:
        outcome = self._decide(failure)
        outcome.error = self.renderer.redact(outcome.error)
        return outcome

    def _decide(self, failure: _PhaseFailed) -> RunOutcome:
        self.outcome.error = str(failure)
        if failure.timed_out and not failure.rollback:
            self.outcome.status = RunStatus.timed_out
            return self.outcome
        if failure.rollback and self.playbook.rollback:
            try:
                # A rollback gets its own minute.
                self.deadline = max(self.deadline, self.clock.monotonic() + ROLLBACK_SECONDS)
                self._phase("rollback", self.playbook.rollback)
            except _PhaseFailed as rollback_failure:
                self.outcome.status = RunStatus.failed
                self.outcome.error = f"{failure}; rollback failed too: {rollback_failure}"
                return self.outcome
            self.outcome.status = RunStatus.rolled_back
            return self.outcome
        self.outcome.status = RunStatus.timed_out if failure.timed_out else RunStatus.failed
        return self.outcome

    def _phase(self, phase: str, steps: list[Step], *, verifying: bool = False) -> int:
        executed = 0
        for index, step in enumerate(steps):
            name = step.display_name(index)
            if step.when is not None:
                try:
                    wanted = self.renderer.evaluate(step.when, self.variables)
                except TemplateError as exc:
                    self._emit(
                        phase, name, step, "failed", {}, None, self.clock.monotonic(), 1, error=str(exc)
                    )
                    raise _PhaseFailed(f"step {name!r}: {exc}") from None
                if not wanted:
                    skipped = {"when": step.when}
                    self._emit(phase, name, step, "skipped", skipped, None, self.clock.monotonic(), 1)
                    continue
            if phase != "rollback" and self.started and self.proceed is not None:
                if (reason := self.proceed()) is not None:
                    raise _Cancelled(reason)
            executed += 1
            self.started += 1
            ok, result, timed_out = self._step(phase, name, step)
            if ok:
                continue
            message = f"{'verification' if verifying else 'step'} {name!r} failed: {result}"
            if phase == "rollback":
                raise _PhaseFailed(message, timed_out=timed_out)
            if verifying:
                raise _PhaseFailed(message, rollback=True)
            if self.clock.monotonic() >= self.deadline:
                # The playbook's own deadline ends the run, whatever the step's on_failure says.
                raise _PhaseFailed(message, timed_out=True)
            if step.on_failure is OnFailure.continue_:
                self.continued.append(message)
                continue
            raise _PhaseFailed(message, timed_out=timed_out, rollback=step.on_failure is OnFailure.rollback)
        return executed

    def _step(self, phase: str, name: str, step: Step) -> tuple[bool, str, bool]:
        """Run one step with its retries; returns (ok, error text, timed out)."""
        started = self.clock.monotonic()
        action = self.actions[step.action]
        try:
            params = action.render(step.params, Rendering(self.renderer, self.variables, self.patterns))
        except TemplateError as exc:
            self._emit(phase, name, step, "failed", {}, None, started, 1, error=str(exc))
            return False, str(exc), False
        shown = action.shown(params)
        if self.dry_run:
            self._emit(phase, name, step, "dry_run", shown, None, started, 1)
            self._register(step, ActionResult(ok=True, registered=dict(_DRY_REGISTERED)))
            return True, "", False
        timeout = (
            step.timeout.total_seconds()
            if step.timeout is not None
            else action.default_timeout(params, self.config)
        )
        attempts = step.retries + 1
        delay = step.retry_delay.total_seconds()
        result = ActionResult(ok=False, error="not run")
        for attempt in range(1, attempts + 1):
            remaining = self.deadline - self.clock.monotonic()
            if remaining <= 0:
                error = "playbook timeout reached before this step"
                self._emit(
                    phase, name, step, "timed_out", shown, None, self.clock.monotonic(), attempt, error=error
                )
                return False, f"timed out: playbook timeout {self.playbook.timeout} reached", True
            budget = min(timeout, remaining)
            began = self.clock.monotonic()
            result = self._attempt(action, params, budget, step, name)
            failure = failure_of(result)
            status = "succeeded" if failure is None else _STATUS_OF[type(failure)]
            self._emit(phase, name, step, status, shown, result, began, attempt)
            if failure is None:
                self._register(step, result)
                return True, "", False
            if not failure.retryable or attempt == attempts:
                break
            wait = float(result.registered.get("retry_after") or delay)
            self.runner.sleep(max(0.0, min(wait, self.deadline - self.clock.monotonic())))
            delay *= step.retry_backoff
        self._register(step, result)
        timed_out = isinstance(failure_of(result), StepTimedOut)
        error = result.error or "failed"
        if timed_out and "timed out" not in error:
            error = f"timed out: {error}"
        return False, error, timed_out

    def _attempt(self, action: Action, params: Any, budget: float, step: Step, name: str) -> ActionResult:
        ctx = ActionContext(
            config=self.config,
            target=self.target,
            timeout_seconds=budget,
            output_limit_bytes=self.config.workers.output_limit_bytes,
            resources=self.resources,
            step=name,
        )
        try:
            return action.execute(params, ctx)
        except StepFailed as failure:  # an action may raise its failure instead of returning it
            return failed(failure)
        except Exception as exc:  # noqa: BLE001 - an action bug must end in a recorded failure
            log.exception("action_crashed", action=step.action, step=name, run_id=self.run_id)
            return ActionResult(ok=False, error=f"{step.action} action crashed: {exc}")

    def _register(self, step: Step, result: ActionResult) -> None:
        if step.register_as:
            self.variables[step.register_as] = dict(result.registered)

    def _emit(
        self,
        phase: str,
        name: str,
        step: Step,
        status: str,
        params: dict[str, Any],
        result: ActionResult | None,
        began: float,
        attempt: int,
        error: str | None = None,
    ) -> None:
        now = self.clock.monotonic()
        redact = self.renderer.redact
        record: StepRecord = {
            "seq": self.seq,
            "name": name,
            "phase": phase,
            "action": step.action,
            "status": status,
            "params": redact(params),
            "exit_code": result.exit_code if result else None,
            "http_status": result.http_status if result else None,
            "stdout": redact(result.stdout) if result else "",
            "stderr": redact(result.stderr) if result else "",
            "error": redact(error or (result.error if result and not result.ok else None)),
            "started_at": self.clock.now() - timedelta(seconds=now - began),
            "duration_ms": int((now - began) * 1000),
            "attempt": attempt,
        }
        self.seq += 1
        self.outcome.steps.append(record)
        if self.record is not None:
            self.record(record)
        hooks = self.runner.hooks
        if self.run_id is not None and hooks.wants(StepFinished):
            seconds = record["duration_ms"] / 1000
            hooks.emit(StepFinished(self.run_id, name, step.action, status, seconds))
