"""The daemon as an operator meets it: crashes, reloads, secrets, authentication, several processes."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ROOT, DaemonProcess, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer
from tests.support.slow_playbook import SLOW_CODES, SLOW_IDEMPOTENT
from tests.support.sshd import SshServer


def _ssh_sections(sshd: SshServer) -> dict[str, Any]:
    return {
        "ssh": {"user": sshd.user, "key_file": str(sshd.key_file), "known_hosts": str(sshd.known_hosts)},
        "inventory": [{"match": "*", "address": "127.0.0.1", "port": sshd.port}],
    }


def _run_status(daemon: DaemonProcess, run_id: int) -> str:
    return str(daemon.cli("runs", "show", str(run_id))["status"])


def _workers_polled(daemon: DaemonProcess, fingerprint: str, headers: dict[str, str]) -> None:
    """Queue an automatic run and wait until it succeeded: the workers have looked at the queue
    since every run queued before it (what a test that expects a run NOT to start waits for)."""
    response = daemon.post(
        "alertmanager", am_body(am_alert(fingerprint=fingerprint, instance=f"{fingerprint}:1"))
    )
    [run_id] = response.json()["runs_queued"]
    wait_for(lambda: daemon.get(f"/api/v1/runs/{run_id}", headers)["status"] == "succeeded")


@pytest.mark.parametrize(
    ("alertname", "expected"), [("SlowThing", "interrupted"), ("SlowIdempotent", "requeued")]
)
def test_sigkill_mid_run_is_recovered_at_next_start(
    daemon_factory: Any, sshd: SshServer, tmp_path: Path, alertname: str, expected: str
) -> None:
    """Kill -9 mid-run: at restart the run is `interrupted` (re-queued if idempotent), never stuck."""
    files = {"codes/zz-slow.yaml": SLOW_CODES, "playbooks/slow-idempotent.yaml": SLOW_IDEMPOTENT}
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    daemon = daemon_factory(db, files=files, **_ssh_sections(sshd))
    earlier = set(sshd.commands())
    response = daemon.post(
        "alertmanager", am_body(am_alert(alertname, fingerprint="crash1", instance="sshhost"))
    )
    [run_id] = response.json()["runs_queued"]
    wait_for(lambda: sshd.running("sleep 60", besides=earlier))  # the SSH command is under way
    assert _run_status(daemon, run_id) == "running"
    daemon.kill()
    assert _run_status(daemon, run_id) == "running"  # what a dead daemon leaves behind

    restarted = DaemonProcess(daemon.config_path, daemon.port).start()
    try:
        run = restarted.cli("runs", "show", str(run_id))
        incident = restarted.cli("incidents", "show", str(run["incident_id"]))
        kinds = [entry["kind"] for entry in incident["timeline"]]
        if expected == "interrupted":
            assert run["status"] == "interrupted"
            assert "interrupted" in run["error"]
            assert "run_interrupted" in kinds
            assert run["finished_at"] is not None
        else:
            assert "run_requeued" in kinds
            assert run["status"] in ("queued", "running")
            # It was claimed again by the new daemon: started anew.
            wait_for(lambda: _run_status(restarted, run_id) == "running")
    finally:
        restarted.kill()


def test_sighup_reloads_valid_catalog_and_keeps_last_good(daemon_factory: Any, tmp_path: Path) -> None:
    """SIGHUP picks up a new code; an invalid catalog is refused and the last good one stays in force."""
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'r.db'}")
    codes = daemon.config_path.parent / "codes" / "zz-new.yaml"
    codes.write_text("- code: NEW-001\n  title: New\n  severity: low\n  match: {alertname: BrandNew}\n")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "NEW-001" in [c["code"] for c in daemon.get("/api/v1/codes")["items"]])
    daemon.post("alertmanager", am_body(am_alert("BrandNew", fingerprint="n1")))
    assert daemon.cli("incidents", "list")[0]["code"] == "NEW-001"

    codes.write_text("- code: NEW-001\n  title: Broken\n  severity: apocalyptic\n  match: {}\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "catalog_reload_refused" in daemon.log())
    assert "zz-new.yaml:3" in daemon.log()
    daemon.post("alertmanager", am_body(am_alert("BrandNew", fingerprint="n2")))
    assert daemon.cli("incidents", "list")[0]["code"] == "NEW-001"


SECRET_PLAYBOOK = """
name: notify
version: 1
steps:
  - name: call the hook
    http:
      method: POST
      url: "{{ annotations.hook }}?token={{ secrets.HOOK_TOKEN }}"
      headers: {Authorization: "Bearer {{ secrets.HOOK_TOKEN }}"}
      json: {text: "token is {{ secrets.HOOK_TOKEN }}"}
      expect_status: [200]
"""
SECRET_CODE = """
- code: NOTIFY-001
  title: Notify
  severity: low
  match: {alertname: Notify}
  playbook: notify
  mode: auto
"""


def test_secrets_reach_the_target_but_never_the_database_or_logs(
    daemon_factory: Any, hook: TestHttpServer, tmp_path: Path
) -> None:
    """A secret from the environment reaches the hook but is redacted in stored params, output and logs."""
    secret = "s3cr3t-Token-4242"
    db_file = tmp_path / "secret.db"
    daemon = daemon_factory(
        f"sqlite:///{db_file}",
        env={"SUTURE_HOOK_TOKEN": secret},
        files={"codes/zz-notify.yaml": SECRET_CODE, "playbooks/notify.yaml": SECRET_PLAYBOOK},
        secrets={"HOOK_TOKEN": {"env": "SUTURE_HOOK_TOKEN"}},
        http={"allowed_hosts": ["127.0.0.1"]},
    )
    alert = am_alert("Notify", fingerprint="s1")
    alert["annotations"]["hook"] = hook.url_for("/hook")
    [run_id] = daemon.post("alertmanager", am_body(alert)).json()["runs_queued"]
    run = wait_for(lambda: (r := daemon.cli("runs", "show", str(run_id)))["finished_at"] and r)
    assert run["status"] == "succeeded", run
    [request] = hook.requests
    assert request.header("Authorization") == f"Bearer {secret}"
    assert request.json() == {"text": f"token is {secret}"}
    params = run["steps"][0]["params"]
    assert params["headers"]["Authorization"] == "Bearer ***"
    assert params["json"] == {"text": "token is ***"}
    assert secret not in params["url"]
    daemon.stop()
    assert secret.encode() not in db_file.read_bytes()
    assert secret not in daemon.log()


def test_bearer_token_required_when_configured(daemon_factory: Any, tmp_path: Path) -> None:
    """With a token configured, a missing or wrong token gets 401 without saying which; the right one 202."""
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'auth.db'}",
        env={"SUTURE_TOKEN_AM": "right-token"},
        sources={"alertmanager": {"token_env": "SUTURE_TOKEN_AM"}},
    )
    body = am_body(am_alert())
    missing = daemon.post("alertmanager", body)
    wrong = daemon.post("alertmanager", body, headers={"Authorization": "Bearer wrong-token"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == wrong.json() == {"error": "unauthorized"}
    assert daemon.cli("incidents", "list") == []
    right = daemon.post("alertmanager", body, headers={"Authorization": "Bearer right-token"})
    assert right.status_code == 202


def test_generic_signature_checked_when_secret_configured(daemon_factory: Any, tmp_path: Path) -> None:
    """A signed generic webhook is accepted; tampered or unsigned ones get 401 and store nothing."""
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'sig.db'}",
        env={"SUTURE_GENERIC_SECRET": "shared-secret"},
        sources={"generic": {"signature_secret_env": "SUTURE_GENERIC_SECRET"}},
    )
    import orjson

    body = orjson.dumps({"alerts": [{"name": "ManualOnly", "status": "firing", "labels": {"host": "h"}}]})
    signature = hmac.new(b"shared-secret", body, hashlib.sha256).hexdigest()
    assert daemon.post("generic", body).status_code == 401
    tampered = body.replace(b"ManualOnly", b"ManualOnlx")
    assert daemon.post("generic", tampered, headers={"X-Suture-Signature": signature}).status_code == 401
    assert daemon.cli("incidents", "list") == []
    ok = daemon.post("generic", body, headers={"X-Suture-Signature": f"sha256={signature}"})
    assert ok.status_code == 202


def test_approval_through_cli_and_api(daemon_factory: Any, tmp_path: Path) -> None:
    """Approved (CLI) runs execute; rejected (API, operate token) ones never do and are recorded under
    the token's name, whatever `by` the body claims; a finished run cannot be approved."""
    token = "chatops-token-" + "0123456789abcdef"
    auth = {"Authorization": f"Bearer {token}"}
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'approve.db'}",
        env={"SUTURE_API_OPS": token},
        workers={"poll_interval": "200ms"},
        access={"tokens": [{"name": "chatops", "token_env": "SUTURE_API_OPS", "role": "operate"}]},
    )
    first = daemon.post("alertmanager", am_body(am_alert("NeedsApproval", fingerprint="ap1"))).json()
    second = daemon.post("alertmanager", am_body(am_alert("NeedsApproval", fingerprint="ap2"))).json()
    [approved_id], [rejected_id] = first["runs_queued"], second["runs_queued"]
    _workers_polled(daemon, "later1", auth)
    assert _run_status(daemon, approved_id) == "awaiting_approval"

    approved = daemon.cli("approve", str(approved_id), "--by", "alice")
    assert approved["status"] in ("queued", "running", "succeeded")
    wait_for(lambda: daemon.get(f"/api/v1/runs/{approved_id}", auth)["status"] == "succeeded")

    import httpx

    url = f"{daemon.url}/api/v1/runs/{rejected_id}/reject"
    response = httpx.post(url, json={"by": "bob", "reason": "not during the sale"}, headers=auth, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"
    _workers_polled(daemon, "later2", auth)
    rejected = daemon.cli("runs", "show", str(rejected_id))
    assert rejected["steps"] == [] and rejected["error"] == "rejected by chatops: not during the sale"
    again = httpx.post(f"{daemon.url}/api/v1/runs/{approved_id}/approve", headers=auth, timeout=10)
    assert again.status_code == 409 and "not awaiting_approval" in again.json()["error"]
    timeline = daemon.cli("incidents", "show", str(rejected["incident_id"]))["timeline"]
    actors = [(t["kind"], t["actor"]) for t in timeline]
    assert ("rejected", "chatops") in actors and ("rejected", "bob") not in actors


def test_pause_holds_queued_runs_until_resume(daemon_factory: Any, tmp_path: Path) -> None:
    """`suture pause` is the first gate: a run intake would queue is skipped saying so, and a run
    queued already (approved while paused) does not start until `suture resume`."""
    from tests.conftest import run_cli

    daemon = daemon_factory(f"sqlite:///{tmp_path / 'pause.db'}", workers={"poll_interval": "200ms"})
    [waiting] = daemon.post("alertmanager", am_body(am_alert("NeedsApproval", fingerprint="pz0"))).json()[
        "incidents_opened"
    ]
    [run_id] = [run["id"] for run in daemon.get(f"/api/v1/incidents/{waiting}")["runs"]]
    assert run_cli("pause", config=daemon.config_path).returncode == 0
    answer = daemon.post("alertmanager", am_body(am_alert(fingerprint="pz1"))).json()
    assert answer["runs_queued"] == []
    [held] = daemon.get(f"/api/v1/incidents/{answer['incidents_opened'][0]}")["runs"]
    assert held["status"] == "skipped" and held["reason"].startswith("paused")
    assert run_cli("approve", str(run_id), "--by", "alice", config=daemon.config_path).returncode == 0
    time.sleep(1.0)  # the point of the test: five polls of 200 ms, and a paused daemon starts nothing
    assert _run_status(daemon, run_id) == "queued"
    assert run_cli("resume", config=daemon.config_path).returncode == 0
    wait_for(lambda: _run_status(daemon, run_id) == "succeeded")


def test_a_taken_port_is_one_clear_error_before_anything_starts(daemon_factory: Any, tmp_path: Path) -> None:
    """`serving` is said only once the port is bound: a second daemon on the same port exits 2
    with one line naming the address, logs `listen_failed` as JSON, and leaves no traceback."""
    first = daemon_factory(f"sqlite:///{tmp_path / 'one.db'}")
    config = write_config(tmp_path / "second", f"sqlite:///{tmp_path / 'two.db'}", port=first.port)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    [line] = [text for text in result.stderr.splitlines() if not text.startswith("{")]
    assert f"cannot listen on 127.0.0.1:{first.port}" in line
    events = [
        orjson.loads(text)["event"]
        for text in (result.stdout + result.stderr).splitlines()
        if text.startswith("{")
    ]
    assert "listen_failed" in events and "serving" not in events
