"""The runner's semantics (order, register, when, on_failure, verify, rollback, retries, timeouts,
dry run, secrets, output cap) with real actions: a real sshd and a real loopback HTTP server."""

from __future__ import annotations

import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import Config, HttpConfig, InventoryEntry, SshConfig, WorkersConfig
from engine.execution.actions.base import TRUNCATION_MARKER
from engine.execution.runner import Runner, RunOutcome, StepRecord
from engine.models import Playbook, RunStatus
from engine.templating import Renderer
from tests.support.httpserver import TestHttpServer, respond
from tests.support.sshd import SshServer
from tests.support.step_record import RECORD_KEYS


def make_config(sshd: SshServer | None = None, *, output_limit_bytes: int = 64 * 1024) -> Config:
    """HTTP limited to loopback; with `sshd`, the target name `sshhost` reaches the test sshd."""
    config = Config(
        http=HttpConfig(allowed_hosts=["127.0.0.1"]),
        workers=WorkersConfig(output_limit_bytes=output_limit_bytes),
    )
    if sshd is not None:
        ssh = SshConfig(
            user=sshd.user,
            key_file=str(sshd.key_file),
            known_hosts=str(sshd.known_hosts),
            connect_timeout=timedelta(seconds=3),
        )
        inventory = [InventoryEntry(match="sshhost", address="127.0.0.1", port=sshd.port)]
        config = config.model_copy(update={"ssh": ssh, "inventory": inventory})  # the config is frozen
    return config


def playbook(text: str) -> Playbook:
    return Playbook.model_validate(yaml.safe_load(textwrap.dedent(text)))


def context(hook: TestHttpServer | None = None, **annotations: str) -> dict[str, Any]:
    if hook is not None:
        annotations.setdefault("hook", hook.url)
    return {
        "labels": {"alertname": "DiskFull", "instance": "sshhost", "mountpoint": "/var", "env": "staging"},
        "annotations": annotations,
        "target": "sshhost",
        "alert": {"name": "DiskFull", "source": "alertmanager", "status": "firing"},
        "code": {"code": "DISK-001", "severity": "high"},
        "incident": {"id": 7},
    }


def execute(
    pb: Playbook,
    ctx: dict[str, Any],
    *,
    config: Config | None = None,
    secrets: dict[str, str] | None = None,
    dry_run: bool = False,
) -> tuple[RunOutcome, list[StepRecord]]:
    records: list[StepRecord] = []
    runner = Runner(config or make_config(), Renderer(secrets or {}))
    outcome = runner.execute(pb, ctx, dry_run=dry_run, record=records.append)
    return outcome, records


def summary(records: list[StepRecord]) -> list[tuple[str, str, str]]:
    return [(r["phase"], r["name"], r["status"]) for r in records]


def gap(earlier: StepRecord, later: StepRecord) -> float:
    return float((later["started_at"] - earlier["started_at"]).total_seconds())


# ------------------------------------------------------------------ order and register


def test_steps_run_in_order_and_registered_results_feed_later_templates(
    sshd: SshServer, hook: TestHttpServer
) -> None:
    """Steps run in order; ssh stdout reaches a later http json body, http json a later `when`."""
    hook.script("/report", [respond(200, json={"action": "restart", "ticket": 42})])
    pb = playbook(
        """
        name: ordered
        version: 1
        steps:
          - name: probe
            ssh: {command: "echo usage of {{ labels.mountpoint }} is 93%"}
            register: probe
          - name: report
            http:
              method: POST
              url: "{{ annotations.hook }}/report"
              json: {said: "{{ probe.stdout | trim }}", host: "{{ target }}", code: "{{ probe.exit_code }}"}
              expect_status: [200]
            register: report
          - name: restart when told
            http: {method: POST, url: "{{ annotations.hook }}/restart/{{ report.json.ticket }}"}
            when: "report.json.action == 'restart' and report.status == 200"
          - name: ignore when told
            http: {method: POST, url: "{{ annotations.hook }}/ignore"}
            when: "report.json.action == 'ignore'"
        """
    )
    outcome, records = execute(pb, context(hook), config=make_config(sshd))

    assert outcome.status is RunStatus.succeeded, outcome.error
    assert outcome.error is None
    assert outcome.remediated is True
    assert summary(records) == [
        ("steps", "probe", "succeeded"),
        ("steps", "report", "succeeded"),
        ("steps", "restart when told", "succeeded"),
        ("steps", "ignore when told", "skipped"),
    ]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert all(RECORD_KEYS <= set(r) for r in records)
    assert [r["action"] for r in records] == ["ssh", "http", "http", "http"]
    assert records[0]["exit_code"] == 0
    assert records[0]["stdout"] == "usage of /var is 93%\n"
    assert records[1]["http_status"] == 200
    assert records[1]["params"]["json"] == {"said": "usage of /var is 93%", "host": "sshhost", "code": "0"}
    assert [r.path for r in hook.requests] == ["/report", "/restart/42"]
    assert hook.requests[0].json() == {"said": "usage of /var is 93%", "host": "sshhost", "code": "0"}
    assert outcome.steps == records


# ------------------------------------------------------------------------------- when


def test_when_false_skips_the_step_and_the_run_continues(hook: TestHttpServer) -> None:
    """A `when` that is false records the step `skipped` and the next step still runs."""
    pb = playbook(
        """
        name: when-false
        version: 1
        steps:
          - name: prod only
            http: {method: POST, url: "{{ annotations.hook }}/prod"}
            when: "labels.env == 'prod'"
          - name: always
            http: {method: POST, url: "{{ annotations.hook }}/always"}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.succeeded, outcome.error
    assert summary(records) == [("steps", "prod only", "skipped"), ("steps", "always", "succeeded")]
    assert records[0]["params"] == {"when": "labels.env == 'prod'"}
    assert records[0]["exit_code"] is None and records[0]["http_status"] is None
    assert [r.path for r in hook.requests] == ["/always"]


def test_every_step_skipped_makes_the_run_skipped(hook: TestHttpServer) -> None:
    """When every step is skipped by `when`, the run is `skipped`, not remediated, and verify is not run."""
    pb = playbook(
        """
        name: all-skipped
        version: 1
        steps:
          - http: {method: POST, url: "{{ annotations.hook }}/a"}
            when: "labels.env == 'prod'"
          - wait: 0s
            when: "false"
        verify:
          - http: {url: "{{ annotations.hook }}/verify"}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.skipped
    assert outcome.remediated is False
    assert summary(records) == [("steps", "http #1", "skipped"), ("steps", "wait #2", "skipped")]
    assert hook.requests == []


def test_when_with_an_undefined_name_fails_the_run_naming_it(hook: TestHttpServer) -> None:
    """A `when` using an undefined name fails the run with a message naming it; later steps do not run."""
    pb = playbook(
        """
        name: when-undefined
        version: 1
        steps:
          - name: guarded
            http: {method: POST, url: "{{ annotations.hook }}/guarded"}
            when: "labels.env == 'staging' and healthcheck.json.ok"
          - name: after
            http: {method: POST, url: "{{ annotations.hook }}/after"}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.failed
    assert outcome.remediated is False
    assert outcome.error is not None
    assert "healthcheck" in outcome.error and "guarded" in outcome.error
    assert summary(records) == [("steps", "guarded", "failed")]
    assert "healthcheck" in records[0]["error"]
    assert hook.requests == []


# ------------------------------------------------------------------------- on_failure


def test_on_failure_continue_runs_later_steps_and_the_run_succeeds(
    sshd: SshServer, hook: TestHttpServer
) -> None:
    """`on_failure: continue` runs later steps; the run succeeds but says what failed and is not a fix."""
    pb = playbook(
        """
        name: carry-on
        version: 1
        steps:
          - name: best effort
            ssh: {command: "echo partial; echo oops >&2; exit 3"}
            register: attempt
            on_failure: continue
          - name: report the exit code
            http:
              method: POST
              url: "{{ annotations.hook }}/report"
              json: {exit: "{{ attempt.exit_code }}", err: "{{ attempt.stderr | trim }}"}
            when: "attempt.exit_code == 3"
        """
    )
    outcome, records = execute(pb, context(hook), config=make_config(sshd))

    assert outcome.status is RunStatus.succeeded
    assert outcome.error == (
        "1 step(s) failed and were continued past: step 'best effort' failed: command exited with status 3"
    )
    assert outcome.remediated is False  # no verify step vouches for it
    assert summary(records) == [
        ("steps", "best effort", "failed"),
        ("steps", "report the exit code", "succeeded"),
    ]
    assert records[0]["exit_code"] == 3
    assert records[0]["stdout"] == "partial\n"
    assert records[0]["stderr"] == "oops\n"
    assert "status 3" in records[0]["error"]
    assert hook.requests[0].json() == {"exit": "3", "err": "oops"}


def test_on_failure_abort_is_the_default_and_stops_the_run(hook: TestHttpServer) -> None:
    """A failing step with the default `on_failure` stops the run `failed`: no later step, no rollback."""
    hook.script("/first", [500])
    pb = playbook(
        """
        name: abort
        version: 1
        steps:
          - name: first
            http: {method: POST, url: "{{ annotations.hook }}/first", expect_status: [200]}
          - name: second
            http: {method: POST, url: "{{ annotations.hook }}/second"}
        verify:
          - http: {url: "{{ annotations.hook }}/verify"}
        rollback:
          - name: undo
            http: {method: POST, url: "{{ annotations.hook }}/undo"}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.failed
    assert outcome.remediated is False
    assert outcome.error is not None and "first" in outcome.error and "500" in outcome.error
    assert summary(records) == [("steps", "first", "failed")]
    assert records[0]["http_status"] == 500
    assert [r.path for r in hook.requests] == ["/first"]


def test_on_failure_rollback_runs_the_rollback_steps(sshd: SshServer, tmp_path: Path) -> None:
    """`on_failure: rollback` skips the rest and verify, runs the rollback steps; run `rolled_back`."""
    marker = tmp_path / "changed"
    pb = playbook(
        """
        name: undo-on-failure
        version: 1
        steps:
          - name: change
            ssh: {command: "echo changed > {{ annotations.marker }}"}
          - name: break
            ssh: {command: "exit 7"}
            on_failure: rollback
          - name: never
            ssh: {command: "echo never >> {{ annotations.marker }}"}
        verify:
          - name: check
            ssh: {command: "true"}
        rollback:
          - name: undo
            ssh: {command: "rm -f {{ annotations.marker }}"}
        """
    )
    outcome, records = execute(pb, context(marker=str(marker)), config=make_config(sshd))

    assert outcome.status is RunStatus.rolled_back
    assert outcome.remediated is False
    assert outcome.error is not None and "break" in outcome.error and "status 7" in outcome.error
    assert summary(records) == [
        ("steps", "change", "succeeded"),
        ("steps", "break", "failed"),
        ("rollback", "undo", "succeeded"),
    ]
    assert not marker.exists()


def test_a_failing_rollback_fails_the_run_with_both_messages(hook: TestHttpServer) -> None:
    """When the rollback itself fails the run is `failed` and its error names both failures."""
    hook.script("/change", [respond(502)])
    hook.script("/undo", [respond(503)])
    pb = playbook(
        """
        name: undo-fails
        version: 1
        steps:
          - name: change
            http: {method: POST, url: "{{ annotations.hook }}/change", expect_status: [200]}
            on_failure: rollback
        rollback:
          - name: undo
            http: {method: POST, url: "{{ annotations.hook }}/undo", expect_status: [200]}
          - name: after undo
            http: {method: POST, url: "{{ annotations.hook }}/after-undo"}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.failed
    assert outcome.remediated is False
    assert outcome.error is not None
    assert "'change'" in outcome.error and "502" in outcome.error
    assert "'undo'" in outcome.error and "503" in outcome.error
    assert "rollback failed" in outcome.error
    assert summary(records) == [("steps", "change", "failed"), ("rollback", "undo", "failed")]
    assert [r.path for r in hook.requests] == ["/change", "/undo"]


# ----------------------------------------------------------------------------- verify


def test_failing_verification_rolls_back_and_is_not_remediated(sshd: SshServer, tmp_path: Path) -> None:
    """A failing verify step triggers the rollback; run `rolled_back`, `remediated` False."""
    marker = tmp_path / "fixed"
    pb = playbook(
        """
        name: verify-fails
        version: 1
        steps:
          - name: fix
            ssh: {command: "echo fixed > {{ annotations.marker }}"}
        verify:
          - name: impossible
            ssh: {command: "test -f {{ annotations.marker }}.nope"}
          - name: second check
            ssh: {command: "true"}
        rollback:
          - name: undo
            ssh: {command: "rm -f {{ annotations.marker }}"}
        """
    )
    outcome, records = execute(pb, context(marker=str(marker)), config=make_config(sshd))

    assert outcome.status is RunStatus.rolled_back
    assert outcome.remediated is False
    assert outcome.error is not None and "verification 'impossible' failed" in outcome.error
    assert summary(records) == [
        ("steps", "fix", "succeeded"),
        ("verify", "impossible", "failed"),
        ("rollback", "undo", "succeeded"),
    ]
    assert records[1]["exit_code"] == 1
    assert not marker.exists()


def test_passing_verification_marks_the_run_remediated(sshd: SshServer, tmp_path: Path) -> None:
    """When every verify step passes the run `succeeded` with `remediated` True and no rollback."""
    marker = tmp_path / "fixed"
    pb = playbook(
        """
        name: verify-passes
        version: 1
        steps:
          - name: fix
            ssh: {command: "echo fixed > {{ annotations.marker }}"}
        verify:
          - name: marker exists
            ssh: {command: "test -f {{ annotations.marker }}"}
        rollback:
          - name: undo
            ssh: {command: "rm -f {{ annotations.marker }}"}
        """
    )
    outcome, records = execute(pb, context(marker=str(marker)), config=make_config(sshd))

    assert outcome.status is RunStatus.succeeded, outcome.error
    assert outcome.remediated is True
    assert outcome.error is None
    assert summary(records) == [("steps", "fix", "succeeded"), ("verify", "marker exists", "succeeded")]
    assert marker.read_text() == "fixed\n"


# ---------------------------------------------------------------------------- retries


def test_http_5xx_is_retried_with_exponential_backoff(hook: TestHttpServer) -> None:
    """500, 500, 200 with `retries: 2` takes 3 attempts, waiting about 0.2 s then 0.4 s between them."""
    hook.script("/flaky", [500, 500, respond(200, json={"done": True})])
    pb = playbook(
        """
        name: backoff
        version: 1
        steps:
          - name: flaky
            http: {method: POST, url: "{{ annotations.hook }}/flaky", json: {n: 1}, expect_status: [200]}
            retries: 2
            retry_delay: 200ms
            retry_backoff: 2
            register: flaky
          - name: after
            http: {method: POST, url: "{{ annotations.hook }}/after", json: {done: "{{ flaky.json.done }}"}}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.succeeded, outcome.error
    flaky = [r for r in records if r["name"] == "flaky"]
    assert [(r["attempt"], r["status"], r["http_status"]) for r in flaky] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "succeeded", 200),
    ]
    assert gap(flaky[0], flaky[1]) >= 0.18
    assert gap(flaky[1], flaky[2]) >= 0.38
    assert [r.path for r in hook.requests] == ["/flaky"] * 3 + ["/after"]
    assert hook.requests[-1].json() == {"done": "True"}


def test_http_404_is_not_retried(hook: TestHttpServer) -> None:
    """A 4xx other than 429 is final: one attempt even with `retries`, and the run fails."""
    hook.script("/missing", [404, 200, 200])
    pb = playbook(
        """
        name: no-retry
        version: 1
        steps:
          - name: missing
            http: {url: "{{ annotations.hook }}/missing", expect_status: [200]}
            retries: 3
            retry_delay: 10ms
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.failed
    assert [(r["attempt"], r["status"], r["http_status"]) for r in records] == [(1, "failed", 404)]
    assert len(hook.requests) == 1


def test_http_429_waits_for_retry_after(hook: TestHttpServer) -> None:
    """A 429 with `Retry-After: 1` is retried after about a second, not after the short retry_delay."""
    hook.script("/limited", [respond(429, headers={"Retry-After": "1"}), respond(200)])
    pb = playbook(
        """
        name: rate-limited
        version: 1
        steps:
          - name: limited
            http: {method: POST, url: "{{ annotations.hook }}/limited", expect_status: [200]}
            retries: 1
            retry_delay: 10ms
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.succeeded, outcome.error
    assert [(r["attempt"], r["http_status"]) for r in records] == [(1, 429), (2, 200)]
    assert gap(records[0], records[1]) >= 0.95
    assert len(hook.requests) == 2


def test_ssh_nonzero_exit_is_retried(sshd: SshServer) -> None:
    """An ssh command exiting non-zero with `retries: 1` is attempted twice, then the run fails."""
    pb = playbook(
        """
        name: ssh-retry
        version: 1
        steps:
          - name: locked
            ssh: {command: "echo busy >&2; exit 1"}
            retries: 1
            retry_delay: 50ms
        """
    )
    outcome, records = execute(pb, context(), config=make_config(sshd))

    assert outcome.status is RunStatus.failed
    assert outcome.error is not None and "locked" in outcome.error
    assert [(r["attempt"], r["status"], r["exit_code"], r["stderr"]) for r in records] == [
        (1, "failed", 1, "busy\n"),
        (2, "failed", 1, "busy\n"),
    ]


# ---------------------------------------------------------------------------- timeout


@pytest.mark.parametrize(
    "step",
    [
        pytest.param({"name": "slow", "wait": "5s"}, id="wait"),
        pytest.param({"name": "slow", "ssh": {"command": "sleep 5"}}, id="ssh"),
    ],
)
def test_playbook_timeout_stops_the_run(sshd: SshServer, hook: TestHttpServer, step: dict[str, Any]) -> None:
    """A step outlasting the playbook `timeout: 1s` ends the run `timed_out`, promptly, later steps unrun."""
    pb = Playbook.model_validate(
        {
            "name": "too-slow",
            "version": 1,
            "timeout": "1s",
            "steps": [step, {"name": "after", "http": {"method": "POST", "url": "{{ annotations.hook }}/x"}}],
        }
    )
    began = time.monotonic()
    outcome, records = execute(pb, context(hook), config=make_config(sshd))
    elapsed = time.monotonic() - began

    assert outcome.status is RunStatus.timed_out
    assert outcome.remediated is False
    assert outcome.error is not None and "slow" in outcome.error and "timed out" in outcome.error
    assert summary(records) == [("steps", "slow", "timed_out")]
    assert hook.requests == []
    assert elapsed < 4, f"the run took {elapsed:.1f}s (hang guard)"


# ---------------------------------------------------------------------------- dry run


def test_dry_run_records_rendered_steps_and_executes_nothing(
    sshd: SshServer, hook: TestHttpServer, tmp_path: Path
) -> None:
    """A dry run records every step `dry_run` with rendered params, runs nothing, and still renders
    templates that use registered results."""
    marker = tmp_path / "touched"
    pb = playbook(
        """
        name: rehearse
        version: 1
        steps:
          - name: touch
            ssh: {command: "touch {{ annotations.marker }} && echo done"}
            register: touched
          - name: tell
            http:
              method: POST
              url: "{{ annotations.hook }}/tell"
              json: {text: "fixed {{ target }}", said: "{{ touched.stdout }}", rc: "{{ touched.exit_code }}"}
            register: told
          - name: follow up
            wait: 10s
            when: "touched.exit_code == 0 and told.status == 0"
        verify:
          - name: marker exists
            ssh: {command: "test -f {{ annotations.marker }}"}
        """
    )
    outcome, records = execute(pb, context(hook, marker=str(marker)), config=make_config(sshd), dry_run=True)

    assert outcome.status is RunStatus.succeeded, outcome.error
    assert outcome.remediated is False
    assert summary(records) == [
        ("steps", "touch", "dry_run"),
        ("steps", "tell", "dry_run"),
        ("steps", "follow up", "dry_run"),
        ("verify", "marker exists", "dry_run"),
    ]
    assert records[0]["params"] == {"command": f"touch {marker} && echo done", "sudo": False, "target": None}
    assert records[1]["params"]["url"] == f"{hook.url}/tell"
    assert records[1]["params"]["method"] == "POST"
    assert records[1]["params"]["json"] == {"text": "fixed sshhost", "said": "", "rc": "0"}
    assert records[2]["params"] == {"seconds": 10.0}
    assert records[3]["params"]["command"] == f"test -f {marker}"
    assert all(r["exit_code"] is None and r["http_status"] is None for r in records)
    assert hook.requests == []
    assert not marker.exists()


# ---------------------------------------------------------------------------- secrets

TOKEN = "s3cr3t-T0KEN-8f2a"
HOOK_PATH = "/services/T000/B000/XyZ-hook-secret"


def test_secrets_are_sent_for_real_but_redacted_in_records(hook: TestHttpServer) -> None:
    """A secret in a header and a json body reaches the server verbatim but is `***` in the records."""
    hook.script("/notify", [respond(200, json={"echo": TOKEN})])
    pb = playbook(
        """
        name: with-secret
        version: 1
        steps:
          - name: notify
            http:
              method: POST
              url: "{{ annotations.hook }}/notify"
              headers: {Authorization: "Bearer {{ secrets.API_TOKEN }}"}
              json: {token: "{{ secrets.API_TOKEN }}", text: "fixed {{ target }}"}
        """
    )
    outcome, records = execute(pb, context(hook), secrets={"API_TOKEN": TOKEN})

    assert outcome.status is RunStatus.succeeded, outcome.error
    [sent] = hook.requests
    assert sent.header("Authorization") == f"Bearer {TOKEN}"
    assert sent.json() == {"token": TOKEN, "text": "fixed sshhost"}
    [step] = records
    assert step["params"]["headers"] == {"Authorization": "Bearer ***"}
    assert step["params"]["json"] == {"token": "***", "text": "fixed sshhost"}
    assert "***" in step["stdout"]
    assert TOKEN not in repr(records)


def test_secrets_are_redacted_in_error_texts(hook: TestHttpServer) -> None:
    """A secret webhook URL that fails appears as `***` in the step's error and in the run's error."""
    hook.script(HOOK_PATH, [respond(500, body=f"bad token {TOKEN}")])
    pb = playbook(
        """
        name: secret-hook
        version: 1
        steps:
          - name: chat
            http:
              method: POST
              url: "{{ secrets.CHAT_HOOK }}"
              headers: {X-Token: "{{ secrets.API_TOKEN }}"}
              json: {token: "{{ secrets.API_TOKEN }}"}
              expect_status: [200]
        """
    )
    secret_url = hook.url + HOOK_PATH
    outcome, records = execute(pb, context(hook), secrets={"API_TOKEN": TOKEN, "CHAT_HOOK": secret_url})

    assert outcome.status is RunStatus.failed
    assert len(hook.requests) == 1 and hook.requests[0].header("X-Token") == TOKEN
    [step] = records
    assert step["params"]["url"] == "***"
    assert "***" in step["error"] and "500" in step["error"]
    assert "***" in step["stdout"]
    assert TOKEN not in repr(records) and HOOK_PATH not in repr(records)
    # The run's error is stored in runs.error and the audit log, and logged: it must be redacted too.
    assert outcome.error is not None and "500" in outcome.error
    assert HOOK_PATH not in outcome.error, f"secret webhook URL leaked into the run error: {outcome.error!r}"
    assert TOKEN not in outcome.error


# ------------------------------------------------------------------------- output cap


def test_ssh_stdout_is_capped_with_the_truncation_marker(sshd: SshServer) -> None:
    """With `workers.output_limit_bytes: 256`, 10 KB of stdout is recorded as 256 bytes plus the marker."""
    pb = playbook(
        """
        name: chatty
        version: 1
        steps:
          - name: chatty
            ssh: {command: "head -c 10240 /dev/zero | tr '\\\\0' x"}
        """
    )
    outcome, records = execute(pb, context(), config=make_config(sshd, output_limit_bytes=256))

    assert outcome.status is RunStatus.succeeded, outcome.error
    [step] = records
    marker = TRUNCATION_MARKER.format(omitted=10240 - 256)
    assert step["stdout"].endswith(marker)
    assert step["stdout"] == "x" * 256 + marker


def test_playbook_timeout_ends_the_run_even_past_continue_steps() -> None:
    """A step that `continue`s cannot hide the playbook's own deadline: the run ends `timed_out`."""
    pb = playbook(
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
    outcome, records = execute(pb, {"labels": {}, "annotations": {}, "target": "t"})
    assert outcome.status is RunStatus.timed_out
    assert outcome.remediated is False
    assert [r["name"] for r in records] == ["too long"]


def test_dry_run_when_on_registered_json_renders() -> None:
    """In a dry run a `when` that looks inside a registered JSON body evaluates (as false), not an error."""
    pb = playbook(
        """
        name: dry-json
        version: 1
        steps:
          - name: probe
            http: {method: GET, url: "http://127.0.0.1:1/health"}
            register: health
          - name: only if healthy
            wait: 0s
            when: "health.json.ok"
        """
    )
    outcome, records = execute(pb, {"labels": {}, "annotations": {}, "target": "t"}, dry_run=True)
    assert outcome.status is RunStatus.succeeded
    assert [(r["name"], r["status"]) for r in records] == [
        ("probe", "dry_run"),
        ("only if healthy", "skipped"),
    ]


# ------------------------------------------------------- names the alert lacks, up front


def test_missing_label_in_a_later_step_fails_the_run_before_the_first_step(
    sshd: SshServer, tmp_path: Path
) -> None:
    """Step 2 reads a label the alert lacks: the run fails naming it and step 1 never runs on the host."""
    marker = tmp_path / "step1-ran"
    pb = playbook(
        """
        name: half-way
        version: 1
        steps:
          - name: first change
            ssh: {command: "touch {{ annotations.marker }}"}
          - name: second change
            ssh: {command: "df -- {{ labels.mountpont }}"}
        """
    )
    outcome, records = execute(pb, context(marker=str(marker)), config=make_config(sshd))

    assert not marker.exists(), "step 1 ran before the missing label was noticed"
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None
    assert "second change" in outcome.error and "labels.mountpont" in outcome.error
    assert summary(records) == [("steps", "second change", "failed")]
    assert records[0]["exit_code"] is None and "labels.mountpont" in records[0]["error"]


def test_missing_names_in_verify_and_rollback_are_found_before_anything_runs(hook: TestHttpServer) -> None:
    """An annotation only the rollback reads, and a secret only verify reads, stop the run before step 1."""
    pb = playbook(
        """
        name: late-names
        version: 1
        steps:
          - name: notify
            http: {method: POST, url: "{{ annotations.hook }}/notify"}
        verify:
          - name: check
            http: {method: GET, url: "{{ annotations.hook }}/check", headers: {X-Key: "{{ secrets.NOPE }}"}}
        rollback:
          - name: undo
            http: {method: POST, url: "{{ annotations.undo_url }}"}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.failed
    assert outcome.error is not None
    assert "secrets.NOPE" in outcome.error and "annotations.undo_url" in outcome.error
    assert summary(records) == [("verify", "check", "failed"), ("rollback", "undo", "failed")]
    assert hook.requests == []


def test_guarded_and_registered_names_do_not_stop_the_run(hook: TestHttpServer) -> None:
    """`default`, `.get`, `is defined`, a `when:` guard and names registered later may be absent."""
    hook.script("/probe", [respond(200, json={"ok": True})])
    pb = playbook(
        """
        name: guarded
        version: 1
        steps:
          - name: probe
            http:
              method: POST
              url: "{{ annotations.hook }}/probe"
              json:
                a: "{{ labels.nope | default('none') }}"
                b: "{{ labels.get('nope', 'none') }}"
                c: "{{ labels.nope if labels.nope is defined else 'none' }}"
            register: probe
          - name: only with the label
            http: {method: POST, url: "{{ annotations.hook }}/{{ labels.nope }}"}
            when: "'nope' in labels"
          - name: after probe
            http: {method: POST, url: "{{ annotations.hook }}/after", json: {ok: "{{ probe.json.ok }}"}}
        """
    )
    outcome, records = execute(pb, context(hook))

    assert outcome.status is RunStatus.succeeded, outcome.error
    assert [r.path for r in hook.requests] == ["/probe", "/after"]
    assert hook.requests[0].json() == {"a": "none", "b": "none", "c": "none"}


# ------------------------------------------------------- alert values read as options

OPTION_PLAYBOOK = """
name: option-position
version: 1
steps:
  - name: reach
    ssh: {command: "ssh -o BatchMode=yes {{ labels.evil }} nohost true"}
"""


def test_label_in_option_position_is_refused_and_nothing_runs(sshd: SshServer, tmp_path: Path) -> None:
    """`-oProxyCommand=touch F` as a label before ssh's host fails the step naming it; F never appears."""
    pwned = tmp_path / "pwned"
    ctx = context()
    ctx["labels"]["evil"] = f"-oProxyCommand=touch {pwned}"
    outcome, records = execute(playbook(OPTION_PLAYBOOK), ctx, config=make_config(sshd))

    assert not pwned.exists(), "the label became an ssh option and ran a command"
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None and "labels.evil" in outcome.error and "option" in outcome.error
    assert summary(records) == [("steps", "reach", "failed")]
    assert records[0]["exit_code"] is None and records[0]["params"] == {}


def test_declared_label_pattern_lets_a_matching_option_through(sshd: SshServer, tmp_path: Path) -> None:
    """With the code's pattern for the label passed in, a matching `-v` reaches the command as given."""
    out = tmp_path / "argv"
    pb = playbook(
        """
        name: declared
        version: 1
        steps:
          - name: write argv
            ssh: {command: "printf '%s\\\\n' {{ labels.flag }} > {{ annotations.out }}"}
        """
    )
    ctx = context(out=str(out))
    ctx["labels"]["flag"] = "-v"
    runner = Runner(make_config(sshd), Renderer())
    outcome = runner.execute(pb, ctx, patterns={"labels.flag": "-v|-q"})
    assert outcome.status is RunStatus.succeeded, outcome.error
    assert out.read_text() == "-v\n"
    ctx["labels"]["flag"] = "-oProxyCommand=true"
    refused = runner.execute(pb, ctx, patterns={"labels.flag": "-v|-q"})
    assert refused.status is RunStatus.failed and "labels.flag" in (refused.error or "")


# ------------------------------------------------------- what secrets render to

FRAGMENT_TOKEN = "tok/3n+Secret=9"


def test_filtered_secrets_are_redacted_everywhere_in_records(sshd: SshServer, hook: TestHttpServer) -> None:
    """urlencode, upper, reversed and concatenated forms of a secret never appear in records or errors."""
    hook.script("/echo", [respond(500, body=f"got {FRAGMENT_TOKEN.upper()} and {FRAGMENT_TOKEN[::-1]}")])
    pb = playbook(
        """
        name: filtered-secret
        version: 1
        steps:
          - name: shout it
            ssh: {command: "echo {{ secrets.T | upper }}; echo {{ 'k-' ~ secrets.T }}"}
          - name: send it
            http:
              method: POST
              url: "{{ annotations.hook }}/echo?t={{ secrets.T | urlencode }}"
              headers: {X-Rev: "{{ secrets.T[::-1] }}"}
              json: {t: "{{ secrets.T | upper }}"}
              expect_status: [200]
        """
    )
    outcome, records = execute(pb, context(hook), config=make_config(sshd), secrets={"T": FRAGMENT_TOKEN})

    assert outcome.status is RunStatus.failed
    [sent] = hook.requests
    assert sent.header("X-Rev") == FRAGMENT_TOKEN[::-1]  # the real value went out
    stored = repr(records) + repr(outcome.error)
    for form in (FRAGMENT_TOKEN, FRAGMENT_TOKEN.upper(), FRAGMENT_TOKEN[::-1], "tok%2F3n%2BSecret%3D9"):
        assert form not in stored, form
    assert records[0]["stdout"] == "***\n***\n"
    assert records[1]["params"]["headers"] == {"X-Rev": "***"}
