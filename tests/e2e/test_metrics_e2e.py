"""What an operator alerts on, scraped from the real daemon's /metrics: alerts in over HTTP, a run
the daemon executes, one held for approval, one held by the pause and one left queued while
paused, an overdue incident, polls that work and one that cannot connect, and a reload the daemon
refuses."""

from __future__ import annotations

import platform
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import DaemonProcess, free_port, run_cli, wait_for
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond

#: A manual code whose response deadline passes at once: its incident is overdue within a second.
LATE_CODE = """\
- code: LATE-001
  title: Nobody answered
  severity: critical
  match: {alertname: NobodyAnswered}
  mode: manual
  escalation: {respond_within: 1s, resolve_within: 1h}
"""


def _scrape(daemon: DaemonProcess) -> list[str]:
    response = httpx.get(f"{daemon.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text.splitlines()


def _has(daemon: DaemonProcess, *lines: str) -> bool:
    scraped = set(_scrape(daemon))
    return all(line in scraped for line in lines)


def _sample(daemon: DaemonProcess, prefix: str) -> float | None:
    for line in _scrape(daemon):
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_an_operator_alerts_on(daemon_factory: Any, db_url: str, http_server: TestHttpServer) -> None:
    http_server.default = respond(200, json=[])  # an Alertmanager with nothing firing
    daemon: DaemonProcess = daemon_factory(
        db_url,
        files={"codes/zz-late.yaml": LATE_CODE},
        pull=[
            {"name": "am-ok", "kind": "alertmanager", "url": http_server.url, "interval": "300ms"},
            {
                "name": "am-down",
                "kind": "alertmanager",
                "url": f"http://127.0.0.1:{free_port()}",
                "interval": "300ms",
            },
        ],
    )

    # Before any alert: the database gauges are there, at zero, and so is the build.
    lines = _scrape(daemon)
    assert "suture_runs_queued 0.0" in lines
    assert "suture_runs_awaiting_approval 0.0" in lines
    assert "suture_incidents_overdue 0.0" in lines
    assert not [line for line in lines if line.startswith("suture_incidents_open{")]
    assert any(
        line.startswith(f'suture_build_info{{python="{platform.python_version()}",version="')
        for line in lines
    )
    assert any(line.startswith("process_resident_memory_bytes ") for line in lines)
    assert any(line.startswith("python_info{") for line in lines)
    assert 'suture_policy_holds_total{gate="approval"} 0.0' in lines

    # A disk alert: DISK-001 opens and its noop run succeeds.
    disk = am_alert(fingerprint="e2e00000000000d1", instance="web-1:9100")
    [run_id] = daemon.post("alertmanager", am_body(disk)).json()["runs_queued"]
    wait_for(lambda: daemon.get(f"/api/v1/runs/{run_id}")["status"] == "succeeded", timeout=20)
    wait_for(
        lambda: _has(
            daemon,
            'suture_incidents_open{code="DISK-001",severity="high"} 1.0',
            'suture_runs_finished_total{playbook="noop",status="succeeded",version="1"} 1.0',
            'suture_run_duration_seconds_count{playbook="noop"} 1.0',
        )
    )

    # A code in approval mode: its run waits for a person, held by the approval gate.
    approval = am_body(am_alert("NeedsApproval", fingerprint="e2e00000000000a1"))
    [waiting] = daemon.post("alertmanager", approval).json()["incidents_opened"]
    wait_for(  # the hold is announced just after the commit the response waited for
        lambda: _has(
            daemon,
            'suture_incidents_open{code="APPR-001",severity="medium"} 1.0',
            "suture_runs_awaiting_approval 1.0",
            'suture_policy_holds_total{gate="approval"} 1.0',
        )
    )

    # Paused: a second disk alert's run is held by the pause gate, and the run approved meanwhile
    # stays queued: the queue depth shows it.
    assert run_cli("pause", config=daemon.config_path).returncode == 0
    other = am_alert(fingerprint="e2e00000000000d2", instance="web-2:9100")
    assert daemon.post("alertmanager", am_body(other)).json()["runs_queued"] == []
    [approved] = [run["id"] for run in daemon.get(f"/api/v1/incidents/{waiting}")["runs"]]
    assert run_cli("approve", str(approved), "--by", "alice", config=daemon.config_path).returncode == 0
    wait_for(
        lambda: _has(
            daemon,
            'suture_incidents_open{code="DISK-001",severity="high"} 2.0',
            "suture_runs_queued 1.0",
            "suture_runs_awaiting_approval 0.0",
            'suture_policy_holds_total{gate="pause"} 1.0',
        )
    )

    # Nobody answers LATE-001 within its second: the incident is overdue.
    assert daemon.post(
        "alertmanager", am_body(am_alert("NobodyAnswered", fingerprint="e2e00000000000c1"))
    ).json()["incidents_opened"]
    wait_for(
        lambda: _has(
            daemon,
            'suture_incidents_open{code="LATE-001",severity="critical"} 1.0',
            "suture_incidents_overdue 1.0",
        ),
        timeout=15,
    )

    # The reachable source succeeds (its failure series at zero), the closed port only fails.
    wait_for(lambda: (_sample(daemon, 'suture_poll_failures_total{source="am-down"}') or 0) >= 2, timeout=15)
    assert 'suture_poll_failures_total{source="am-ok"} 0.0' in _scrape(daemon)
    last_ok = _sample(daemon, 'suture_poll_last_success_timestamp_seconds{source="am-ok"}')
    assert last_ok is not None and last_ok > 1.7e9
    assert _sample(daemon, 'suture_poll_last_success_timestamp_seconds{source="am-down"}') is None

    # A broken code file on SIGHUP: the reload is refused and counted; the old catalog stays.
    assert "suture_catalog_reload_failures_total 0.0" in _scrape(daemon)
    broken = Path(daemon.config_path.parent / "codes" / "zz-broken.yaml")
    broken.write_text("- code: BROKEN\n  severity: nonsense\n")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "suture_catalog_reload_failures_total 1.0" in _scrape(daemon), timeout=15)
    assert 'suture_incidents_open{code="DISK-001",severity="high"} 2.0' in _scrape(daemon)
