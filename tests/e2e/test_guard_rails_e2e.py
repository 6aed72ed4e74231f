"""Guard rails through the real daemon: a storm, a breaker, a silence, a maintenance window, an
alert that resolves mid-run, an expiring approval, a flapping alert, and one target's runs kept
apart (also by two daemons on one PostgreSQL database)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import DaemonProcess, wait_for
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond

OPS_TOKEN = "ops-token-guard-rails-0123456789"
OPS = {"authorization": f"Bearer {OPS_TOKEN}"}
FINAL = {"succeeded", "failed", "rolled_back", "timed_out", "interrupted", "skipped", "cancelled", "expired"}


def _code(code: str, alertname: str, playbook: str, mode: str = "auto", policy: str = "{}") -> str:
    return f"""
- code: {code}
  title: {alertname}
  severity: high
  match: {{alertname: {alertname}}}
  target: "{{{{ labels.instance }}}}"
  playbook: {playbook}
  mode: {mode}
  policy: {policy}
"""


def _playbook(name: str, steps: str) -> str:
    return f"name: {name}\nversion: 1\nsteps:\n{steps}"


def _catalog(hook: TestHttpServer) -> dict[str, str]:
    wait = "  - name: pause\n    wait: 0s\n"
    codes = "".join(
        [
            _code("STORM-001", "StormThing", "storm-fix", policy="{storm: {incidents: 5, within: 10m}}"),
            _code("BRK-001", "BreakerThing", "brk-fail", policy="{breaker: {failures: 2}}"),
            _code("SIL-001", "SilencedThing", "sil-fix"),
            _code("MNT-001", "MaintainedThing", "mnt-fix"),
            _code("CANCEL-001", "GoneAway", "cancel-two"),
            _code("FLAP-001", "FlappyThing", "flap-fix", policy="{flapping: {changes: 2, within: 1h}}"),
            _code("CONC-001", "BusyHost", "conc-slow"),
            _code("APX-001", "AskFirst", "apx-fix", mode="approval", policy="{approval_timeout: 2s}"),
        ]
    )
    fail = (
        f"  - name: call\n    http: {{method: GET, url: '{hook.url_for('/fail')}', expect_status: [200]}}\n"
    )
    second = hook.url_for("/step2")
    step2 = f"  - name: second\n    http: {{method: POST, url: '{second}', expect_status: [200]}}\n"
    return {
        "codes/guard-rails.yaml": codes,
        "playbooks/storm-fix.yaml": _playbook("storm-fix", wait),
        "playbooks/brk-fail.yaml": _playbook("brk-fail", fail),
        "playbooks/sil-fix.yaml": _playbook("sil-fix", wait),
        "playbooks/mnt-fix.yaml": _playbook("mnt-fix", wait),
        "playbooks/cancel-two.yaml": _playbook("cancel-two", "  - name: first\n    wait: 2s\n" + step2),
        "playbooks/flap-fix.yaml": _playbook("flap-fix", wait),
        "playbooks/conc-slow.yaml": _playbook("conc-slow", "  - name: busy\n    wait: 1s\n"),
        "playbooks/apx-fix.yaml": _playbook("apx-fix", wait),
    }


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _start(daemon_factory: Any, db_url: str, hook: TestHttpServer, **extra: Any) -> DaemonProcess:
    sections: dict[str, Any] = {
        "notifications": [
            {
                "name": "hook",
                "kind": "webhook",
                "url": hook.url_for("/notify"),
                "events": ["storm", "breaker_open", "flapping", "approval_expired"],
            }
        ],
        "escalation": {"check_every": "1s"},
        "access": {
            "tokens": [{"name": "chatops", "token_env": "T_OPS", "role": "operate"}],
            "open_reads": True,
        },
        **extra,
    }
    return daemon_factory(db_url, env={"T_OPS": OPS_TOKEN}, files=_catalog(hook), **sections)


def _fire(daemon: DaemonProcess, *alerts: dict[str, Any]) -> dict[str, Any]:
    answer = daemon.post("alertmanager", am_body(*alerts))
    assert answer.status_code == 202, answer.text
    return answer.json()


def _alert(name: str, instance: str, fingerprint: str | None = None, **kw: Any) -> dict[str, Any]:
    return am_alert(name, fingerprint=fingerprint or f"{name}-{instance}", instance=instance, **kw)


def _runs(daemon: DaemonProcess, playbook: str) -> list[dict[str, Any]]:
    return daemon.get(f"/api/v1/runs?playbook={playbook}&limit=200")["items"]


def _settled(daemon: DaemonProcess, playbook: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    """The playbook's runs once `count` of them reached a final status, oldest first."""

    def done() -> list[dict[str, Any]] | None:
        found = _runs(daemon, playbook)
        return found if len(found) == count and all(r["status"] in FINAL for r in found) else None

    return sorted(wait_for(done, timeout=timeout), key=lambda r: r["id"])


def _notified(hook: TestHttpServer, event: str) -> list[dict[str, Any]]:
    return [r.json() for r in hook.requests if r.path == "/notify" and r.json()["event"] == event]


def test_every_guard_rail_holds_through_the_daemon(
    daemon_factory: Any, hook: TestHttpServer, tmp_path: Any
) -> None:
    hook.script("/fail", [respond(500)] * 10)
    window_ends = datetime.now(UTC) + timedelta(seconds=12)
    window = {"name": "test-window", "match": {"code": "MNT-001"}}
    window |= {"from": _iso(window_ends - timedelta(hours=1)), "until": _iso(window_ends)}
    daemon = _start(daemon_factory, f"sqlite:///{tmp_path / 'rails.db'}", hook, maintenance=[window])

    # Maintenance: held now, released once the window ends (checked at the end).
    [held_in_window] = _fire(daemon, _alert("MaintainedThing", "m-1"))["incidents_opened"]
    assert daemon.get(f"/api/v1/incidents/{held_in_window}")["silenced_by"] == "maintenance test-window"

    # Storm: thirty targets of one code at once start at most five runs and tell people once.
    _fire(daemon, *[_alert("StormThing", f"s-{n}") for n in range(30)])
    storm = _settled(daemon, "storm-fix", 30)
    started = [r for r in storm if r["status"] != "skipped"]
    assert len(started) == 5
    assert all("storm guard" in (r["reason"] or "") for r in storm if r["status"] == "skipped")
    wait_for(lambda: len(_notified(hook, "storm")) == 1)

    # An alert that resolves during step 1 cancels the run before step 2.
    _fire(daemon, _alert("GoneAway", "g-1"))
    wait_for(lambda: [r for r in _runs(daemon, "cancel-two") if r["status"] == "running"])
    resolved = _alert("GoneAway", "g-1", status="resolved", ends_at=_iso(datetime.now(UTC)))
    assert daemon.post("alertmanager", am_body(resolved, status="resolved")).status_code == 202
    [cancelled] = _settled(daemon, "cancel-two", 1)
    assert cancelled["status"] == "cancelled" and "resolved" in cancelled["reason"]
    assert not [r for r in hook.requests if r.path == "/step2"]
    assert [s["name"] for s in daemon.get(f"/api/v1/runs/{cancelled['id']}")["steps"]] == ["first"]

    # A breaker opens after two failed runs, holds the third, and a person resets it.
    for n in (1, 2):
        _fire(daemon, _alert("BreakerThing", f"b-{n}"))
        _settled(daemon, "brk-fail", n)
    assert [r["status"] for r in _runs(daemon, "brk-fail")] == ["failed", "failed"]
    wait_for(lambda: len(_notified(hook, "breaker_open")) == 1)
    [breaker] = daemon.get("/api/v1/breakers")["items"]
    assert (breaker["playbook"], breaker["version"], breaker["status"]) == ("brk-fail", 1, "open")
    _fire(daemon, _alert("BreakerThing", "b-3"))
    third = _settled(daemon, "brk-fail", 3)[-1]
    assert third["status"] == "skipped" and "breaker open for brk-fail@1" in third["reason"]
    reset = httpx.post(f"{daemon.url}/api/v1/breakers/brk-fail/1/reset", headers=OPS, timeout=5)
    assert reset.status_code == 200, reset.text
    _fire(daemon, _alert("BreakerThing", "b-4"))
    assert _settled(daemon, "brk-fail", 4)[-1]["status"] == "failed"  # it ran again

    # A person's silence holds runs; expiring it releases the next one.
    made = httpx.post(
        f"{daemon.url}/api/v1/silences",
        json={"match": {"code": "SIL-001"}, "for": "1h", "comment": "host being rebuilt"},
        headers=OPS,
        timeout=5,
    )
    assert made.status_code == 201, made.text
    silence_id = made.json()["id"]
    [silenced] = _fire(daemon, _alert("SilencedThing", "q-1"))["incidents_opened"]
    shown = daemon.get(f"/api/v1/incidents/{silenced}")
    assert shown["silenced_by"] == f"silence {silence_id}"
    assert "silenced" in [entry["kind"] for entry in shown["timeline"]]
    assert _settled(daemon, "sil-fix", 1)[0]["status"] == "skipped"
    assert (
        httpx.delete(f"{daemon.url}/api/v1/silences/{silence_id}", headers=OPS, timeout=5).status_code == 200
    )
    _fire(daemon, _alert("SilencedThing", "q-2"))
    assert _settled(daemon, "sil-fix", 2)[-1]["status"] == "succeeded"

    # A flapping alert is not remediated: firing, resolved, firing again is one change too many.
    first_start, later_start = "2026-11-23T10:00:00Z", "2026-11-23T10:10:00Z"
    _fire(daemon, _alert("FlappyThing", "f-1", starts_at=first_start))
    _settled(daemon, "flap-fix", 1)
    gone = _alert(
        "FlappyThing", "f-1", starts_at=first_start, status="resolved", ends_at="2026-11-23T10:05:00Z"
    )
    assert daemon.post("alertmanager", am_body(gone, status="resolved")).status_code == 202
    [flapping] = _fire(daemon, _alert("FlappyThing", "f-1", starts_at=later_start))["incidents_opened"]
    assert daemon.get(f"/api/v1/incidents/{flapping}")["flapping"] is True
    held = _settled(daemon, "flap-fix", 2)[-1]
    assert held["status"] == "skipped" and "flapping" in held["reason"]
    wait_for(lambda: len(_notified(hook, "flapping")) == 1)

    # Two incidents on one target never run at once; the second waits, it is not dropped.
    _fire(
        daemon,
        _alert("BusyHost", "c-1", fingerprint="busy-a"),
        _alert("BusyHost", "c-1", fingerprint="busy-b"),
    )
    first, second = _settled(daemon, "conc-slow", 2)
    assert first["status"] == second["status"] == "succeeded"
    assert second["started_at"] >= first["finished_at"]

    # An approval nobody gives expires, and people hear of it.
    _fire(daemon, _alert("AskFirst", "a-1"))
    [expired] = _settled(daemon, "apx-fix", 1, timeout=15)
    assert expired["status"] == "expired"
    wait_for(lambda: len(_notified(hook, "approval_expired")) == 1)

    # The kill switch over the API: an authenticated actor only, told in the log under their name.
    assert httpx.post(f"{daemon.url}/api/v1/pause", json={"reason": "failover"}, timeout=5).status_code == 401
    paused = httpx.post(f"{daemon.url}/api/v1/pause", json={"reason": "failover"}, headers=OPS, timeout=5)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    [held_by_pause] = _fire(daemon, _alert("SilencedThing", "q-3"))["incidents_opened"]
    [run] = daemon.get(f"/api/v1/incidents/{held_by_pause}")["runs"]
    assert run["status"] == "skipped" and run["reason"].startswith("paused")
    resumed = httpx.post(f"{daemon.url}/api/v1/resume", headers=OPS, timeout=5)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    told = [line for line in daemon.log().splitlines() if '"event": "paused"' in line]
    assert len(told) == 1 and '"by": "chatops"' in told[0] and "failover" in told[0]

    # The maintenance window's end releases the next run.
    time.sleep(max(0.0, (window_ends - datetime.now(UTC)).total_seconds()) + 0.5)
    _fire(daemon, _alert("MaintainedThing", "m-2"))
    after = _settled(daemon, "mnt-fix", 2)
    assert [r["status"] for r in after] == ["skipped", "succeeded"]
    assert "maintenance test-window" in after[0]["reason"]


def test_two_daemons_on_one_postgresql_database_never_run_one_target_twice_at_once(
    pg_url: str, daemon_factory: Any, hook: TestHttpServer
) -> None:
    one = _start(daemon_factory, pg_url, hook)
    two = _start(daemon_factory, pg_url, hook)
    # Four incidents of one target, sent to both daemons: their workers race for the runs.
    _fire(
        one,
        _alert("BusyHost", "shared-1", fingerprint="pg-a"),
        _alert("BusyHost", "shared-1", fingerprint="pg-b"),
    )
    _fire(
        two,
        _alert("BusyHost", "shared-1", fingerprint="pg-c"),
        _alert("BusyHost", "shared-1", fingerprint="pg-d"),
    )
    runs = _settled(one, "conc-slow", 4, timeout=30)
    assert [r["status"] for r in runs] == ["succeeded"] * 4
    spans = sorted((r["started_at"], r["finished_at"]) for r in runs)
    for (_, finished), (started, _) in zip(spans, spans[1:], strict=False):
        assert started >= finished, spans
