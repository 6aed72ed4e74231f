"""Access to the API through the real daemon: who may approve, who is recorded, what a browser can do."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.config import load_config
from tests.conftest import ROOT, DaemonProcess, free_port, wait_for, write_config
from tests.payloads import am_alert, am_body

OPS_TOKEN = "ops-" + secrets.token_hex(16)
READ_TOKEN = "ro-" + secrets.token_hex(16)
ALICE_PASSWORD = "correct horse battery staple"
TOKEN_ENV = {"SUTURE_API_OPS": OPS_TOKEN, "SUTURE_API_READ": READ_TOKEN}
TOKENS = [
    {"name": "chatops", "token_env": "SUTURE_API_OPS", "role": "operate"},
    {"name": "grafana-ro", "token_env": "SUTURE_API_READ", "role": "read"},
]


def suture(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def access_hash(password: str) -> str:
    """A password hash exactly as an operator makes one: `suture access hash` on stdin."""
    result = suture("access", "hash", stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def decide(
    daemon: DaemonProcess, run_id: int, verb: str, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    url = f"{daemon.url}/api/v1/runs/{run_id}/{verb}"
    if body is None:
        return httpx.post(url, headers=headers or {}, timeout=10)
    return httpx.post(url, json=body, headers=headers or {}, timeout=10)


def awaiting_run(daemon: DaemonProcess, fingerprint: str) -> int:
    """A run of the approval-mode code, waiting for someone to decide."""
    answer = daemon.post("alertmanager", am_body(am_alert("NeedsApproval", fingerprint=fingerprint)))
    assert answer.status_code == 202, answer.text
    [run_id] = answer.json()["runs_queued"]
    wait_for(lambda: run_status(daemon, run_id) == "awaiting_approval")
    return int(run_id)


def run_status(daemon: DaemonProcess, run_id: int) -> str:
    return str(daemon.cli("runs", "show", str(run_id))["status"])


def timeline(daemon: DaemonProcess, run_id: int) -> list[tuple[str, str, str]]:
    incident_id = daemon.cli("runs", "show", str(run_id))["incident_id"]
    entries = daemon.cli("incidents", "show", str(incident_id))["timeline"]
    return [(t["kind"], t["actor"], t["message"]) for t in entries if t.get("run_id") in (None, run_id)]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon with an operate token, a read token and a password user, reads closed."""
    folder = tmp_path_factory.mktemp("guarded")
    port = free_port()
    users = [{"name": "alice", "password_hash": access_hash(ALICE_PASSWORD), "role": "operate"}]
    config = write_config(
        folder,
        f"sqlite:///{folder / 'suture.db'}",
        port=port,
        workers={"poll_interval": "200ms"},
        access={"open_reads": False, "tokens": TOKENS, "users": users},
    )
    daemon = DaemonProcess(config, port, env=TOKEN_ENV).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_without_access_configured_approve_and_reject_are_refused(daemon_factory: Any, db_url: str) -> None:
    """Shipped config (no access): approve/reject answer 403 `no access configured`, the run still waits."""
    daemon = daemon_factory(db_url)
    run_id = awaiting_run(daemon, "noaccess1")
    for verb, body in (("approve", None), ("approve", {}), ("reject", {"by": "mallory", "reason": "x"})):
        answer = decide(daemon, run_id, verb, body, headers=bearer("anything-at-all-0000"))
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"].startswith("no access configured: ")
    assert run_status(daemon, run_id) == "awaiting_approval"
    assert all(kind not in ("approved", "rejected") for kind, _, _ in timeline(daemon, run_id))
    # Reads stay open on loopback, and the CLI (which uses the database itself) still decides.
    assert daemon.get(f"/api/v1/runs/{run_id}")["status"] == "awaiting_approval"
    assert [i["code"] for i in daemon.get("/api/v1/incidents")["items"]] == ["APPR-001"]
    assert daemon.cli("reject", str(run_id), "--by", "carol")["status"] == "rejected"


def test_missing_or_wrong_credentials_get_401_with_a_challenge(guarded: DaemonProcess) -> None:
    """No or wrong credentials: 401 naming neither, WWW-Authenticate offering Bearer and Basic, no change."""
    run_id = awaiting_run(guarded, "auth401")
    missing = decide(guarded, run_id, "approve", {})
    wrong_token = decide(guarded, run_id, "approve", {}, headers=bearer(OPS_TOKEN + "x"))
    wrong_password = decide(guarded, run_id, "approve", {}, headers=basic("alice", "wrong"))
    unknown_user = decide(guarded, run_id, "approve", {}, headers=basic("nobody", ALICE_PASSWORD))
    assert missing.status_code == 401 and missing.json() == {"error": "authentication required"}
    for answer in (wrong_token, wrong_password, unknown_user):
        assert answer.status_code == 401 and answer.json() == {"error": "unauthorized"}
    challenge = missing.headers["www-authenticate"]
    assert "Bearer" in challenge and "Basic" in challenge
    assert run_status(guarded, run_id) == "awaiting_approval"


def test_read_token_cannot_approve(guarded: DaemonProcess) -> None:
    """A token with role read gets 403 on approve and reject; the run still waits."""
    run_id = awaiting_run(guarded, "readonly403")
    for verb in ("approve", "reject"):
        answer = decide(guarded, run_id, verb, {}, headers=bearer(READ_TOKEN))
        assert answer.status_code == 403
        assert answer.json() == {"error": "grafana-ro has role read; this needs role operate"}
    assert run_status(guarded, run_id) == "awaiting_approval"


def test_operate_token_rejects_under_its_own_name_not_the_bodys(guarded: DaemonProcess) -> None:
    """Reject with the operate token and `"by": "mallory"`: recorded as the token's name, reason kept."""
    run_id = awaiting_run(guarded, "reject-as-token")
    body = {"by": "mallory", "reason": "not during the sale"}
    answer = decide(guarded, run_id, "reject", body, headers=bearer(OPS_TOKEN))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "rejected"
    run = guarded.cli("runs", "show", str(run_id))
    assert run["steps"] == [] and run["error"] == "rejected by chatops: not during the sale"
    entries = timeline(guarded, run_id)
    assert ("rejected", "chatops", f"run {run_id} rejected by chatops: not during the sale") in entries
    assert not any("mallory" in actor or "mallory" in message for _, actor, message in entries)
    assert OPS_TOKEN not in guarded.log() and READ_TOKEN not in guarded.log()


def test_operate_token_approves_and_the_run_executes(guarded: DaemonProcess) -> None:
    """Approve with the operate token: the run executes, the approval recorded under the token's name."""
    run_id = awaiting_run(guarded, "approve-as-token")
    answer = decide(guarded, run_id, "approve", {"by": "mallory"}, headers=bearer(OPS_TOKEN))
    assert answer.status_code == 200, answer.text
    wait_for(lambda: run_status(guarded, run_id) == "succeeded")
    assert ("approved", "chatops", f"run {run_id} approved by chatops") in timeline(guarded, run_id)
    again = decide(guarded, run_id, "approve", {}, headers=bearer(OPS_TOKEN))
    assert again.status_code == 409 and "not awaiting_approval" in again.json()["error"]


def test_browser_style_posts_get_415_and_change_nothing(guarded: DaemonProcess) -> None:
    """Bodies a web page can send cross-site (text/plain, form, empty with cached Basic) get 415."""
    run_id = awaiting_run(guarded, "browser415")
    url = f"{guarded.url}/api/v1/runs/{run_id}/approve"
    alice = basic("alice", ALICE_PASSWORD)  # what a browser replays once the user signed in
    attempts = [
        httpx.post(url, content=b"", headers={"Content-Type": "text/plain", **alice}, timeout=10),
        httpx.post(url, content=b"", headers={"Content-Type": "text/plain"}, timeout=10),
        httpx.post(url, data={"by": "mallory"}, headers=bearer(OPS_TOKEN), timeout=10),
        httpx.post(url, content=b"", headers=alice, timeout=10),
    ]
    for answer in attempts:
        assert answer.status_code == 415, (answer.request.headers, answer.text)
        assert answer.json()["error"].startswith("Content-Type must be application/json")
    assert run_status(guarded, run_id) == "awaiting_approval"
    # `curl -X POST -H 'Authorization: Bearer ...'`: no body, no content type, a token no browser adds.
    curl_style = httpx.post(url, headers=bearer(OPS_TOKEN), timeout=10)
    assert curl_style.status_code == 200, curl_style.text
    assert run_status(guarded, run_id) != "awaiting_approval"


def test_basic_auth_user_from_access_hash_approves_as_herself(guarded: DaemonProcess) -> None:
    """A user whose hash came from `suture access hash` approves with HTTP Basic, recorded under her name."""
    run_id = awaiting_run(guarded, "basic-alice")
    answer = decide(guarded, run_id, "approve", {}, headers=basic("alice", ALICE_PASSWORD))
    assert answer.status_code == 200, answer.text
    assert ("approved", "alice", f"run {run_id} approved by alice") in timeline(guarded, run_id)
    assert ALICE_PASSWORD not in guarded.log()


def test_closed_reads_need_a_read_token(guarded: DaemonProcess) -> None:
    """`open_reads: false`: GET /api/v1/incidents is 401 without credentials, 200 with read or operate."""
    url = f"{guarded.url}/api/v1/incidents"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=bearer("not-a-token-at-all"), timeout=10).status_code == 401
    for headers in (bearer(READ_TOKEN), bearer(OPS_TOKEN), basic("alice", ALICE_PASSWORD)):
        answer = httpx.get(url, headers=headers, timeout=10)
        assert answer.status_code == 200 and "items" in answer.json()
    # Probes and scrapers are not /api/v1: they stay open.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{guarded.url}{path}", timeout=10).status_code == 200


def test_open_reads_lets_anyone_read_but_not_change(daemon_factory: Any, tmp_path: Path) -> None:
    """`open_reads: true`: reads need no credentials, approve still needs an operate token."""
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'open.db'}", env=TOKEN_ENV, access={"open_reads": True, "tokens": TOKENS}
    )
    run_id = awaiting_run(daemon, "openreads")
    assert daemon.get(f"/api/v1/runs/{run_id}")["status"] == "awaiting_approval"
    assert decide(daemon, run_id, "approve", {}).status_code == 401
    assert run_status(daemon, run_id) == "awaiting_approval"


def test_non_loopback_host_without_access_is_refused_at_start(tmp_path: Path) -> None:
    """server.host 0.0.0.0 without access: `suture serve` exits 2 with one line naming server.host."""
    config = write_config(tmp_path / "site", f"sqlite:///{tmp_path / 'wide.db'}", server={"host": "0.0.0.0"})
    for command in ("serve", "validate"):
        result = suture(command, "--config", str(config))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert lines[0].startswith(f"config error: {config}:")
        assert "server.host: '0.0.0.0' is not a loopback address" in lines[0]
    assert not (tmp_path / "wide.db").exists()  # refused before the database was touched


def test_non_loopback_host_with_access_passes_validation(tmp_path: Path) -> None:
    """server.host 0.0.0.0 with access.tokens configured is a valid config."""
    config = write_config(
        tmp_path / "site",
        f"sqlite:///{tmp_path / 'wide.db'}",
        server={"host": "0.0.0.0"},
        access={"tokens": TOKENS},
    )
    result = suture("validate", "--config", str(config), env=TOKEN_ENV)
    assert result.returncode == 0, result.stderr
    assert load_config(config).access.tokens[0].name == "chatops"


def test_unset_token_env_stops_serve_with_one_line(tmp_path: Path) -> None:
    """A configured token whose environment variable is unset: serve exits 2 naming the key, not starting."""
    config = write_config(
        tmp_path / "site", f"sqlite:///{tmp_path / 'unset.db'}", port=free_port(), access={"tokens": TOKENS}
    )
    env = {"SUTURE_API_OPS": OPS_TOKEN}
    result = suture("serve", "--config", str(config), env={**env, "SUTURE_API_READ": ""})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(
        rf"config error: {re.escape(str(config))}:\d+: access\.tokens\.1\.token_env: environment variable "
        r"SUTURE_API_READ is not set \(the token for grafana-ro\)",
        line,
    ), line
    assert OPS_TOKEN not in result.stderr
    assert not (tmp_path / "unset.db").exists()


def test_unknown_routes_and_methods_answer_in_the_error_shape(guarded: DaemonProcess) -> None:
    """404, 405, 413 and 422 come as {"error", "field"?} like every other error, not FastAPI's {"detail"}."""
    ops = bearer(OPS_TOKEN)
    unknown = httpx.get(f"{guarded.url}/api/v1/nothing-here", timeout=10)
    assert unknown.status_code == 404 and unknown.json() == {"error": "not found: /api/v1/nothing-here"}
    wrong_method = httpx.get(f"{guarded.url}/api/v1/runs/1/approve", headers=ops, timeout=10)
    assert wrong_method.status_code == 405
    expected = "method GET not allowed on /api/v1/runs/1/approve (allowed: POST)"
    assert wrong_method.json() == {"error": expected}
    assert wrong_method.headers["allow"] == "POST"
    delete = httpx.delete(f"{guarded.url}/api/v1/incidents", headers=ops, timeout=10)
    assert delete.status_code == 405 and set(delete.json()) == {"error"}
    missing_run = httpx.get(f"{guarded.url}/api/v1/runs/999999", headers=ops, timeout=10)
    assert missing_run.status_code == 404 and missing_run.json() == {"error": "run 999999 not found"}
    bad_limit = httpx.get(f"{guarded.url}/api/v1/runs?limit=0", headers=ops, timeout=10)
    assert bad_limit.status_code == 422 and bad_limit.json()["field"] == "limit"
    assert bad_limit.json()["error"].startswith("limit: ")
    long_reason = decide(guarded, 999999, "reject", {"reason": "x" * 3000}, headers=ops)
    assert long_reason.status_code == 422 and long_reason.json()["field"] == "reason"
    huge = httpx.post(
        f"{guarded.url}/api/v1/runs/999999/reject",
        content=b'{"reason": "' + b"x" * 70_000 + b'"}',
        headers={"Content-Type": "application/json", **ops},
        timeout=10,
    )
    assert huge.status_code == 413 and set(huge.json()) == {"error"}
    chunked = httpx.post(  # no Content-Length to trust: counted as it arrives
        f"{guarded.url}/api/v1/runs/999999/reject",
        content=iter([b'{"reason": "', b"x" * 70_000, b'"}']),
        headers={"Content-Type": "application/json", **ops},
        timeout=10,
    )
    assert chunked.status_code == 413 and "content-length" not in chunked.request.headers


def test_access_hash_output_loads_and_authenticates(tmp_path: Path) -> None:
    """`suture access hash` prints one scrypt hash that load_config accepts and that checks the password."""
    printed = suture("access", "hash", stdin="s3cret-enough\n")
    assert printed.returncode == 0 and printed.stderr == ""
    [line] = printed.stdout.splitlines()
    assert line.startswith("scrypt:") and "s3cret" not in line
    user = {"name": "dana", "password_hash": line, "role": "read"}
    config = write_config(tmp_path / "site", f"sqlite:///{tmp_path / 'h.db'}", access={"users": [user]})
    control = load_config(config).access_control()
    assert control.authenticate(basic("dana", "s3cret-enough")["Authorization"]) is not None
    assert control.authenticate(basic("dana", "s3cret-enough\n")["Authorization"]) is None
    empty = suture("access", "hash", stdin="")
    assert empty.returncode == 1 and empty.stderr.strip() == "error: the password is empty"
