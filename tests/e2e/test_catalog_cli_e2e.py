"""The read side a newcomer uses through the real daemon: incidents that carry their code's knowledge
and how the last ones ended, `runs show` with rendered steps and output, dry runs marked, `status`,
`codes list|show` and `playbooks list|show|diff` (issue 14)."""

from __future__ import annotations

import signal
import textwrap
from typing import Any

import pytest

from tests.conftest import DaemonProcess, run_cli, wait_for
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond

CODES = """
- code: TEACH-001
  title: Cache full
  severity: high
  match: {alertname: CacheFull}
  target: "{{ labels.instance }}"
  playbook: fix-cache
  mode: auto
  policy: {cooldown: 0s}
  knowledge:
    summary: The cache volume filled up
    diagnosis: ["du -sh /var/cache/app"]
    manual_steps: ["systemctl restart app-cache", "tell the app team"]
    owner: platform
    links: ["https://wiki.example/cache"]
- code: REHEARSE-001
  title: Cache full, rehearsal only
  severity: low
  match: {alertname: CacheRehearsal}
  target: "{{ labels.instance }}"
  playbook: fix-cache
  mode: auto
  dry_run: true
"""

FIX_V1 = """
name: fix-cache
version: 1
steps:
  - name: purge
    http: {method: POST, url: "{{ annotations.hook }}", json: {host: "{{ target }}"}}
"""

FIX_V2 = """
name: fix-cache
version: 2
description: Purge, then a short pause.
steps:
  - name: purge
    http:
      {method: POST, url: "{{ annotations.hook }}/purge", json: {host: "{{ target }}"}, expect_status: [200]}
  - name: settle
    wait: 0s
"""

FILES = {
    "codes/zz-teach.yaml": CODES,
    "playbooks/fix-cache-1.yaml": FIX_V1,
    "playbooks/fix-cache-2.yaml": FIX_V2,
}


@pytest.fixture
def site(daemon_factory: Any, db_url: str) -> DaemonProcess:
    """The daemon with the teaching catalog; HTTP steps may reach the loopback test server."""
    return daemon_factory(
        db_url,
        files={name: textwrap.dedent(text) for name, text in FILES.items()},
        http={"allowed_hosts": ["127.0.0.1"]},
    )


def _fire(site: DaemonProcess, alertname: str, fingerprint: str, hook: TestHttpServer) -> dict[str, Any]:
    alert = am_alert(alertname, fingerprint=fingerprint, instance="cache-7")
    alert["annotations"]["hook"] = hook.url_for("/cache")
    response = site.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    return response.json()


def _finished_run(site: DaemonProcess, run_id: int) -> dict[str, Any]:
    return wait_for(lambda: (run := site.get(f"/api/v1/runs/{run_id}"))["finished_at"] and run, timeout=20)


def _text(site: DaemonProcess, *args: str, check: bool = True) -> Any:
    return run_cli(*args, config=site.config_path, check=check)


def test_an_incident_teaches_its_knowledge_and_how_the_last_ones_ended(
    site: DaemonProcess, hook: TestHttpServer
) -> None:
    """`incidents show` (text, JSON, API) starts with the code's knowledge and tells how the earlier
    incidents of the same code and target ended: fixed by the playbook, closed by hand."""
    hook.script("/cache/purge", [respond(200, body="purged 12 entries\n")] * 3)
    first = _fire(site, "CacheFull", "teach-a", hook)
    assert _finished_run(site, first["runs_queued"][0])["status"] == "succeeded"
    gone = am_alert("CacheFull", fingerprint="teach-a", instance="cache-7", status="resolved")
    assert site.post("alertmanager", am_body(gone)).status_code == 202

    second = _fire(site, "CacheFull", "teach-b", hook)
    _finished_run(site, second["runs_queued"][0])
    _text(site, "incidents", "resolve", str(second["incidents_opened"][0]), "--by", "bob")

    third = _fire(site, "CacheFull", "teach-c", hook)
    _finished_run(site, third["runs_queued"][0])
    incident_id = third["incidents_opened"][0]

    shown = site.cli("incidents", "show", str(incident_id))
    assert shown["knowledge"] == {
        "summary": "The cache volume filled up",
        "diagnosis": ["du -sh /var/cache/app"],
        "manual_steps": ["systemctl restart app-cache", "tell the app team"],
        "owner": "platform",
        "links": ["https://wiki.example/cache"],
    }
    previous = shown["previous"]
    assert [p["id"] for p in previous] == [second["incidents_opened"][0], first["incidents_opened"][0]]
    assert previous[0]["resolution"] == "manual"
    assert previous[0]["ended"].startswith("resolved by hand by bob after ")
    assert previous[1]["resolution"] == "alert_resolved"
    assert previous[1]["ended"].startswith("resolved by fix-cache@2 in ")
    assert all(p["resolved_at"] for p in previous)
    assert site.get(f"/api/v1/incidents/{incident_id}") == shown

    text = _text(site, "incidents", "show", str(incident_id)).stdout
    order = [
        "What it is (owner: platform)",
        "Manual steps:",
        "Last time",
        "Alerts (",
        "Runs:",
        "Notes:",
        "Timeline:",
    ]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions), text
    assert "  1. systemctl restart app-cache" in text
    assert "resolved by hand by bob after" in text and "resolved by fix-cache@2 in" in text
    assert f"POST {hook.url_for('/cache')}/purge" in text
    assert "HTTP 200" in text and "        purged 12 entries" in text
    assert '"alertname": "CacheFull"' in text and '"hook": ' in text  # labels and annotations

    # The first incident had nothing before it; an alert no code matches teaches nothing.
    assert site.cli("incidents", "show", str(first["incidents_opened"][0]))["previous"] == []
    stranger = site.post("alertmanager", am_body(am_alert("NobodyKnowsThis", fingerprint="teach-u")))
    unknown = stranger.json()["incidents_opened"][0]
    assert site.cli("incidents", "show", str(unknown))["knowledge"] is None
    assert "UNCLASSIFIED" in _text(site, "incidents", "show", str(unknown)).stdout


def test_runs_show_prints_each_rendered_step_and_a_dry_run_is_marked(
    site: DaemonProcess, hook: TestHttpServer
) -> None:
    """`runs show` prints the rendered URL, HTTP status, duration and the output indented; a
    rehearsal says DRY RUN in `runs show`, `runs list` and `incidents show`."""
    hook.script("/cache/purge", [respond(200, body="purged 3 entries\nsecond line\n")])
    real = _fire(site, "CacheFull", "runs-a", hook)["runs_queued"][0]
    assert _finished_run(site, real)["status"] == "succeeded"
    text = _text(site, "runs", "show", str(real)).stdout
    assert f"run {real}: fix-cache@2 succeeded (auto)" in text
    assert f"      POST {hook.url_for('/cache')}/purge" in text
    assert "      HTTP 200, " in text and " ms, attempt 1" in text
    assert "      stdout:\n        purged 3 entries\n        second line\n" in text
    assert "      wait 0 s" in text
    assert "DRY RUN" not in text

    rehearsal = _fire(site, "CacheRehearsal", "runs-b", hook)
    dry = rehearsal["runs_queued"][0]
    assert _finished_run(site, dry)["dry_run"] is True
    assert "DRY RUN" in _text(site, "runs", "show", str(dry)).stdout
    assert f"{hook.url_for('/cache')}/purge" in _text(site, "runs", "show", str(dry)).stdout
    listed = {line.split()[0]: line for line in _text(site, "runs", "list").stdout.splitlines()[1:]}
    assert "DRY RUN" in listed[str(dry)] and "DRY RUN" not in listed[str(real)]
    assert "DRY RUN" in _text(site, "incidents", "show", str(rehearsal["incidents_opened"][0])).stdout
    assert [r.path for r in hook.requests] == ["/cache/purge"]  # the rehearsal sent nothing


def test_status_tells_paused_queue_approvals_and_open_incidents(site: DaemonProcess) -> None:
    """`suture status` and GET /api/v1/status give the same counts; pausing shows at once."""
    before = site.cli("status")
    assert before == site.get("/api/v1/status")
    assert before["paused"] is False and before["open_incidents"] == 0 and before["queued"] == 0
    assert before["open_breakers"] == [] and before["active_silences"] == []

    approval = am_alert("NeedsApproval", fingerprint="status-a", instance="cache-7")
    assert site.post("alertmanager", am_body(approval)).status_code == 202
    _text(site, "pause")
    now = site.cli("status")
    assert now["paused"] is True
    assert now["awaiting_approval"] == 1 and now["open_incidents"] == 1 and now["overdue_incidents"] == 0
    assert now == site.get("/api/v1/status")
    text = _text(site, "status").stdout
    assert "paused:" in text and "YES" in text and "awaiting approval:  1" in text


def test_codes_list_and_show_with_versions_and_recent_history(
    site: DaemonProcess, hook: TestHttpServer
) -> None:
    """`codes list` shows the catalog in force; `codes show` its knowledge, match, policy, every
    stored version (a reload after an edit adds one) and the code's recent incidents."""
    listed = {row["code"]: row for row in site.cli("codes", "list")}
    assert listed["TEACH-001"] == {
        "code": "TEACH-001",
        "title": "Cache full",
        "severity": "high",
        "mode": "auto",
        "dry_run": False,
        "playbook": "fix-cache",
        "playbook_version": 2,
        "owner": "platform",
        "summary": "The cache volume filled up",
    }
    [line] = [x for x in _text(site, "codes", "list").stdout.splitlines() if x.startswith("TEACH-001 ")]
    assert line.split()[1:5] == ["high", "auto", "fix-cache@2", "platform"]
    assert line.endswith("The cache volume filled up")

    fired = _fire(site, "CacheFull", "codes-a", hook)
    _finished_run(site, fired["runs_queued"][0])
    shown = site.cli("codes", "show", "TEACH-001")
    assert shown["knowledge"]["manual_steps"] == ["systemctl restart app-cache", "tell the app team"]
    assert shown["match"]["alertname"] == "CacheFull" and shown["policy"] == {"cooldown": "0s"}
    [version] = shown["versions"]
    assert version["version"] == 1 and len(version["sha256"]) == 64 and version["loaded_at"]
    [past] = shown["history"]
    assert past["id"] == fired["incidents_opened"][0] and past["ended"] == "still open"
    assert past["target"] == "cache-7" and past["ttr_seconds"] is None

    codes_file = site.config_path.parent / "codes/zz-teach.yaml"
    codes_file.write_text(
        textwrap.dedent(CODES).replace("The cache volume filled up", "The cache volume is full")
    )
    assert site.proc is not None
    site.proc.send_signal(signal.SIGHUP)
    versions = wait_for(lambda: len(site.cli("codes", "show", "TEACH-001")["versions"]) == 2 or None)
    assert versions
    again = site.cli("codes", "show", "TEACH-001")
    assert [v["version"] for v in again["versions"]] == [1, 2]
    assert again["versions"][0]["sha256"] != again["versions"][1]["sha256"]
    incident = site.get(f"/api/v1/incidents/{fired['incidents_opened'][0]}")
    assert incident["knowledge"]["summary"] == "The cache volume is full"  # the catalog in force
    text = _text(site, "codes", "show", "TEACH-001").stdout
    assert "Summary: The cache volume is full" in text and "Stored versions:" in text
    assert "still open" in text

    missing = _text(site, "codes", "show", "NOPE-001", check=False)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        "error: code NOPE-001 is not in the catalog and was never stored"
    ]


def test_playbooks_list_show_and_diff_the_stored_versions(site: DaemonProcess) -> None:
    """Both stored versions are listed (the newest is the one codes run); `show` prints a version's
    YAML as loaded; `diff` a unified diff of two; an unknown version is exit 1 with one line."""
    rows = {(r["name"], r["version"]): r for r in site.cli("playbooks", "list")}
    assert rows[("fix-cache", 1)]["used_by"] == []
    assert rows[("fix-cache", 2)]["used_by"] == ["TEACH-001", "REHEARSE-001"]
    assert all(rows[("fix-cache", v)]["loaded_at"] and rows[("fix-cache", v)]["in_catalog"] for v in (1, 2))

    newest = site.cli("playbooks", "show", "fix-cache")
    assert newest["version"] == 2 and newest["stored"] is True
    assert newest["body"] == textwrap.dedent(FIX_V2)
    assert site.cli("playbooks", "show", "fix-cache@1")["body"] == textwrap.dedent(FIX_V1)
    text = _text(site, "playbooks", "show", "fix-cache@1").stdout
    assert text.startswith("# fix-cache@1, sha256 ") and "version: 1" in text

    diff = _text(site, "playbooks", "diff", "fix-cache", "1", "2").stdout
    assert diff.startswith("--- fix-cache@1\t") and "\n+++ fix-cache@2\t" in diff
    assert "\n-version: 1\n" in diff and "\n+version: 2\n" in diff and "\n+  - name: settle\n" in diff

    unknown = _text(site, "playbooks", "diff", "fix-cache", "1", "9", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: playbook fix-cache@9 is not stored"]
