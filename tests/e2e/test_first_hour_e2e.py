"""What a new user reads in the first hour, through the real daemon: a log that says what runs and
what was refused, failures at warning, decisions under who made them; text views that say the
time zone, mark dry runs and refuse a status that does not exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.conftest import run_cli, wait_for
from tests.payloads import am_alert, am_body

OPS_TOKEN = "ops-token-first-hour-0123456789"
SOURCE_TOKEN = "source-token-first-hour-0123456"
FAILING = """
- code: FAIL-001
  title: Its fix always fails
  severity: high
  match: {alertname: AlwaysFails}
  target: "{{ labels.instance }}"
  playbook: always-fails
  mode: approval
"""


def _events(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_log_and_the_text_views_tell_a_newcomer_the_truth(daemon_factory: Any, tmp_path: Path) -> None:
    playbook = "name: always-fails\nversion: 1\nsteps:\n  - name: call\n"
    playbook += "    http: {method: GET, url: 'http://127.0.0.1:1/', expect_status: [200]}\n"
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'first.db'}",
        env={"T_OPS": OPS_TOKEN, "T_AM": SOURCE_TOKEN},
        files={"codes/zz-fail.yaml": FAILING, "playbooks/always-fails.yaml": playbook},
        sources={"alertmanager": {"token_env": "T_AM"}},
        access={"tokens": [{"name": "chatops", "token_env": "T_OPS", "role": "operate"}], "open_reads": True},
    )
    [started] = [e for e in _events(daemon.log()) if e["event"] == "started"]
    assert started["codes"] == 5 and started["workers"] == 4 and started["version"]
    assert (
        started["database"].startswith("sqlite:///")
        and "alertmanager" not in started["unauthenticated_sources"]
    )
    assert "grafana" in started["unauthenticated_sources"]

    # Refused bodies are in the log with their status; nothing of the body's secrets is.
    assert daemon.post("alertmanager", am_body(am_alert("AlwaysFails"))).status_code == 401
    bearer = {"authorization": f"Bearer {SOURCE_TOKEN}"}
    assert daemon.post("alertmanager", b"{not json", headers=bearer).status_code == 400
    rejected = wait_for(lambda: [e for e in _events(daemon.log()) if e["event"] == "webhook_rejected"])
    assert sorted(e["status"] for e in rejected) == [400, 401]

    # An approval is logged under who gave it; the failed run is logged at warning.
    answer = daemon.post("alertmanager", am_body(am_alert("AlwaysFails", instance="h-1")), headers=bearer)
    [incident] = answer.json()["incidents_opened"]
    [run] = daemon.get(f"/api/v1/incidents/{incident}")["runs"]
    ops = {"authorization": f"Bearer {OPS_TOKEN}"}
    assert (
        httpx.post(f"{daemon.url}/api/v1/runs/{run['id']}/approve", headers=ops, timeout=5).status_code == 200
    )
    finished = wait_for(
        lambda: [
            e for e in _events(daemon.log()) if e["event"] == "run_finished" and e.get("run_id") == run["id"]
        ]
    )
    assert finished[0]["status"] == "failed" and finished[0]["level"] == "warning"
    [approved] = [e for e in _events(daemon.log()) if e["event"] == "approved"]
    assert (approved["run_id"], approved["by"]) == (run["id"], "chatops")

    # The text views: times say UTC, a dry-run column, and a status that does not exist is refused.
    listed = run_cli("runs", "list", config=daemon.config_path).stdout
    header, first = listed.splitlines()[:2]
    assert "DRY_RUN" in header and " UTC" in first
    bogus = run_cli("runs", "list", "--status", "bogus", config=daemon.config_path, check=False)
    assert bogus.returncode == 2 and "'bogus' is not one of" in bogus.stderr and "succeeded" in bogus.stderr
    assert httpx.get(f"{daemon.url}/api/v1/runs?status=bogus", timeout=5).status_code == 422
