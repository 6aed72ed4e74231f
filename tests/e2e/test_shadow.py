"""Shadow versions through the real daemon: a code with `shadow: hook@2` runs its live version as
usual and records the shadow version beside it, rendered against the same context, every step's
parameters and `when` shown, and never executed: the shadow's HTTP target hears nothing."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import run_cli, wait_for
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer

LIVE = """
name: hook
version: 1
steps:
  - name: call the hook
    http: {method: POST, url: "{{ annotations.hook }}/live", json: {host: "{{ target }}"}}
"""
SHADOW = """
name: hook
version: 2
steps:
  - name: call the new hook
    http: {method: POST, url: "{{ annotations.hook }}/new", json: {host: "{{ target }}"}}
  - name: only on databases
    when: "labels.role == 'db'"
    http: {method: POST, url: "{{ annotations.hook }}/db"}
verify:
  - name: is it fixed
    http: {method: GET, url: "{{ annotations.hook }}/check"}
"""
CODE = """
- code: HOOK-001
  title: Calls a hook
  severity: low
  match: {alertname: Hook}
  target: "{{ labels.instance }}"
  playbook: hook@1
  shadow: hook@2
  mode: auto
"""


def test_a_shadow_version_is_rendered_beside_the_live_run_and_never_executed(
    daemon_factory: Any, db_url: str, http_server: TestHttpServer
) -> None:
    daemon = daemon_factory(
        db_url,
        files={"codes/zz-hook.yaml": CODE, "playbooks/hook-1.yaml": LIVE, "playbooks/hook-2.yaml": SHADOW},
        http={"allowed_hosts": ["127.0.0.1"]},
    )
    alert = am_alert("Hook", fingerprint="h1", instance="web-7", role="web")
    alert["annotations"]["hook"] = http_server.url_for("/hook")
    assert daemon.post("alertmanager", am_body(alert)).status_code == 202

    finished = wait_for(
        lambda: len(done := [r for r in daemon.cli("runs", "list") if r["finished_at"]]) == 2 and done
    )

    live, shadow = sorted(finished, key=lambda r: r["shadow"])
    assert (live["playbook_version"], live["status"], live["shadow"], live["dry_run"]) == (
        1,
        "succeeded",
        False,
        False,
    )
    assert (shadow["playbook_version"], shadow["status"], shadow["shadow"], shadow["dry_run"]) == (
        2,
        "succeeded",
        True,
        True,
    )
    assert shadow["incident_id"] == live["incident_id"]
    assert [r.path for r in http_server.requests] == ["/hook/live"], "the shadow's targets heard nothing"
    steps = daemon.cli("runs", "show", str(shadow["id"]))["steps"]
    shown = [(s["phase"], s["name"], s["status"]) for s in steps]
    assert shown == [
        ("steps", "call the new hook", "dry_run"),
        ("steps", "only on databases", "skipped"),
        ("verify", "is it fixed", "dry_run"),
    ]
    assert steps[0]["params"]["url"] == http_server.url_for("/hook/new")
    assert steps[0]["params"]["json"] == {"host": "web-7"}
    assert steps[1]["params"] == {"when": "labels.role == 'db'"}
    incident = daemon.cli("incidents", "show", str(live["incident_id"]))
    assert sorted((r["playbook_version"], r["shadow"]) for r in incident["runs"]) == [(1, False), (2, True)]
    stats = daemon.cli("stats", "--since", "1h")
    assert [(p["playbook"], p["version"], p["runs"]) for p in stats["playbooks"]] == [("hook", 1, 1)]
    text = run_cli("runs", "show", str(shadow["id"]), config=daemon.config_path).stdout
    assert f"run {shadow['id']}: hook@2 succeeded (shadow)  [SHADOW: nothing was executed]" in text
    page = httpx.get(f"{daemon.url}/runs/{shadow['id']}", timeout=10)
    assert page.status_code == 200 and "A shadow run" in page.text
    # Both run pages put the two versions side by side, step by step, in phase order.
    for run_id in (live["id"], shadow["id"]):
        html = httpx.get(f"{daemon.url}/runs/{run_id}", timeout=10).text
        table = re.search(r'<section id="side-by-side".*?<tbody>(.*?)</tbody>', html, re.S)
        assert table, f"run {run_id} shows no side-by-side table"
        rows = [
            " ".join(re.sub(r"<[^>]+>", " ", tr).split())
            for tr in re.findall(r"<tr>(.*?)</tr>", table[1], re.S)
        ]
        assert [r.split(" ", 1)[0] for r in rows] == ["steps", "steps", "verify"], rows
        assert "call the hook succeeded" in rows[0] and "call the new hook dry_run" in rows[0], rows
        assert "no step here" in rows[1] and "only on databases skipped" in rows[1], rows
        assert http_server.url_for("/hook/new") in rows[0]
    rollout = daemon.cli("rollout", "status", "HOOK-001", "--since", "1h")
    assert [(v["version"], v["role"], v["runs"]) for v in rollout["versions"]] == [(1, "live", 1)]
    assert {k: rollout["shadow"][k] for k in ("playbook", "version", "in_force", "rendered", "failed")} == {
        "playbook": "hook",
        "version": 2,
        "in_force": True,
        "rendered": 1,
        "failed": 0,
    }
    assert rollout["shadow"]["said"] == "hook@2 rendered cleanly beside the live run every time (1 of 1)"
    incident_page = httpx.get(f"{daemon.url}/incidents/{live['incident_id']}", timeout=10).text
    assert f'href="/runs/{live["id"]}#side-by-side">beside its shadow {shadow["id"]}' in incident_page
