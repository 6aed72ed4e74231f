"""Code policy: cooldown and run limits hold automation back, visibly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.models import Policy
from engine.policy.limits import lookback, refusal
from tests.payloads import am_alert, am_body

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_no_policy_never_refuses() -> None:
    """A code without policy may always run, and needs no history."""
    assert lookback(Policy()) is None
    assert refusal(Policy(), [NOW - timedelta(seconds=1)] * 50, NOW) is None


def test_cooldown_refuses_until_it_has_passed() -> None:
    """Within the cooldown after the last run a new run is refused, with how long ago it ran."""
    policy = Policy(cooldown=timedelta(minutes=30))
    assert refusal(policy, [NOW - timedelta(minutes=5)], NOW) == "policy: cooldown 30m (last run 5m ago)"
    assert refusal(policy, [NOW - timedelta(minutes=31)], NOW) is None
    assert refusal(policy, [], NOW) is None


def test_max_runs_per_window() -> None:
    """`max_runs` counts runs inside `per` only (1 h when not given)."""
    policy = Policy(max_runs=2, per=timedelta(hours=1))
    two_recent = [NOW - timedelta(minutes=50), NOW - timedelta(minutes=10)]
    assert refusal(policy, two_recent, NOW) == "policy: at most 2 runs per 1h for this code and target"
    assert refusal(policy, [NOW - timedelta(minutes=70), NOW - timedelta(minutes=10)], NOW) is None
    assert lookback(Policy(max_runs=3)) == timedelta(hours=1)
    assert lookback(Policy(cooldown=timedelta(hours=2), max_runs=3)) == timedelta(hours=2)


COOL_CODE = """
- code: FLAP-001
  title: Flapping service
  severity: high
  match: {alertname: Flapping}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: noop
  mode: auto
  policy: {cooldown: 1h}
"""


def test_flapping_alert_runs_once_per_cooldown_per_target(daemon_factory: Any, tmp_path: Path) -> None:
    """Recurrences within the cooldown open incidents but their runs are `skipped` with the reason;
    another target is not held back."""
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'policy.db'}", files={"codes/zz-flap.yaml": COOL_CODE})
    fire = [
        am_alert("Flapping", fingerprint="fl1", starts_at="2026-11-23T10:00:00Z"),
        am_alert(
            "Flapping",
            fingerprint="fl1",
            starts_at="2026-11-23T10:00:00Z",
            status="resolved",
            ends_at="2026-11-23T10:01:00Z",
        ),
        am_alert("Flapping", fingerprint="fl1", starts_at="2026-11-23T10:02:00Z"),
    ]
    for alert in fire:
        assert daemon.post("alertmanager", am_body(alert)).status_code == 202
    other = am_alert("Flapping", fingerprint="fl2", instance="web-2:9100")
    assert daemon.post("alertmanager", am_body(other)).status_code == 202

    runs = sorted(daemon.cli("runs", "list"), key=lambda r: r["id"])
    assert runs[1]["status"] == "skipped"
    assert re.fullmatch(r"policy: cooldown 1h \(last run \d+s ago\)", runs[1]["error"])
    assert runs[1]["finished_at"] is not None
    assert runs[0]["status"] in ("queued", "running", "succeeded")
    assert runs[2]["status"] in ("queued", "running", "succeeded")  # web-2: its own cooldown
    incident = daemon.cli("incidents", "show", str(runs[1]["incident_id"]))
    skipped = [t["message"] for t in incident["timeline"] if t["kind"] == "run_skipped"]
    assert skipped == [f"run {runs[1]['id']} not started: {runs[1]['error']}"]
