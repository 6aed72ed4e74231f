"""Canary versions through the real daemon: a code with `canary: {playbook: noop@2, share: 0.5}` runs
the new version on about half of its incidents, chosen by incident; `stats` counts both versions
apart and `suture rollout status` compares them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.intake.classify import in_share
from engine.models import Alert, AlertStatus
from tests.conftest import run_cli, wait_for
from tests.payloads import am_alert, am_body

CODES = """
- code: CAN-001
  title: A code on a canary
  severity: medium
  match: {alertname: CanaryThing}
  target: "{{ labels.instance }}"
  playbook: noop@1
  canary: {playbook: noop@2, share: 0.5}
  mode: auto
"""
NOOP_2 = """name: noop
version: 2
description: Does nothing, quickly, again.
steps:
  - name: pause
    wait: 0s
"""
INCIDENTS = 40
STARTS = "2026-11-23T10:00:00Z"


def test_a_canary_runs_the_new_version_on_about_half_and_rollout_compares(
    daemon_factory: Any, db_url: str
) -> None:
    daemon = daemon_factory(db_url, files={"codes/canary.yaml": CODES, "playbooks/noop-2.yaml": NOOP_2})
    alerts = [
        am_alert("CanaryThing", fingerprint=f"c{n:03d}", instance=f"node-{n}", starts_at=STARTS)
        for n in range(INCIDENTS)
    ]
    for alert in alerts:
        assert daemon.post("alertmanager", am_body(alert)).status_code == 202
    runs = wait_for(
        lambda: (
            (found := daemon.cli("runs", "list"))
            and len([r for r in found if r["status"] == "succeeded"]) == INCIDENTS
            and found
        ),
        timeout=60,
    )
    for alert in alerts:
        assert (
            daemon.post(
                "alertmanager", am_body({**alert, "status": "resolved", "endsAt": "2030-01-01T00:00:00Z"})
            ).status_code
            == 202
        )
    wait_for(lambda: not daemon.cli("incidents", "list", "--status", "open"))

    start = datetime.fromisoformat(STARTS)
    chosen = sum(
        in_share(
            Alert.trusted(
                "alertmanager", "CanaryThing", a["fingerprint"], AlertStatus.firing, {}, {}, start, None, None
            ),
            0.5,
        )
        for a in alerts
    )
    by_version = {v: sum(r["playbook_version"] == v for r in runs) for v in (1, 2)}
    assert by_version == {1: INCIDENTS - chosen, 2: chosen}
    assert 12 <= chosen <= 28, "about half"

    stats = daemon.cli("stats", "--since", "1h")
    counted = {(p["playbook"], p["version"]): (p["runs"], p["effective"]) for p in stats["playbooks"]}
    assert counted == {("noop", 1): (INCIDENTS - chosen,) * 2, ("noop", 2): (chosen,) * 2}

    rollout = daemon.cli("rollout", "status", "CAN-001", "--since", "1h")
    shown = [(v["playbook"], v["version"], v["role"], v["runs"], v["effective"]) for v in rollout["versions"]]
    assert shown == [
        ("noop", 1, "live", INCIDENTS - chosen, INCIDENTS - chosen),
        ("noop", 2, "canary", chosen, chosen),
    ]
    assert rollout["versions"][1]["effectiveness"] == 1.0
    assert rollout["shadow"] is None  # no shadow set, none rendered
    low, high = rollout["versions"][1]["effectiveness_interval"]
    assert 0.7 < low < 1.0 and high == 1.0
    rest = INCIDENTS - chosen
    assert (
        rollout["verdict"]
        == f"v2 fixed {chosen} of {chosen}, v1 fixed {rest} of {rest}: not enough evidence yet"
    )
    text = run_cli("rollout", "status", "CAN-001", "--since", "1h", config=daemon.config_path).stdout
    assert "noop@2" in text and "canary" in text and "not enough evidence yet" in text


def test_a_canary_or_shadow_naming_a_version_not_in_the_catalog_is_refused(tmp_path: Any) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path / "site", f"sqlite:///{tmp_path / 'suture.db'}")
    codes = config.parent / "codes" / "rollout.yaml"
    codes.write_text(
        "- code: CAN-002\n"  # 1
        "  title: Canary of a version that does not exist\n"  # 2
        "  severity: low\n"  # 3
        "  match: {alertname: X}\n"  # 4
        "  playbook: noop\n"  # 5
        "  canary: {playbook: noop@9, share: 0.2}\n"  # 6
        "- code: SHD-001\n"  # 7
        "  title: Shadow of another playbook\n"  # 8
        "  severity: low\n"  # 9
        "  match: {alertname: Y}\n"  # 10
        "  playbook: noop\n"  # 11
        "  shadow: slow-ssh@1\n"  # 12
        "- code: CAN-003\n"  # 13
        "  title: A share above one\n"  # 14
        "  severity: low\n"  # 15
        "  match: {alertname: Z}\n"  # 16
        "  playbook: noop\n"  # 17
        "  canary: {playbook: noop@1, share: 2}\n"  # 18
    )
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{codes}:6: canary: playbook noop@9 not found in the catalog" in lines
    assert f"{codes}:12: shadow: a version of the code's own playbook 'noop' is expected" in lines
    assert any(line.startswith(f"{codes}:18: ") and "share" in line for line in lines), lines
