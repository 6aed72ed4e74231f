"""`suture stats --json` over a history built through the real store, on SQLite and PostgreSQL: alerts go
through intake's own classification and commit, runs are claimed and finished by the store, people
acknowledge, note and resolve by hand; then every time is pinned to a known value (`UPDATE`), so the
numbers the CLI prints are known exactly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from engine.catalog.loader import load_catalog
from engine.intake.classify import CatalogView, Intake
from engine.models import Alert, AlertStatus, CodeVersion, PlaybookVersion, RunStatus
from engine.records import Receipt
from engine.store import Store, open_database
from engine.store.db import Database
from engine.store.history import History
from engine.store.tables import codes, incidents, playbook_versions, runs
from tests.conftest import TEST_CATALOG, run_cli, write_config

VIEW = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
DISK = "NodeFilesystemAlmostOutOfSpace"
#: Four days back, on the hour: the window starts here and every time below is pinned from it.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url, upgrade=True)
    try:
        yield database
    finally:
        database.dispose()


def alert(name: str, instance: str, fingerprint: str, status: str = "firing", **labels: str) -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": name,
            "fingerprint": fingerprint,
            "status": AlertStatus(status),
            "labels": {"alertname": name, "instance": f"{instance}:9100", **labels},
            "starts_at": T0,
        }
    )


def send(store: Store, *alerts: Alert) -> Receipt:
    intake = Intake(store, VIEW)
    [receipt] = intake.commit([intake.prepare("alertmanager", "{}", list(alerts))])
    assert isinstance(receipt, Receipt), receipt
    return receipt


def pin(db: Database, incident_id: int, opened: timedelta, due: timedelta | None, **times: timedelta) -> None:
    values: dict[str, Any] = {"opened_at": T0 + opened, "due_at": T0 + opened + due if due else None}
    values.update({name: T0 + at for name, at in times.items()})
    with db.write() as conn:
        conn.execute(update(incidents).where(incidents.c.id == incident_id).values(**values))


def finish(store: Store, incident_id: int, status: RunStatus, started: timedelta, took: timedelta) -> int:
    run = store.claim_run("worker-1")
    assert run is not None and run.incident_id == incident_id
    store.finish_run(run.id, status, None if status is RunStatus.succeeded else "exit 1", remediated=False)
    with store.db.write() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.id == run.id)
            .values(started_at=T0 + started, finished_at=T0 + started + took)
        )
    return run.id


def build(store: Store) -> dict[str, int]:
    """The history; returns the incident ids by name."""
    db = store.db
    fp = {name: uuid.uuid4().hex[:16] for name in ("fixed", "manual", "acked", "approval", "web1", "web2")}
    [fixed] = send(store, alert(DISK, "db-1", fp["fixed"], mountpoint="/")).opened
    finish(store, fixed, RunStatus.succeeded, 1 * M, 1 * M)
    assert send(store, alert(DISK, "db-1", fp["fixed"], "resolved", mountpoint="/")).resolved == [fixed]
    pin(db, fixed, 0 * M, 24 * H, resolved_at=10 * M)  # resolved 8 min after its run: effective

    [manual] = send(store, alert(DISK, "db-2", fp["manual"], mountpoint="/var")).opened
    finish(store, manual, RunStatus.failed, H + M, M)
    store.add_note(manual, "alice", "cleaned /var by hand")
    store.resolve_by_hand(manual, "alice")
    pin(db, manual, H, 24 * H, resolved_at=H + 30 * M)

    [acked] = send(store, alert(DISK, "db-1", fp["acked"], mountpoint="/")).opened  # its run stays queued
    store.acknowledge(acked, "bob")
    pin(db, acked, 2 * D, 24 * H, acknowledged_at=2 * D + 15 * M)  # due at T0 + 3 d: overdue now

    [approval] = send(store, alert("NeedsApproval", "app-1", fp["approval"])).opened
    pin(db, approval, D, 7 * D)

    mystery = {"job": "node", "env": "prod"}
    opened = send(
        store,
        alert("MysteryAlert", "web-1", fp["web1"], **mystery, zone="a"),
        alert("MysteryAlert", "web-2", fp["web2"], **mystery, zone="b"),
    ).opened
    for incident_id in opened:
        pin(db, incident_id, D + H, 7 * D)
    # A code version loaded before the window: not a change of this period.
    with db.write() as conn:
        conn.execute(update(codes).values(loaded_at=T0 - D))
    return {"fixed": fixed, "manual": manual, "acked": acked, "approval": approval, "web1": opened[0]}


def test_stats_json_gives_the_contracts_numbers_exactly(db: Database, db_url: str, tmp_path: Path) -> None:
    store = Store(db)
    ids = build(store)
    config = write_config(tmp_path / "site", db_url)

    stats = run_cli("stats", "--since", T0.isoformat(), "--json", config=config)

    assert stats["since"] == T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stats["incidents"] == {"opened": 6, "resolved": 2, "open": 4, "overdue": 1}
    assert stats["auto_resolution_rate"] == 0.5
    unclassified_title = store.incident(ids["web1"]).title
    assert stats["by_code"] == [
        {
            "code": "DISK-001",
            "title": "Filesystem almost full",
            "severity": "high",
            "opened": 3,
            "resolved": 2,
            "open": 1,
            "mttr_seconds": 1200.0,  # TTRs 600 s and 1800 s
            "median_ttr_seconds": 1200.0,
            "p90_ttr_seconds": 1680.0,
            "mtta_seconds": 900.0,
            "auto_resolved": 1,
            "sla_breached": 1,
        },
        {
            "code": "UNCLASSIFIED",
            "title": unclassified_title,
            "severity": "medium",
            "opened": 2,
            "resolved": 0,
            "open": 2,
            "mttr_seconds": None,
            "median_ttr_seconds": None,
            "p90_ttr_seconds": None,
            "mtta_seconds": None,
            "auto_resolved": 0,
            "sla_breached": 0,
        },
        {
            "code": "APPR-001",
            "title": "Needs approval",
            "severity": "medium",
            "opened": 1,
            "resolved": 0,
            "open": 1,
            "mttr_seconds": None,
            "median_ttr_seconds": None,
            "p90_ttr_seconds": None,
            "mtta_seconds": None,
            "auto_resolved": 0,
            "sla_breached": 0,
        },
    ]
    assert stats["sla"] == [
        {"severity": "critical", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
        {"severity": "high", "opened": 3, "resolved_in_time": 2, "breached": 1, "open_overdue": 1},
        {"severity": "medium", "opened": 3, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
        {"severity": "low", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
    ]
    # The acknowledged incident's run is still queued and the approval's awaits a person: not started.
    assert stats["playbooks"] == [
        {
            "playbook": "noop",
            "version": 1,
            "runs": 2,
            "succeeded": 1,
            "failed": 1,
            "effective": 1,
            "effectiveness": 0.5,
            "median_duration_seconds": 60.0,
        }
    ]
    assert stats["recurring"] == [{"code": "DISK-001", "target": "db-1", "incidents": 2}]
    assert stats["unclassified"] == [
        {
            "alertname": "MysteryAlert",
            "source": "alertmanager",
            "alerts": 2,
            "targets": 2,
            "suggested_match": {"env": "prod", "job": "node"},
        }
    ]


def test_a_window_after_the_history_is_empty_and_an_earlier_one_sees_the_first_day(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    build(Store(db))
    config = write_config(tmp_path / "site", db_url)

    later = run_cli("stats", "--since", "1h", "--json", config=config)
    first_day = History(db).window(T0, T0 + D)

    assert later["incidents"] == {"opened": 0, "resolved": 0, "open": 0, "overdue": 0}
    assert later["auto_resolution_rate"] is None
    assert sorted(i.target for i in first_day.incidents) == ["db-1", "db-2"]
    assert [(r.status, r.started_at) for r in first_day.runs] == [
        ("succeeded", T0 + M),
        ("failed", T0 + H + M),
    ]
    assert [i.noted for i in first_day.incidents] == [False, True]


def test_report_reads_notes_approvals_open_incidents_and_catalog_versions(db: Database) -> None:
    store = Store(db)
    ids = build(store)
    history = History(db)
    now = datetime.now(UTC)

    open_ones, their_runs = history.open_incidents()
    [waiting] = history.awaiting_approval()
    [note] = history.notes(T0 - D, now + M)

    assert [i.id for i in open_ones] == [ids["approval"], ids["web1"], ids["web1"] + 1, ids["acked"]]
    assert [(r.incident_id, r.status) for r in their_runs] == [
        (ids["acked"], "queued"),
        (ids["approval"], "awaiting_approval"),
    ]
    assert (waiting.code, waiting.target, waiting.run.status) == ("APPR-001", "app-1", "awaiting_approval")
    assert (note.by, note.text, note.incident_id, note.code) == (
        "alice",
        "cleaned /var by hand",
        ids["manual"],
        "DISK-001",
    )


def test_catalog_changes_are_the_versions_first_loaded_in_the_window_with_the_one_before(
    db: Database,
) -> None:
    store = Store(db)
    catalog = VIEW.catalog
    playbooks = [
        PlaybookVersion(e.playbook.name, e.playbook.version, e.sha256, e.body)
        for e in catalog.playbooks.values()
    ]
    first = [
        CodeVersion(e.code.code, e.sha256, {"code": e.code.code, "title": e.code.title})
        for e in catalog.codes
    ]
    store.sync_catalog(playbooks, first)
    with db.write() as conn:
        conn.execute(update(codes).values(loaded_at=T0 - D))
        conn.execute(update(playbook_versions).values(loaded_at=T0 - D))
    changed = CodeVersion("DISK-001", "f" * 64, {"code": "DISK-001", "title": "Disk filling up"})
    store.sync_catalog(playbooks, [changed])
    now = datetime.now(UTC)

    [change] = History(db).catalog_changes(T0, now + M)
    before = History(db).catalog_changes(T0 - 2 * D, T0)

    assert (change.kind, change.name, change.version, change.sha256) == ("code", "DISK-001", 2, "f" * 64)
    assert change.body == {"code": "DISK-001", "title": "Disk filling up"}
    assert change.previous_body == {"code": "DISK-001", "title": "Filesystem almost full"}
    assert sorted((c.kind, c.name, c.version, c.previous_body is None) for c in before) == sorted(
        [("code", e.code.code, 1, True) for e in catalog.codes]
        + [("playbook", name, version, True) for name, version in catalog.playbooks]
    )
