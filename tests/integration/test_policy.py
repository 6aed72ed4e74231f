"""Code policy through the daemon: cooldown holds automation back, visibly (the limits alone:
tests/unit/test_gates.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.payloads import am_alert, am_body

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
