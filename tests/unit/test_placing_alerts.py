"""What intake gives an alert it cannot place: no code matches, so it keeps the severity its sender
gave (Zabbix's names mapped to Suture's, with that severity's deadlines; else medium); its code's
target template fails, so it gets no target rather than a guessed one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.catalog.loader import load_catalog
from engine.intake.classify import CatalogView, Intake, unclassified_severity
from engine.models import UNCLASSIFIED, Alert, AlertStatus, Severity
from engine.store import Store, open_database
from tests.conftest import TEST_CATALOG


def _alert(source: str, severity: str | None) -> Alert:
    labels = {"alertname": "NobodyCodedThis", "host": "db-1"}
    if severity is not None:
        labels["severity"] = severity
    return Alert(
        source=source, name="NobodyCodedThis", fingerprint="x", status=AlertStatus.firing, labels=labels
    )


@pytest.mark.parametrize(
    ("source", "given", "expected"),
    [
        ("zabbix", "disaster", Severity.critical),
        ("zabbix", "high", Severity.high),
        ("zabbix", "average", Severity.medium),
        ("zabbix", "warning", Severity.low),
        ("zabbix", "information", Severity.low),
        ("zabbix", "not classified", Severity.medium),
        ("alertmanager", "critical", Severity.critical),
        ("alertmanager", "warning", Severity.medium),  # not one of Suture's names: medium
        ("generic", None, Severity.medium),
    ],
)
def test_the_senders_severity_is_kept(source: str, given: str | None, expected: Severity) -> None:
    assert unclassified_severity(_alert(source, given)) is expected


def test_an_unclassified_disaster_gets_critical_deadlines(tmp_path: Path) -> None:
    view = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
    db = open_database(f"sqlite:///{tmp_path / 'u.db'}", upgrade=True)
    try:
        item = Intake(Store(db), view).classify(_alert("zabbix", "disaster"))
    finally:
        db.dispose()
    assert item.code == UNCLASSIFIED and item.severity is Severity.critical
    assert item.deadlines is not None and item.deadlines.resolve_within == timedelta(hours=4)


def test_a_target_template_that_fails_guesses_no_other_host(tmp_path: Path) -> None:
    """DISK-001's target reads `labels.instance`; an alert without it gets no target (never its
    `host` label instead), and the run it would get is held by the `target` gate."""
    from engine.intake.runs import BatchPlanner

    view = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
    alert = Alert(
        source="alertmanager",
        name="NodeFilesystemAlmostOutOfSpace",
        fingerprint="no-instance",
        status=AlertStatus.firing,
        labels={"alertname": "NodeFilesystemAlmostOutOfSpace", "mountpoint": "/", "host": "db-9"},
    )
    db = open_database(f"sqlite:///{tmp_path / 't.db'}", upgrade=True)
    try:
        item = Intake(Store(db), view).classify(alert)
    finally:
        db.dispose()
    assert (item.code, item.target) == ("DISK-001", "")
    run = BatchPlanner({})(item, datetime(2026, 12, 1, tzinfo=UTC))
    assert run is not None and run.status.value == "skipped" and run.gate == "target"
