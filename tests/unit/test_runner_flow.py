"""The runner's control flow (order, register, when, on_failure, verify, rollback, retries, deadlines,
dry run, secrets, up-front checks, hooks) with a scripted StubAction and a hand-moved clock.

tests/integration/test_runner.py proves the same rules with real sshd and HTTP; these pin each
branch down in milliseconds.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from engine.clock import ManualClock
from engine.config import Config
from engine.errors import StepTimedOut, TemporaryFailure
from engine.execution.actions.stub import Outcome, StubAction, crash, fail, succeed, time_out
from engine.execution.runner import Runner, RunOutcome, StepRecord
from engine.execution.worker import WorkerPool
from engine.hooks import Hooks, RunFinished, RunStarted, StepFinished, WorkersBusy
from engine.models import Playbook, RunStatus
from engine.records import ClaimedRun
from engine.store.store import GuardContext, RunSubject
from engine.templating import Renderer
from tests.support.step_record import RECORD_KEYS


class Harness:
    """A Runner whose every action is one StubAction, on a ManualClock; sleeps move the clock."""

    def __init__(
        self,
        script: dict[str, Outcome | list[Outcome]] | None = None,
        *,
        secrets: dict[str, str] | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.clock = ManualClock()
        self.stub = StubAction(script or {}, clock=self.clock)
        self.sleeps: list[float] = []
        self.runner = Runner(
            Config(),
            Renderer(secrets or {}),
            actions=self.stub.registry(),
            sleep=self._sleep,
            clock=self.clock,
            hooks=hooks or Hooks(),
        )

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))

    def run(
        self, text: str, ctx: dict[str, Any] | None = None, **options: Any
    ) -> tuple[RunOutcome, list[StepRecord]]:
        records: list[StepRecord] = []
        pb = Playbook.model_validate(yaml.safe_load(textwrap.dedent(text)))
        outcome = self.runner.execute(pb, ctx or context(), record=records.append, **options)
        return outcome, records


def context(**labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": "DiskFull", "mountpoint": "/var", "env": "staging", **labels},
        "annotations": {"summary": "disk almost full"},
        "target": "web-1",
        "alert": {"name": "DiskFull", "source": "alertmanager", "status": "firing"},
        "code": {"code": "DISK-001", "severity": "high"},
        "incident": {"id": 7},
    }


def summary(records: list[StepRecord]) -> list[tuple[str, str, str]]:
    return [(r["phase"], r["name"], r["status"]) for r in records]


# ------------------------------------------------------------------ order and register


def test_steps_run_in_order_and_registered_results_feed_later_templates() -> None:
    """Steps run in order; what one registers renders into a later command and decides a `when`."""
    h = Harness({"probe": succeed(registered={"stdout": "93%", "exit_code": 0})})
    outcome, records = h.run(
        """
        name: ordered
        version: 1
        steps:
          - name: probe
            ssh: {command: "df {{ labels.mountpoint }}"}
            register: probe
          - name: report
            ssh: {command: "echo {{ probe.stdout }} on {{ target }}"}
          - name: when full
            wait: 0s
            when: "probe.stdout == '93%'"
          - name: when empty
            wait: 0s
            when: "probe.stdout == '0%'"
        """
    )
    assert outcome.status is RunStatus.succeeded, outcome.error
    assert outcome.error is None and outcome.remediated is True
    assert summary(records) == [
        ("steps", "probe", "succeeded"),
        ("steps", "report", "succeeded"),
        ("steps", "when full", "succeeded"),
        ("steps", "when empty", "skipped"),
    ]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert all(RECORD_KEYS <= set(r) for r in records)
    assert [call.step for call in h.stub.calls] == ["probe", "report", "when full"]
    assert h.stub.calls[0].params == {"command": "df /var"}
    assert records[1]["params"] == {"command": "echo 93% on web-1"}
    assert h.stub.calls[0].target == "web-1"
    assert outcome.steps == records


# ------------------------------------------------------------------------------- when


def test_when_false_skips_the_step_and_the_run_goes_on() -> None:
    """A false `when` records the step `skipped` with the condition, and the next step still runs."""
    h = Harness()
    outcome, records = h.run(
        """
        name: when-false
        version: 1
        steps:
          - name: prod only
            ssh: {command: "restart"}
            when: "labels.env == 'prod'"
          - name: always
            ssh: {command: "report"}
        """
    )
    assert outcome.status is RunStatus.succeeded
    assert summary(records) == [("steps", "prod only", "skipped"), ("steps", "always", "succeeded")]
    assert records[0]["params"] == {"when": "labels.env == 'prod'"}
    assert [call.step for call in h.stub.calls] == ["always"]


def test_every_step_skipped_makes_the_run_skipped_and_verify_does_not_run() -> None:
    """With every step skipped by `when`, the run is `skipped`, not remediated; verify never runs."""
    h = Harness()
    outcome, records = h.run(
        """
        name: all-skipped
        version: 1
        steps:
          - ssh: {command: "a"}
            when: "false"
          - wait: 0s
            when: "labels.env == 'prod'"
        verify:
          - name: check
            ssh: {command: "check"}
        """
    )
    assert outcome.status is RunStatus.skipped
    assert outcome.error == "every step was skipped by its `when` condition"
    assert outcome.remediated is False
    assert summary(records) == [("steps", "ssh #1", "skipped"), ("steps", "wait #2", "skipped")]
    assert h.stub.calls == []


def test_when_with_an_undefined_name_fails_the_run_before_anything_runs() -> None:
    """A `when` reading an unknown name fails the run naming it and the step; nothing is executed."""
    h = Harness()
    outcome, records = h.run(
        """
        name: when-undefined
        version: 1
        steps:
          - name: guarded
            ssh: {command: "restart"}
            when: "healthcheck.json.ok"
          - name: after
            ssh: {command: "after"}
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None and "healthcheck" in outcome.error and "guarded" in outcome.error
    assert summary(records) == [("steps", "guarded", "failed")]
    assert h.stub.calls == []


# ------------------------------------------------------------------------- on_failure


def test_on_failure_continue_runs_later_steps_and_says_what_failed() -> None:
    """`continue` runs later steps; the run succeeds, names the failure, and is not a fix without verify."""
    h = Harness({"best effort": fail("command exited with status 3", temporary=False)})
    outcome, records = h.run(
        """
        name: carry-on
        version: 1
        steps:
          - name: best effort
            ssh: {command: "try"}
            on_failure: continue
          - name: next
            ssh: {command: "next"}
        """
    )
    assert outcome.status is RunStatus.succeeded
    assert outcome.error == (
        "1 step(s) failed and were continued past: step 'best effort' failed: command exited with status 3"
    )
    assert outcome.remediated is False
    assert summary(records) == [("steps", "best effort", "failed"), ("steps", "next", "succeeded")]
    assert records[0]["error"] == "command exited with status 3"


def test_on_failure_continue_with_passing_verify_is_remediated() -> None:
    """Past a `continue`d failure, a passing verification vouches for the fix."""
    h = Harness({"best effort": fail()})
    outcome, records = h.run(
        """
        name: carry-on-verified
        version: 1
        steps:
          - name: best effort
            ssh: {command: "try"}
            on_failure: continue
        verify:
          - name: check
            ssh: {command: "check"}
        """
    )
    assert outcome.status is RunStatus.succeeded
    assert outcome.remediated is True
    assert outcome.error is not None and "continued past" in outcome.error
    assert summary(records) == [("steps", "best effort", "failed"), ("verify", "check", "succeeded")]


def test_on_failure_abort_is_the_default_and_stops_the_run() -> None:
    """A failing step stops the run `failed`: no later step, no verify, no rollback."""
    h = Harness({"first": fail("answered 500", temporary=False)})
    outcome, records = h.run(
        """
        name: abort
        version: 1
        steps:
          - name: first
            ssh: {command: "first"}
          - name: second
            ssh: {command: "second"}
        verify:
          - ssh: {command: "verify"}
        rollback:
          - name: undo
            ssh: {command: "undo"}
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error == "step 'first' failed: answered 500"
    assert outcome.remediated is False
    assert summary(records) == [("steps", "first", "failed")]
    assert [call.step for call in h.stub.calls] == ["first"]


def test_on_failure_rollback_skips_the_rest_and_verify_and_runs_the_rollback() -> None:
    """`rollback` stops the steps, skips verify, runs every rollback step; the run is `rolled_back`."""
    h = Harness({"break": fail("command exited with status 7", temporary=False)})
    outcome, records = h.run(
        """
        name: undo-on-failure
        version: 1
        steps:
          - name: change
            ssh: {command: "change"}
          - name: break
            ssh: {command: "break"}
            on_failure: rollback
          - name: never
            ssh: {command: "never"}
        verify:
          - name: check
            ssh: {command: "check"}
        rollback:
          - name: undo
            ssh: {command: "undo"}
          - name: tell
            ssh: {command: "tell"}
        """
    )
    assert outcome.status is RunStatus.rolled_back
    assert outcome.remediated is False
    assert outcome.error == "step 'break' failed: command exited with status 7"
    assert summary(records) == [
        ("steps", "change", "succeeded"),
        ("steps", "break", "failed"),
        ("rollback", "undo", "succeeded"),
        ("rollback", "tell", "succeeded"),
    ]


def test_on_failure_rollback_without_rollback_steps_fails_the_run() -> None:
    """A playbook with nothing to roll back ends `failed`, not `rolled_back`."""
    h = Harness({"break": fail(temporary=False)})
    outcome, records = h.run(
        """
        name: nothing-to-undo
        version: 1
        steps:
          - name: break
            ssh: {command: "break"}
            on_failure: rollback
        """
    )
    assert outcome.status is RunStatus.failed
    assert summary(records) == [("steps", "break", "failed")]


def test_a_failing_rollback_fails_the_run_with_both_messages_and_stops_the_rollback() -> None:
    """A failing rollback step fails the run naming both failures; later rollback steps do not run."""
    h = Harness(
        {"change": fail("answered 502", temporary=False), "undo": fail("answered 503", temporary=False)}
    )
    outcome, records = h.run(
        """
        name: undo-fails
        version: 1
        steps:
          - name: change
            ssh: {command: "change"}
            on_failure: rollback
        rollback:
          - name: undo
            ssh: {command: "undo"}
          - name: after undo
            ssh: {command: "after"}
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error == (
        "step 'change' failed: answered 502; rollback failed too: step 'undo' failed: answered 503"
    )
    assert summary(records) == [("steps", "change", "failed"), ("rollback", "undo", "failed")]


# ----------------------------------------------------------------------------- verify


def test_failing_verification_rolls_back_and_is_not_remediated() -> None:
    """A failing verify step stops verification and triggers the rollback; the run is `rolled_back`."""
    h = Harness({"impossible": fail("command exited with status 1", temporary=False)})
    outcome, records = h.run(
        """
        name: verify-fails
        version: 1
        steps:
          - name: fix
            ssh: {command: "fix"}
        verify:
          - name: impossible
            ssh: {command: "test"}
          - name: second check
            ssh: {command: "true"}
        rollback:
          - name: undo
            ssh: {command: "undo"}
        """
    )
    assert outcome.status is RunStatus.rolled_back
    assert outcome.remediated is False
    assert outcome.error == "verification 'impossible' failed: command exited with status 1"
    assert summary(records) == [
        ("steps", "fix", "succeeded"),
        ("verify", "impossible", "failed"),
        ("rollback", "undo", "succeeded"),
    ]


def test_failing_verification_without_rollback_steps_fails_the_run() -> None:
    """Verification that fails with no rollback declared leaves the run `failed`."""
    h = Harness({"check": fail(temporary=False)})
    outcome, records = h.run(
        """
        name: verify-fails-bare
        version: 1
        steps:
          - name: fix
            ssh: {command: "fix"}
        verify:
          - name: check
            ssh: {command: "check"}
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.remediated is False
    assert summary(records) == [("steps", "fix", "succeeded"), ("verify", "check", "failed")]


def test_passing_verification_marks_the_run_remediated_without_rollback() -> None:
    """When every verify step passes the run succeeds, is remediated, and the rollback does not run."""
    h = Harness()
    outcome, records = h.run(
        """
        name: verify-passes
        version: 1
        steps:
          - name: fix
            ssh: {command: "fix"}
        verify:
          - name: check
            ssh: {command: "check"}
        rollback:
          - name: undo
            ssh: {command: "undo"}
        """
    )
    assert outcome.status is RunStatus.succeeded
    assert outcome.remediated is True and outcome.error is None
    assert summary(records) == [("steps", "fix", "succeeded"), ("verify", "check", "succeeded")]


# ---------------------------------------------------------------------------- retries


def test_a_temporary_failure_is_retried_with_exponential_backoff() -> None:
    """Fail, fail, succeed with `retries: 2` takes three attempts, sleeping 0.2 s then 0.4 s."""
    h = Harness({"flaky": [fail("answered 500"), fail("answered 500"), succeed(stdout="ok")]})
    outcome, records = h.run(
        """
        name: backoff
        version: 1
        steps:
          - name: flaky
            ssh: {command: "flaky"}
            retries: 2
            retry_delay: 200ms
            retry_backoff: 2
        """
    )
    assert outcome.status is RunStatus.succeeded, outcome.error
    assert [(r["attempt"], r["status"]) for r in records] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert h.sleeps == pytest.approx([0.2, 0.4])
    assert (records[2]["started_at"] - records[0]["started_at"]).total_seconds() == pytest.approx(0.6)


def test_a_permanent_failure_is_not_retried() -> None:
    """A permanent failure is final: one attempt despite `retries`, and the run fails."""
    h = Harness({"missing": fail("answered 404", temporary=False)})
    outcome, records = h.run(
        """
        name: no-retry
        version: 1
        steps:
          - name: missing
            ssh: {command: "missing"}
            retries: 3
        """
    )
    assert outcome.status is RunStatus.failed
    assert [(r["attempt"], r["status"]) for r in records] == [(1, "failed")]
    assert h.sleeps == []


def test_retry_after_replaces_the_retry_delay() -> None:
    """A failure that asks to wait (429 Retry-After: 1) is retried after that, not after `retry_delay`."""
    h = Harness({"limited": [fail("answered 429", retry_after=1.0), succeed()]})
    outcome, records = h.run(
        """
        name: rate-limited
        version: 1
        steps:
          - name: limited
            ssh: {command: "limited"}
            retries: 1
            retry_delay: 10ms
        """
    )
    assert outcome.status is RunStatus.succeeded
    assert [r["attempt"] for r in records] == [1, 2]
    assert h.sleeps == [1.0]


def test_exhausted_retries_fail_the_run_with_the_last_error() -> None:
    """`retries: 1` means two attempts; when both fail the run fails with the step's error."""
    h = Harness({"locked": [fail("busy once"), fail("busy twice")]})
    outcome, records = h.run(
        """
        name: ssh-retry
        version: 1
        steps:
          - name: locked
            ssh: {command: "locked"}
            retries: 1
            retry_delay: 50ms
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error == "step 'locked' failed: busy twice"
    assert [(r["attempt"], r["error"]) for r in records] == [(1, "busy once"), (2, "busy twice")]


def test_the_wait_before_a_retry_never_runs_past_the_playbook_deadline() -> None:
    """A long retry delay is cut at the deadline, and the next attempt is recorded as timed out."""
    h = Harness({"slow": fail(seconds=1.0)})
    outcome, records = h.run(
        """
        name: deadline-retry
        version: 1
        timeout: 2s
        steps:
          - name: slow
            ssh: {command: "slow"}
            retries: 2
            retry_delay: 30s
        """
    )
    assert h.sleeps == [1.0]
    assert outcome.status is RunStatus.timed_out
    assert [(r["attempt"], r["status"]) for r in records] == [(1, "failed"), (2, "timed_out")]
    assert records[1]["error"] == "playbook timeout reached before this step"
    assert outcome.error == "step 'slow' failed: timed out: playbook timeout 0:00:02 reached"


# ---------------------------------------------------------------------------- timeouts


def test_a_step_gets_its_timeout_or_the_actions_default_within_the_playbook_deadline() -> None:
    """The budget is the step's `timeout`, else the action's default, never more than the run has left."""
    h = Harness({"first": succeed(seconds=50.0)})
    h.stub.timeout_seconds = 30.0
    outcome, _ = h.run(
        """
        name: budgets
        version: 1
        timeout: 100s
        steps:
          - name: first
            ssh: {command: "a"}
            timeout: 60s
          - name: default
            ssh: {command: "b"}
          - name: capped
            ssh: {command: "c"}
            timeout: 90s
        """
    )
    assert outcome.status is RunStatus.succeeded
    assert [(call.step, call.budget) for call in h.stub.calls] == [
        ("first", 60.0),
        ("default", 30.0),
        ("capped", 50.0),
    ]


def test_a_step_that_times_out_ends_the_run_timed_out() -> None:
    """A timed-out attempt with the default `on_failure` ends the run `timed_out`, later steps unrun."""
    h = Harness({"slow": time_out()})
    outcome, records = h.run(
        """
        name: step-timeout
        version: 1
        steps:
          - name: slow
            ssh: {command: "slow"}
            timeout: 5s
          - name: after
            ssh: {command: "after"}
        """
    )
    assert outcome.status is RunStatus.timed_out
    assert outcome.remediated is False
    assert outcome.error is not None and "slow" in outcome.error and "timed out" in outcome.error
    assert summary(records) == [("steps", "slow", "timed_out")]
    assert h.clock.monotonic() == pytest.approx(5.0)


def test_a_step_outlasting_the_playbook_timeout_stops_the_run_at_the_deadline() -> None:
    """A step that would take 5 s in a playbook of 1 s is stopped at 1 s; the run is `timed_out`."""
    h = Harness({"slow": succeed(seconds=5.0)})
    outcome, records = h.run(
        """
        name: too-slow
        version: 1
        timeout: 1s
        steps:
          - name: slow
            ssh: {command: "sleep 5"}
          - name: after
            ssh: {command: "after"}
        """
    )
    assert outcome.status is RunStatus.timed_out
    assert summary(records) == [("steps", "slow", "timed_out")]
    assert h.stub.calls[0].budget == pytest.approx(1.0)
    assert h.clock.monotonic() == pytest.approx(1.0)


def test_the_playbook_timeout_ends_the_run_even_past_continue_steps() -> None:
    """A step that `continue`s cannot hide the playbook's own deadline."""
    h = Harness({"too long": time_out()})
    outcome, records = h.run(
        """
        name: slow-but-continue
        version: 1
        timeout: 1s
        steps:
          - name: too long
            wait: 5s
            on_failure: continue
          - name: never reached
            wait: 0s
        """
    )
    assert outcome.status is RunStatus.timed_out
    assert outcome.remediated is False
    assert [r["name"] for r in records] == ["too long"]


def test_the_playbook_deadline_beats_on_failure_rollback() -> None:
    """A step that used up the playbook's time ends the run `timed_out`; its `rollback` does not run."""
    h = Harness({"slow": time_out()})
    outcome, records = h.run(
        """
        name: timeout-undo
        version: 1
        timeout: 1s
        steps:
          - name: slow
            ssh: {command: "slow"}
            on_failure: rollback
        rollback:
          - name: undo
            ssh: {command: "undo"}
        """
    )
    assert outcome.status is RunStatus.timed_out
    assert summary(records) == [("steps", "slow", "timed_out")]


def test_a_step_timeout_with_on_failure_rollback_rolls_back() -> None:
    """A step's own timeout, inside the playbook's, follows its `on_failure: rollback`."""
    h = Harness({"slow": time_out()})
    outcome, records = h.run(
        """
        name: step-timeout-undo
        version: 1
        steps:
          - name: slow
            ssh: {command: "slow"}
            timeout: 5s
            on_failure: rollback
        rollback:
          - name: undo
            ssh: {command: "undo"}
        """
    )
    assert outcome.status is RunStatus.rolled_back
    assert summary(records) == [("steps", "slow", "timed_out"), ("rollback", "undo", "succeeded")]


def test_a_rollback_after_the_deadline_gets_a_minute_of_its_own() -> None:
    """Verification failing at the playbook's deadline still rolls back, with up to 60 s to do it."""
    h = Harness({"fix": succeed(seconds=9.5), "check": fail(temporary=False, seconds=0.5)})
    h.stub.timeout_seconds = 120.0
    outcome, records = h.run(
        """
        name: late-undo
        version: 1
        timeout: 10s
        steps:
          - name: fix
            ssh: {command: "fix"}
        verify:
          - name: check
            ssh: {command: "check"}
        rollback:
          - name: undo
            ssh: {command: "undo"}
        """
    )
    assert outcome.status is RunStatus.rolled_back
    assert summary(records)[-1] == ("rollback", "undo", "succeeded")
    assert h.stub.calls[-1].budget == pytest.approx(60.0)


def test_a_rollback_that_times_out_fails_the_run() -> None:
    """A rollback step out of time leaves the run `failed`, naming both failures."""
    h = Harness({"change": fail("broke", temporary=False), "undo": time_out()})
    outcome, records = h.run(
        """
        name: undo-times-out
        version: 1
        steps:
          - name: change
            ssh: {command: "change"}
            on_failure: rollback
        rollback:
          - name: undo
            ssh: {command: "undo"}
            timeout: 5s
        """
    )
    assert outcome.status is RunStatus.failed
    assert (
        outcome.error is not None and "rollback failed too" in outcome.error and "timed out" in outcome.error
    )
    assert summary(records) == [("steps", "change", "failed"), ("rollback", "undo", "timed_out")]


# --------------------------------------------------------------------- a broken action


def test_an_action_that_raises_fails_the_step_and_never_the_caller() -> None:
    """A bug in an action is recorded as that step's failure; the run ends `failed`."""
    h = Harness({"buggy": crash(RuntimeError("boom"))})
    outcome, records = h.run(
        """
        name: buggy
        version: 1
        steps:
          - name: buggy
            ssh: {command: "x"}
            retries: 2
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error == "step 'buggy' failed: ssh action crashed: boom"
    assert summary(records) == [("steps", "buggy", "failed")]  # a crash is not retried


def test_a_failure_the_action_raises_counts_by_its_class() -> None:
    """An action may raise its failure: a TemporaryFailure is retried, a StepTimedOut is a timeout."""
    h = Harness(
        {"flaky": [crash(TemporaryFailure("reset by peer")), succeed()], "slow": crash(StepTimedOut("late"))}
    )
    outcome, records = h.run(
        """
        name: raised
        version: 1
        steps:
          - name: flaky
            ssh: {command: "flaky"}
            retries: 1
            retry_delay: 0s
          - name: slow
            ssh: {command: "slow"}
        """
    )
    assert [(r["name"], r["status"], r["error"]) for r in records] == [
        ("flaky", "failed", "reset by peer"),
        ("flaky", "succeeded", None),
        ("slow", "timed_out", "late"),
    ]
    assert outcome.status is RunStatus.timed_out
    assert outcome.error == "step 'slow' failed: timed out: late"


# ---------------------------------------------------------------------------- dry run


def test_dry_run_records_rendered_steps_and_executes_nothing() -> None:
    """A dry run records each step `dry_run` with rendered params, executes nothing, and templates
    and conditions reading registered results (even a JSON body) still render."""
    h = Harness()
    outcome, records = h.run(
        """
        name: rehearse
        version: 1
        steps:
          - name: touch
            ssh: {command: "touch {{ labels.mountpoint }}/x"}
            register: touched
          - name: tell
            ssh: {command: "echo {{ touched.stdout }} {{ touched.exit_code }}"}
            register: told
          - name: follow up
            wait: 10s
            when: "touched.exit_code == 0 and told.status == 0"
          - name: only if healthy
            wait: 0s
            when: "told.json.ok"
        verify:
          - name: check
            ssh: {command: "test -f {{ labels.mountpoint }}/x"}
        """,
        dry_run=True,
    )
    assert outcome.status is RunStatus.succeeded
    assert outcome.remediated is False
    assert summary(records) == [
        ("steps", "touch", "dry_run"),
        ("steps", "tell", "dry_run"),
        ("steps", "follow up", "dry_run"),
        ("steps", "only if healthy", "skipped"),
        ("verify", "check", "dry_run"),
    ]
    assert records[0]["params"] == {"command": "touch /var/x"}
    assert records[1]["params"] == {"command": "echo '' 0"}
    assert records[2]["params"] == {"seconds": 10.0}
    assert h.stub.calls == []


# ---------------------------------------------------------------------------- secrets

TOKEN = "s3cr3t-T0KEN-8f2a"


def test_secrets_reach_the_action_but_are_redacted_in_records_and_errors() -> None:
    """The action gets the real secret; params, output, step error and run error show `***`."""
    h = Harness(
        {"notify": fail(f"rejected token {TOKEN}", temporary=False, stderr=f"bad {TOKEN}")},
        secrets={"API_TOKEN": TOKEN},
    )
    outcome, records = h.run(
        """
        name: with-secret
        version: 1
        steps:
          - name: notify
            ssh: {command: "notify --token {{ secrets.API_TOKEN }}"}
        """
    )
    assert h.stub.calls[0].params == {"command": f"notify --token {TOKEN}"}
    [step] = records
    assert step["params"] == {"command": "notify --token ***"}
    assert step["stderr"] == "bad ***" and step["error"] == "rejected token ***"
    assert outcome.error == "step 'notify' failed: rejected token ***"
    assert TOKEN not in repr(records)


# ------------------------------------------------------- names the alert lacks, up front


def test_a_label_missing_in_a_later_step_fails_the_run_before_the_first_step() -> None:
    """Step 2 reads a label the alert lacks: the run fails naming it and step 1 never executes."""
    h = Harness()
    outcome, records = h.run(
        """
        name: half-way
        version: 1
        steps:
          - name: first change
            ssh: {command: "touch x"}
          - name: second change
            ssh: {command: "df -- {{ labels.mountpont }}"}
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None and "second change" in outcome.error
    assert "labels.mountpont" in outcome.error and "nothing was executed" not in outcome.error
    assert summary(records) == [("steps", "second change", "failed")]
    assert "nothing was executed" in records[0]["error"]
    assert h.stub.calls == []


def test_names_missing_in_verify_and_rollback_are_found_before_anything_runs() -> None:
    """An annotation only the rollback reads and a secret only verify reads stop the run before step 1."""
    h = Harness()
    outcome, records = h.run(
        """
        name: late-names
        version: 1
        steps:
          - name: notify
            ssh: {command: "notify"}
        verify:
          - name: check
            http: {url: "http://x/check", headers: {X-Key: "{{ secrets.NOPE }}"}}
        rollback:
          - name: undo
            http: {method: POST, url: "{{ annotations.undo_url }}"}
        """
    )
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None
    assert "secrets.NOPE" in outcome.error and "annotations.undo_url" in outcome.error
    assert summary(records) == [("verify", "check", "failed"), ("rollback", "undo", "failed")]
    assert h.stub.calls == []


def test_guarded_and_later_registered_names_do_not_stop_the_run() -> None:
    """`default`, `.get`, a `when:` guard and names registered later may be absent at the start."""
    h = Harness({"probe": succeed(registered={"ok": True})})
    outcome, _ = h.run(
        """
        name: guarded
        version: 1
        steps:
          - name: probe
            ssh: {command: "probe {{ labels.nope | default('none') }} {{ labels.get('nope', 'x') }}"}
            register: probe
          - name: only with the label
            ssh: {command: "use {{ labels.nope }}"}
            when: "'nope' in labels"
          - name: after probe
            ssh: {command: "after {{ probe.ok }}"}
        """
    )
    assert outcome.status is RunStatus.succeeded, outcome.error
    assert [call.params["command"] for call in h.stub.calls] == ["probe none x", "after True"]


# ------------------------------------------------------- alert values read as options

OPTION_PLAYBOOK = """
name: option-position
version: 1
steps:
  - name: reach
    ssh: {command: "ssh -o BatchMode=yes {{ labels.flag }} nohost true"}
"""


def test_a_label_in_option_position_fails_the_step_and_nothing_executes() -> None:
    """A label value starting with "-" where options are read fails the step at render, naming the label."""
    h = Harness()
    outcome, records = h.run(OPTION_PLAYBOOK, context(flag="-oProxyCommand=touch /tmp/pwned"))
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None and "labels.flag" in outcome.error and "option" in outcome.error
    assert summary(records) == [("steps", "reach", "failed")]
    assert records[0]["params"] == {}
    assert h.stub.calls == []


def test_a_declared_label_pattern_lets_a_matching_option_through() -> None:
    """With the code's pattern for the label, a matching `-v` reaches the action; another value does not."""
    h = Harness()
    outcome, _ = h.run(OPTION_PLAYBOOK, context(flag="-v"), patterns={"labels.flag": "-v|-q"})
    assert outcome.status is RunStatus.succeeded, outcome.error
    assert h.stub.calls[0].params == {"command": "ssh -o BatchMode=yes -v nohost true"}
    refused, _ = h.run(
        OPTION_PLAYBOOK, context(flag="-oProxyCommand=true"), patterns={"labels.flag": "-v|-q"}
    )
    assert refused.status is RunStatus.failed


# ---------------------------------------------------------------------------- hooks


def test_each_recorded_step_is_announced_with_the_run_id() -> None:
    """With a run id, every recorded step (retries and skips too) reaches StepFinished subscribers."""
    hooks = Hooks()
    seen: list[StepFinished] = []
    hooks.subscribe(StepFinished, seen.append)
    h = Harness({"flaky": [fail(seconds=0.25), succeed(seconds=0.5)]}, hooks=hooks)
    text = """
        name: announced
        version: 1
        steps:
          - name: flaky
            ssh: {command: "flaky"}
            retries: 1
            retry_delay: 0s
          - name: skipped
            wait: 0s
            when: "false"
        """
    h.run(text, run_id=42)
    assert seen == [
        StepFinished(42, "flaky", "ssh", "failed", 0.25),
        StepFinished(42, "flaky", "ssh", "succeeded", 0.5),
        StepFinished(42, "skipped", "wait", "skipped", 0.0),
    ]
    seen.clear()
    h.run(text)
    assert seen == []  # a run without an id (a preview) announces nothing


# ------------------------------------------------------------- the worker's announcements


class FakeStore:
    """What WorkerPool.execute writes, kept in lists."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, StepRecord]] = []
        self.finished: list[tuple[int, RunStatus, str | None]] = []
        #: `workers.lease`: the keeper renews every third of it (never, in these short runs).
        self.lease = timedelta(seconds=30)

    def record_step(self, run_id: int, step: StepRecord, lease: object = None) -> None:
        self.steps.append((run_id, step))

    def renew_lease(self, lease: object) -> datetime:
        return datetime.now(UTC) + self.lease

    def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, *, remediated: bool, **_: Any
    ) -> None:
        self.finished.append((run_id, status, error))

    def run_subject(self, incident_id: int) -> RunSubject:
        """The run's incident is open: the worker's checks let it start and go on."""
        return RunSubject("open", "DISK-001", "db-1", "high", "alertmanager", "DiskFull", {})

    def guard_context(self) -> GuardContext:
        return GuardContext(paused=False, silences=(), open_breakers={})


class FakeResolver:
    def __init__(self, playbooks: dict[tuple[str, int], Playbook]) -> None:
        self.playbooks = playbooks

    def get(self, name: str, version: int) -> Playbook:
        return self.playbooks[(name, version)]

    def patterns(self, context: dict[str, Any]) -> dict[str, str]:
        return {}

    def policy(self, context: dict[str, Any]) -> None:
        return None  # no limits: the claim-time recheck reads nothing


def claimed(run_id: int, playbook: str) -> ClaimedRun:
    return ClaimedRun.trusted(
        {
            "id": run_id,
            "incident_id": 7,
            "playbook": playbook,
            "playbook_version": 1,
            "status": "running",
            "trigger": "auto",
            "dry_run": False,
            "queued_at": None,
            "started_at": None,
            "finished_at": None,
            "error": None,
            "effective": None,
            "worker": "host:1:boot:0",
            "shadow": False,
            "context": context(),
            "attempt": 1,
        }
    )


def test_the_worker_announces_a_run_its_steps_and_how_busy_it_is() -> None:
    """RunStarted, each StepFinished, RunFinished (status, seconds) and WorkersBusy up then down."""
    hooks, seen = Hooks(), []
    for event in (RunStarted, StepFinished, RunFinished, WorkersBusy):
        hooks.subscribe(event, seen.append)
    clock = ManualClock()
    stub = StubAction({"fix": succeed(seconds=2.0)}, clock=clock)
    pb = Playbook.model_validate(
        {"name": "fix-it", "version": 1, "steps": [{"name": "fix", "ssh": {"command": "x"}}]}
    )
    store = FakeStore()
    pool = WorkerPool(
        Config(),
        store,
        FakeResolver({("fix-it", 1): pb}),
        Renderer(),
        hooks=hooks,
        clock=clock,
        actions=stub.registry(),
    )
    assert pool.execute(claimed(5, "fix-it"), "w") is RunStatus.succeeded
    assert seen == [
        WorkersBusy(1),
        RunStarted(5, "fix-it", 1),
        StepFinished(5, "fix", "ssh", "succeeded", 2.0),
        RunFinished(5, "fix-it", 1, "succeeded", 2.0),
        WorkersBusy(0),
    ]
    assert [(run_id, step["name"]) for run_id, step in store.steps] == [(5, "fix")]
    assert store.finished == [(5, RunStatus.succeeded, None)]


def test_a_run_whose_playbook_cannot_be_loaded_fails_and_is_announced() -> None:
    """A playbook missing everywhere fails the run (stored, announced) and frees the worker."""
    hooks, seen = Hooks(), []
    hooks.subscribe(RunFinished, seen.append)
    hooks.subscribe(WorkersBusy, seen.append)
    store = FakeStore()
    pool = WorkerPool(Config(), store, FakeResolver({}), Renderer(), hooks=hooks, clock=ManualClock())
    assert pool.execute(claimed(6, "gone"), "w") is RunStatus.failed
    [(run_id, status, error)] = store.finished
    assert (run_id, status) == (6, RunStatus.failed) and error is not None and "cannot load playbook" in error
    assert seen == [WorkersBusy(1), RunFinished(6, "gone", 1, "failed", 0.0), WorkersBusy(0)]
