"""Alerts through the real daemon into the database, read back with the CLI and the API.

Every test here runs twice: on SQLite and on the machine's PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.conftest import DaemonProcess, wait_for
from tests.payloads import am_alert, am_body


def _incidents(daemon: DaemonProcess, *args: str) -> list[dict[str, Any]]:
    return daemon.cli("incidents", "list", *args)  # type: ignore[no-any-return]


def test_firing_alert_opens_coded_incident_with_deadline(daemon: DaemonProcess) -> None:
    """A firing node-exporter alert opens a DISK-001 incident, high severity, due in 24 h."""
    response = daemon.post("alertmanager", am_body(am_alert()))
    assert response.status_code == 202, response.text
    assert len(response.json()["incidents_opened"]) == 1
    [incident] = _incidents(daemon)
    assert incident["code"] == "DISK-001"
    assert incident["status"] == "open"
    assert incident["severity"] == "high"
    assert incident["target"] == "web-1"
    assert incident["occurrences"] == 1
    assert incident["fingerprint"] == "f0000000000000a1"
    opened = incident["opened_at"]
    assert incident["due_at"] is not None and incident["due_at"] > opened
    from datetime import datetime

    delta = datetime.fromisoformat(incident["due_at"]) - datetime.fromisoformat(opened)
    assert delta.total_seconds() == 24 * 3600


def test_auto_code_queues_and_runs_playbook(daemon: DaemonProcess) -> None:
    """Opening an incident of an auto code queues a run of its playbook version, which then runs."""
    daemon.post("alertmanager", am_body(am_alert()))
    runs = wait_for(lambda: [r for r in daemon.cli("runs", "list") if r["status"] == "succeeded"])
    assert runs[0]["playbook"] == "noop" and runs[0]["playbook_version"] == 1
    assert runs[0]["trigger"] == "auto"
    run = daemon.cli("runs", "show", str(runs[0]["id"]))
    assert [s["name"] for s in run["steps"]] == ["pause"]
    assert run["steps"][0]["action"] == "wait" and run["steps"][0]["phase"] == "steps"


def test_repeated_alert_only_bumps_counters(daemon: DaemonProcess) -> None:
    """Alertmanager resends the group: the same instance bumps occurrences, opens nothing, queues no run."""
    body = am_body(am_alert())
    for _ in range(3):
        assert daemon.post("alertmanager", body).status_code == 202
    [incident] = _incidents(daemon)
    assert incident["occurrences"] == 3
    assert incident["last_seen"] >= incident["opened_at"]
    wait_for(lambda: daemon.cli("runs", "list"))
    assert len(daemon.cli("runs", "list")) == 1


def test_resolved_alert_closes_incident_without_run(daemon: DaemonProcess) -> None:
    """A resolved alert closes its incident with resolution alert_resolved at its endsAt (never before
    the incident opened: a firing that came late does not make a negative time to resolve), and
    never starts a run."""
    daemon.post("alertmanager", am_body(am_alert(alertname="ManualOnly")))
    time.sleep(0.05)  # endsAt after the opening, as a real resolution's is
    ended = datetime.now(UTC)
    ends = ended.isoformat(timespec="microseconds").replace("+00:00", "Z")
    time.sleep(0.05)
    response = daemon.post(
        "alertmanager", am_body(am_alert(alertname="ManualOnly", status="resolved", ends_at=ends))
    )
    assert response.status_code == 202
    [incident] = _incidents(daemon)
    assert incident["status"] == "resolved"
    assert incident["resolution"] == "alert_resolved"
    assert datetime.fromisoformat(incident["resolved_at"].replace("Z", "+00:00")) == ended
    assert daemon.cli("runs", "list") == []
    shown = daemon.cli("incidents", "show", str(incident["id"]))
    assert [t["kind"] for t in shown["timeline"]] == ["opened", "resolved"]
    assert [a["status"] for a in shown["alerts"]] == ["resolved", "firing"]


def test_resolved_only_alert_starts_nothing(daemon: DaemonProcess) -> None:
    """A resolved alert for an auto code that was never seen firing opens nothing and runs nothing."""
    response = daemon.post(
        "alertmanager", am_body(am_alert(status="resolved", ends_at="2026-11-23T10:05:00Z"))
    )
    assert response.status_code == 202
    assert _incidents(daemon) == []
    assert daemon.cli("runs", "list") == []


def test_late_firing_does_not_reopen_but_new_start_recurs(daemon: DaemonProcess) -> None:
    """A redelivered firing alert after resolution stays resolved; a new startsAt opens a recurrence."""
    fire = am_body(am_alert(alertname="ManualOnly"))
    daemon.post("alertmanager", fire)
    daemon.post(
        "alertmanager",
        am_body(am_alert(alertname="ManualOnly", status="resolved", ends_at="2026-11-23T10:05:00Z")),
    )
    daemon.post("alertmanager", fire)  # late redelivery of the old instance
    [incident] = _incidents(daemon)
    assert incident["status"] == "resolved"
    assert incident["occurrences"] == 2
    again = am_body(am_alert(alertname="ManualOnly", starts_at="2026-11-23T11:00:00Z"))
    assert daemon.post("alertmanager", again).status_code == 202
    newest, oldest = _incidents(daemon)
    assert newest["status"] == "open" and newest["fingerprint"] == oldest["fingerprint"]
    assert oldest["status"] == "resolved"


def test_several_alerts_in_one_body_and_unclassified(daemon: DaemonProcess) -> None:
    """One body with several alerts opens one incident each; an unmatched one is UNCLASSIFIED."""
    body = am_body(
        am_alert(fingerprint="a1"),
        am_alert(alertname="ManualOnly", fingerprint="a2"),
        am_alert(alertname="SomethingNobodyCoded", fingerprint="a3"),
    )
    response = daemon.post("alertmanager", body)
    assert response.status_code == 202
    assert len(response.json()["incidents_opened"]) == 3
    codes = sorted(i["code"] for i in _incidents(daemon))
    assert codes == ["DISK-001", "MAN-001", "UNCLASSIFIED"]
    unclassified = daemon.cli("incidents", "list", "--code", "UNCLASSIFIED")
    assert [i["fingerprint"] for i in unclassified] == ["a3"]


def test_label_condition_must_match_in_full(daemon: DaemonProcess) -> None:
    """DISK-001 matches mountpoint / or /var in full; /var/lib is not classified as DISK-001."""
    daemon.post("alertmanager", am_body(am_alert(mountpoint="/var/lib", fingerprint="zz")))
    [incident] = _incidents(daemon)
    assert incident["code"] == "UNCLASSIFIED"


def test_approval_code_waits_and_manual_code_queues_nothing(daemon: DaemonProcess) -> None:
    """Mode approval creates a run awaiting approval; mode manual creates no run."""
    daemon.post("alertmanager", am_body(am_alert(alertname="NeedsApproval", fingerprint="p1")))
    daemon.post("alertmanager", am_body(am_alert(alertname="ManualOnly", fingerprint="p2")))
    runs = daemon.cli("runs", "list")
    assert [(r["playbook"], r["status"]) for r in runs] == [("noop", "awaiting_approval")]


def test_api_lists_match_cli(daemon: DaemonProcess) -> None:
    """The API returns the same incident objects as the CLI, paged as {items, next}."""
    daemon.post(
        "alertmanager", am_body(am_alert(fingerprint="x1"), am_alert(fingerprint="x2", mountpoint="/var"))
    )
    wait_for(lambda: len(daemon.cli("runs", "list", "--status", "succeeded")) == 2)
    page = daemon.get("/api/v1/incidents?limit=1")
    assert len(page["items"]) == 1 and page["next"] is not None
    rest = daemon.get(f"/api/v1/incidents?limit=1&cursor={page['next']}")
    assert rest["items"][0]["id"] < page["items"][0]["id"]
    cli_ids = [i["id"] for i in _incidents(daemon)]
    assert cli_ids == [page["items"][0]["id"], rest["items"][0]["id"]]
    one = daemon.get(f"/api/v1/incidents/{cli_ids[0]}")
    assert one == daemon.cli("incidents", "show", str(cli_ids[0]))
    assert daemon.get("/api/v1/incidents?status=resolved")["items"] == []
    assert len(daemon.get("/api/v1/incidents?since=1h")["items"]) == 2
    codes = daemon.get("/api/v1/codes")["items"]
    assert "DISK-001" in [c["code"] for c in codes]


def test_generic_source(daemon: DaemonProcess) -> None:
    """The generic endpoint accepts {alerts: [...]} and classifies by name."""
    body = {
        "alerts": [{"name": "ManualOnly", "status": "firing", "labels": {"host": "db-1"}, "annotations": {}}]
    }
    response = daemon.post("generic", body)
    assert response.status_code == 202, response.text
    [incident] = _incidents(daemon)
    assert incident["code"] == "MAN-001" and incident["target"] == "db-1"


def _zabbix(event_id: str, host: str, value: str = "1", when: str = "2026.11.23 10:15:02") -> dict[str, str]:
    """The parameters Suture's Zabbix media type sends, as Zabbix expands them."""
    return {
        "event_id": event_id,
        "event_value": value,
        "event_name": "High CPU on " + host,
        "trigger_name": "High CPU utilization",
        "event_severity": "High",
        "host": host,
        "host_ip": "{HOST.IP}",  # left unexpanded by Zabbix: counts as absent
        "trigger_id": "13501",
        "tags": '[{"tag": "service", "value": "web"}]',
        "event_time": when,
        **({"recovery_time": "2026.11.23 10:20:00"} if value == "0" else {}),
    }


def test_zabbix_problem_and_recovery_per_host(daemon: DaemonProcess) -> None:
    """Zabbix problems on two hosts with one trigger open two incidents; a recovery resolves only its own."""
    assert daemon.post("zabbix", _zabbix("9001", "web-1")).status_code == 202
    assert daemon.post("zabbix", _zabbix("9002", "web-2")).status_code == 202
    assert daemon.post("zabbix", _zabbix("9001", "web-1", value="0")).status_code == 202
    incidents = {i["fingerprint"]: i for i in _incidents(daemon)}
    assert set(incidents) == {"zabbix-9001", "zabbix-9002"}
    assert incidents["zabbix-9001"]["status"] == "resolved"
    assert incidents["zabbix-9002"]["status"] == "open"
    assert incidents["zabbix-9002"]["target"] == "web-2"
    shown = daemon.cli("incidents", "show", str(incidents["zabbix-9002"]["id"]))
    assert shown["labels"]["service"] == "web" and "host_ip" not in shown["labels"]
