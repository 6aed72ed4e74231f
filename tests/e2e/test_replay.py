"""`suture replay` through the real daemon's stored history: a candidate catalog replayed over what
the daemon stored reports the alerts that change code and the incidents whose decision changes,
exactly, and writes nothing to the store it reads."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.store import open_database
from engine.store.tables import metadata
from tests.conftest import TEST_CATALOG, DaemonProcess, run_cli, wait_for
from tests.payloads import am_alert, am_body

CERT = """
- code: CERT-001
  title: Certificate expiring
  severity: medium
  match: {alertname: CertExpiring}
  target: "{{ labels.instance.split(':')[0] }}"
  playbook: noop
  mode: auto
"""


def candidate(tmp_path: Path) -> Path:
    """The test catalog with a code for the unclassified certificate alert, and DISK-001 turned
    to approval."""
    folder = tmp_path / "candidate"
    shutil.copytree(TEST_CATALOG, folder)
    codes = folder / "codes" / "test.yaml"
    text = codes.read_text()
    assert "  playbook: noop\n  mode: auto\n  knowledge" in text
    codes.write_text(
        text.replace(
            "  playbook: noop\n  mode: auto\n  knowledge",
            "  playbook: noop\n  mode: approval\n  knowledge",
            1,
        )
        + CERT
    )
    return folder


def snapshot(url: str) -> dict[str, tuple[int, Any]]:
    """Every table's row count and largest first-column value: what any write would change."""
    db = open_database(url)
    try:
        with db.read() as conn:
            return {
                table.name: tuple(conn.execute(select(func.count(), func.max(list(table.columns)[0]))).one())
                for table in metadata.sorted_tables
            }
    finally:
        db.dispose()


def test_a_candidate_catalog_replayed_over_the_stored_alerts(
    daemon: DaemonProcess, db_url: str, tmp_path: Path
) -> None:
    disk = am_alert(fingerprint="d1")
    assert daemon.post("alertmanager", am_body(disk)).status_code == 202
    assert daemon.post("alertmanager", am_body(am_alert("CertExpiring", fingerprint="c1"))).status_code == 202
    assert daemon.post("alertmanager", am_body(am_alert("ManualOnly", fingerprint="m1"))).status_code == 202
    assert daemon.post("alertmanager", am_body(disk)).status_code == 202  # a repeat: no new incident
    wait_for(lambda: [r for r in daemon.cli("runs", "list") if r["status"] == "succeeded"])
    incidents = {i["code"]: i["id"] for i in daemon.cli("incidents", "list")}
    daemon.stop()
    before = snapshot(db_url)

    report = run_cli(
        "replay", "--since", "1h", "--catalog", str(candidate(tmp_path)), "--json", config=daemon.config_path
    )

    assert snapshot(db_url) == before, "replay wrote nothing"
    assert report["alerts"] == 4
    assert report["reclassified"] == [{"from": "UNCLASSIFIED", "to": "CERT-001", "alerts": 1}]
    changed = sorted(report["decisions_changed"], key=lambda c: c["incident_id"])
    assert [(c["incident_id"], c["actual"], c["replayed"]) for c in changed] == [
        (incidents["DISK-001"], "run", "approval"),
        (incidents["UNCLASSIFIED"], "none", "run"),
    ]
    assert changed[1]["reason"].startswith("now CERT-001, was UNCLASSIFIED")
    assert report["decisions_changed_total"] == 2
    codes = {c["code"]: (c["actual"], c["replayed"]) for c in report["codes"]}
    one_run = {"incidents": 1, "runs": 1, "skipped": 0}
    no_run = {"incidents": 1, "runs": 0, "skipped": 0}
    nothing = {"incidents": 0, "runs": 0, "skipped": 0}
    assert codes == {
        "DISK-001": (one_run, one_run),
        "CERT-001": (nothing, one_run),
        "UNCLASSIFIED": (no_run, nothing),
        "MAN-001": (no_run, no_run),
    }


@pytest.fixture
def on_sqlite(daemon_factory: Any, tmp_path: Path) -> DaemonProcess:
    """The real daemon on SQLite alone: what these tests check is the replay's, not the backend's
    (the first test reads its history on both)."""
    return daemon_factory(f"sqlite:///{tmp_path / 'suture.db'}")


def test_replaying_the_catalog_in_force_changes_nothing(on_sqlite: DaemonProcess) -> None:
    daemon = on_sqlite
    assert daemon.post("alertmanager", am_body(am_alert(fingerprint="d1"))).status_code == 202
    assert (
        daemon.post("alertmanager", am_body(am_alert("NeedsApproval", fingerprint="a1"))).status_code == 202
    )
    wait_for(lambda: [r for r in daemon.cli("runs", "list") if r["status"] == "succeeded"])

    report = daemon.cli("replay", "--since", "1h")

    assert (report["alerts"], report["reclassified"], report["decisions_changed"]) == (2, [], [])
    text = run_cli("replay", "--since", "1h", config=daemon.config_path).stdout
    assert "Replayed 2 alerts" in text and "Incidents whose decision changes: 0" in text


def test_validate_with_a_replay_shows_what_the_catalog_would_have_done(on_sqlite: DaemonProcess) -> None:
    daemon = on_sqlite
    assert daemon.post("alertmanager", am_body(am_alert("CertExpiring", fingerprint="c1"))).status_code == 202

    found = daemon.cli("validate", "--replay", "1h")

    assert (found["ok"], found["replay"]["alerts"]) == (True, 1)
    assert found["replay"]["codes"] == [
        {
            "code": "UNCLASSIFIED",
            "actual": {"incidents": 1, "runs": 0, "skipped": 0},
            "replayed": {"incidents": 1, "runs": 0, "skipped": 0},
        }
    ]
    text = run_cli("validate", "--replay", "1h", config=daemon.config_path).stdout
    assert text.startswith("ok: ") and "Replayed 1 alerts" in text


def test_the_change_record_shows_the_replay_run_in_review(on_sqlite: DaemonProcess) -> None:
    """A code changed in review and replayed with `validate --replay` is, once loaded, a catalog
    change in the handover report with that replay's numbers beside its diff."""
    daemon = on_sqlite
    assert daemon.post("alertmanager", am_body(am_alert("CertExpiring", fingerprint="c1"))).status_code == 202
    codes = daemon.config_path.parent / "codes" / "test.yaml"
    codes.write_text(codes.read_text() + CERT)
    assert daemon.cli("validate", "--replay", "1h")["replay"]["reclassified"] == [
        {"from": "UNCLASSIFIED", "to": "CERT-001", "alerts": 1}
    ]
    daemon.stop()
    daemon.start()  # loads the changed catalog: CERT-001 version 1 is stored

    report = run_cli("report", "handover", "--since", "1h", config=daemon.config_path).stdout

    section = report.split("## Catalog changes", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in section.splitlines() if "code CERT-001 version 1 added" in line)
    after = section.split(line, 1)[1].splitlines()[1].strip()
    assert after.startswith("replayed before it loaded (validate --replay 1h, ")
    assert ": 1 alerts of " in after and " .. " in after
    assert "1 changing code, 1 decisions changing" in after


def test_an_incident_open_before_the_period_is_no_change(on_sqlite: DaemonProcess) -> None:
    """The replay starts from nothing: the next alert of an incident opened before the period opens
    it anew there, which says nothing about the catalog and is left out of the comparison."""
    daemon = on_sqlite
    import time
    from datetime import UTC, datetime

    before = am_alert(fingerprint="d1", instance="web-1:9100")
    assert daemon.post("alertmanager", am_body(before)).status_code == 202
    time.sleep(1.1)  # the period starts strictly after that opening (times are to the microsecond)
    since = datetime.now(UTC).isoformat()
    assert daemon.post("alertmanager", am_body(before)).status_code == 202  # a repeat, in the period
    assert (
        daemon.post("alertmanager", am_body(am_alert(fingerprint="d2", instance="web-2:9100"))).status_code
        == 202
    )

    report = daemon.cli("replay", "--since", since)

    assert report["alerts"] == 2
    assert report["decisions_changed"] == []
    assert report["codes"] == [
        {
            "code": "DISK-001",
            "actual": {"incidents": 1, "runs": 1, "skipped": 0},
            "replayed": {"incidents": 1, "runs": 1, "skipped": 0},
        }
    ]
