"""Intake helper processes, through the real daemon: forwarded bodies are committed, answered,
counted and remediated exactly as the daemon's own; a dead helper loses nothing; reloads reach it.

`server.intake_helpers_above: 0` starts the helper at the first webhook instead of under load.
"""

from __future__ import annotations

import os
import signal
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import DaemonProcess, wait_for
from tests.payloads import am_alert, am_body

HELPER_ON = {"intake_helpers": 1, "intake_helpers_above": 0}


def _log_lines(daemon: DaemonProcess) -> list[dict[str, Any]]:
    lines = []
    for line in daemon.log().splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


def _helper_pid(daemon: DaemonProcess) -> int:
    """Send one body so the helper starts, then wait until the daemon reports it ready."""
    first = daemon.post("alertmanager", am_body(am_alert("Unmatched", fingerprint="warm-up")))
    assert first.status_code == 202, first.text
    wait_for(lambda: "suture_intake_helpers 1.0" in httpx.get(f"{daemon.url}/metrics").text, timeout=30)
    [ready] = [e for e in _log_lines(daemon) if e["event"] == "intake_helper_ready"]
    return int(ready["pid"])


def _stored_by_helper(daemon: DaemonProcess, pid: int) -> set[int]:
    """Event ids the helper logged as stored (it logs just after it answers: poll for them)."""
    return {
        e["event_id"]
        for e in _log_lines(daemon)
        if e["event"] == "event_stored" and e.get("intake_helper") == pid
    }


def _metric(daemon: DaemonProcess, line_start: str) -> float:
    for line in httpx.get(f"{daemon.url}/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def helped(daemon_factory: Any, db_url: str) -> DaemonProcess:
    return daemon_factory(db_url, server=HELPER_ON)  # type: ignore[no-any-return]


def test_helper_commits_dedups_resolves_and_remediates(helped: DaemonProcess) -> None:
    """Bodies the helper takes open, bump and resolve incidents and queue runs the daemon runs."""
    pid = _helper_pid(helped)
    opened = helped.post("alertmanager", am_body(am_alert()))
    assert opened.status_code == 202, opened.text
    assert len(opened.json()["incidents_opened"]) == 1
    again = helped.post("alertmanager", am_body(am_alert()))
    assert again.json()["incidents_opened"] == [] and again.json()["incidents_updated"] != []
    [incident] = [i for i in helped.cli("incidents", "list") if i["code"] == "DISK-001"]
    assert incident["occurrences"] == 2
    # The auto code's run was queued by the helper's commit and executed by the daemon's workers.
    runs = wait_for(lambda: [r for r in helped.cli("runs", "list") if r["status"] == "succeeded"])
    assert [r["incident_id"] for r in runs] == [incident["id"]]
    resolved = helped.post(
        "alertmanager", am_body(am_alert(status="resolved", ends_at="2026-11-23T10:05:00Z"))
    )
    assert resolved.json()["incidents_resolved"] == [incident["id"]]
    event_ids = {r.json()["event_id"] for r in (opened, again, resolved)}
    wait_for(lambda: event_ids <= _stored_by_helper(helped, pid))
    assert _metric(helped, 'suture_alerts_received_total{source="alertmanager"}') == 4
    assert _metric(helped, "suture_incidents_opened_total") == 2  # warm-up + DISK-001
    # What the helper's commit announced reaches the daemon's hooks: a run held for approval.
    held = helped.post("alertmanager", am_body(am_alert("NeedsApproval", fingerprint="held-1")))
    assert held.status_code == 202
    wait_for(lambda: held.json()["event_id"] in _stored_by_helper(helped, pid))
    wait_for(lambda: _metric(helped, 'suture_policy_holds_total{gate="approval"}') == 1)


def test_concurrent_bodies_through_helper_are_all_stored_once(helped: DaemonProcess) -> None:
    pid = _helper_pid(helped)
    bodies = [
        am_body(*(am_alert(fingerprint=f"c{n:03d}-{k}", instance=f"h{n}:9100") for k in range(5)))
        for n in range(60)
    ]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: helped.post("alertmanager", b), bodies))
    assert [a.status_code for a in answers] == [202] * 60
    event_ids = {a.json()["event_id"] for a in answers}
    wait_for(lambda: event_ids <= _stored_by_helper(helped, pid))
    incidents = helped.cli("incidents", "list", "--limit", "1000")
    assert len([i for i in incidents if i["fingerprint"].startswith("c")]) == 300


def test_refusals_from_helper_name_the_field_and_store_nothing(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'refuse.db'}", server=HELPER_ON)
    _helper_pid(daemon)
    bad_time = daemon.post("alertmanager", am_body(am_alert(starts_at="yesterday")))
    assert bad_time.status_code == 422
    assert bad_time.json()["field"] == "alerts.0.startsAt"
    not_json = daemon.post("alertmanager", b"{not json")
    assert not_json.status_code == 400 and not_json.json()["field"] == "body"
    assert [i["fingerprint"] for i in daemon.cli("incidents", "list")] == ["warm-up"]
    assert _metric(daemon, 'suture_webhooks_rejected_total{reason="invalid",source="alertmanager"}') == 2


def test_killed_helper_loses_no_alert(daemon_factory: Any, tmp_path: Path) -> None:
    """SIGKILL the helper: the next bodies are taken by the daemon itself, still 202 and stored."""
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'kill.db'}", server=HELPER_ON)
    pid = _helper_pid(daemon)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: any(e["event"] == "intake_helper_exited" for e in _log_lines(daemon)))
    for n in range(5):
        answer = daemon.post("alertmanager", am_body(am_alert(fingerprint=f"after-{n}")))
        assert answer.status_code == 202, answer.text
    fingerprints = {i["fingerprint"] for i in daemon.cli("incidents", "list")}
    assert {f"after-{n}" for n in range(5)} <= fingerprints
    assert _metric(daemon, "suture_intake_helpers") == 0


def test_sighup_reload_reaches_the_helper(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'reload.db'}", server=HELPER_ON)
    pid = _helper_pid(daemon)
    codes = daemon.config_path.parent / "codes" / "late.yaml"
    codes.write_text(
        textwrap.dedent(
            """\
            - code: LATE-001
              title: Added while running
              severity: low
              match: {alertname: LateThing}
              target: "{{ labels.instance }}"
              mode: manual
            """
        )
    )
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "catalog_reloaded" for e in _log_lines(daemon)))
    answer = daemon.post("alertmanager", am_body(am_alert("LateThing", fingerprint="late")))
    wait_for(lambda: answer.json()["event_id"] in _stored_by_helper(daemon, pid))
    [incident] = [i for i in daemon.cli("incidents", "list") if i["fingerprint"] == "late"]
    assert incident["code"] == "LATE-001"


def test_stopping_the_daemon_ends_its_helper(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'stop.db'}", server=HELPER_ON)
    pid = _helper_pid(daemon)
    daemon.stop()
    assert daemon.proc is not None and daemon.proc.returncode == 0
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)
