"""engine.store.catalog_history on a real SQLite file and a real PostgreSQL database: the earlier
incidents a new one is compared with and how each ended, a code's recent history, the counts of
`suture status`, and every stored code and playbook version.

The history is written with fixed timestamps straight into the tables, so every answer is known.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from engine.analytics.past import ended, previous
from engine.errors import NotFound
from engine.models import PAUSED_KEY, CodeVersion, PlaybookVersion
from engine.store import Store
from engine.store.catalog_history import CatalogHistory
from engine.store.db import Database
from engine.store.tables import audit_log, incidents, notifications, outbox, runs

T0 = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
_FINGERPRINTS = itertools.count(1)


def add_incident(
    db: Database, opened: datetime, *, code: str = "DISK-001", target: str = "db-1", **values: Any
) -> int:
    row: dict[str, Any] = {
        "code": code,
        "title": "Filesystem almost full",
        "status": "resolved" if values.get("resolved_at") else "open",
        "severity": "high",
        "target": target,
        "source": "alertmanager",
        "fingerprint": f"fp-{next(_FINGERPRINTS)}",
        "alertname": "NodeFilesystemAlmostOutOfSpace",
        "labels": {},
        "annotations": {},
        "occurrences": 1,
        "opened_at": opened,
        "last_seen": opened,
        **values,
    }
    with db.write() as conn:
        return int(conn.execute(insert(incidents).values(**row)).inserted_primary_key[0])  # type: ignore[index]


def add_run(
    db: Database,
    incident_id: int | None,
    status: str,
    *,
    playbook: str = "disk-cleanup",
    version: int = 3,
    dry_run: bool = False,
    at: datetime = T0,
) -> None:
    with db.write() as conn:
        conn.execute(
            insert(runs).values(
                incident_id=incident_id,
                playbook=playbook,
                playbook_version=version,
                status=status,
                trigger="auto",
                dry_run=dry_run,
                queued_at=at,
                context={},
            )
        )


def resolved_by_hand(db: Database, incident_id: int, by: str, at: datetime) -> None:
    with db.write() as conn:
        conn.execute(
            insert(audit_log).values(
                at=at, actor=by, kind="resolved", incident_id=incident_id, message=f"resolved by hand by {by}"
            )
        )


def test_previous_incidents_of_the_same_code_and_target_and_how_each_ended(db: Database) -> None:
    """The last three earlier ones, newest first, each ended in words: fixed by a run (a dry run
    fixes nothing), by hand by whom, at the source with no fix, or still open."""
    store, history = Store(db), CatalogHistory(db)
    oldest = add_incident(
        db,
        T0 - timedelta(days=9),
        resolved_at=T0 - timedelta(days=9) + timedelta(minutes=1),
        resolution="alert_resolved",
    )
    fixed = add_incident(db, T0, resolved_at=T0 + timedelta(minutes=4), resolution="alert_resolved")
    add_run(db, fixed, "succeeded", playbook="disk-cleanup", version=9, dry_run=True)
    add_run(db, fixed, "failed", version=2)
    add_run(db, fixed, "succeeded", version=3)
    by_hand = add_incident(
        db, T0 + timedelta(days=1), resolved_at=T0 + timedelta(days=1, hours=2), resolution="manual"
    )
    add_run(db, by_hand, "succeeded")  # a person closed it: the person is who ended it
    resolved_by_hand(db, by_hand, "bob", T0 + timedelta(days=1, hours=2))
    add_incident(db, T0 + timedelta(days=1, hours=5), target="db-2")  # another target
    add_incident(db, T0 + timedelta(days=1, hours=6), code="CPU-001")  # another code
    still_open = add_incident(db, T0 + timedelta(days=2))
    current = add_incident(db, T0 + timedelta(days=3))
    add_incident(db, T0 + timedelta(days=4))  # later than the one shown: not "previous"

    facts = history.previous_incidents(store.incident(current))
    assert [f.id for f in facts] == [still_open, by_hand, fixed]
    assert [p.ended for p in previous(facts)] == [
        "still open",
        "resolved by hand by bob after 2 h",
        "resolved by disk-cleanup@3 in 4 min",
    ]
    assert [f.resolved_at for f in facts] == [
        None,
        T0 + timedelta(days=1, hours=2),
        T0 + timedelta(minutes=4),
    ]
    assert [f.resolution for f in facts] == [None, "manual", "alert_resolved"]
    assert [f.id for f in history.previous_incidents(store.incident(current), limit=10)][-1] == oldest
    assert (
        ended(history.previous_incidents(store.incident(fixed))[0])
        == "resolved at the source after 1 min, no run fixed it"
    )
    assert history.previous_incidents(store.incident(oldest)) == []


def test_unclassified_ones_are_compared_only_with_the_same_alertname(db: Database) -> None:
    """UNCLASSIFIED on one host covers any alert nobody coded: only the same alertname is "last time"."""
    store, history = Store(db), CatalogHistory(db)
    same = add_incident(db, T0, code="UNCLASSIFIED", alertname="QueueStuck")
    add_incident(db, T0 + timedelta(hours=1), code="UNCLASSIFIED", alertname="FanBroken")
    now = add_incident(db, T0 + timedelta(hours=2), code="UNCLASSIFIED", alertname="QueueStuck")
    assert [f.id for f in history.previous_incidents(store.incident(now))] == [same]


def test_recent_incidents_of_a_code_are_the_newest_ten_on_any_target(db: Database) -> None:
    history = CatalogHistory(db)
    ids = [add_incident(db, T0 + timedelta(hours=i), target=f"db-{i % 3}") for i in range(12)]
    add_incident(db, T0 + timedelta(hours=20), code="CPU-001")
    recent = history.recent_incidents("DISK-001")
    assert [f.id for f in recent] == ids[::-1][:10]
    assert [f.target for f in recent[:3]] == ["db-2", "db-1", "db-0"]


def test_status_counts_the_queue_approvals_open_and_overdue_incidents_and_deliveries(db: Database) -> None:
    """Overdue: past respond_by unacknowledged, or past due_at (acknowledged or not)."""
    store, history = Store(db), CatalogHistory(db)
    now = T0 + timedelta(hours=3)
    late_ack = add_incident(db, T0, respond_by=T0 + timedelta(hours=2))  # overdue: nobody acknowledged
    add_incident(
        db,
        T0,
        respond_by=T0 + timedelta(hours=2),
        acknowledged_at=T0 + timedelta(minutes=5),
        acknowledged_by="alice",
        due_at=T0 + timedelta(hours=24),
    )  # acknowledged, not due yet
    add_incident(
        db,
        T0,
        respond_by=T0 + timedelta(hours=1),
        acknowledged_at=T0 + timedelta(minutes=5),
        acknowledged_by="alice",
        due_at=T0 + timedelta(hours=2),
    )  # overdue: past due_at
    add_incident(db, T0, respond_by=T0 + timedelta(hours=4), due_at=T0 + timedelta(hours=24))  # in time
    add_incident(
        db, T0 - timedelta(days=2), respond_by=T0 - timedelta(days=1), resolved_at=T0, resolution="manual"
    )  # resolved: never overdue
    for status, count in (("queued", 2), ("running", 1), ("awaiting_approval", 1), ("succeeded", 5)):
        for _ in range(count):
            add_run(db, late_ack, status)
    with db.write() as conn:
        event = conn.execute(
            insert(outbox).values(
                at=T0, event="escalation", incident_id=late_ack, reason="late", dispatched=True
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        for n, status in enumerate(["pending", "sending", "sent", "failed", "failed"]):
            conn.execute(
                insert(notifications).values(
                    outbox_id=event,
                    incident_id=late_ack,
                    event="escalation",
                    channel=f"c{n}",
                    status=status,
                    attempts=1,
                    created_at=T0,
                    next_attempt_at=T0,
                )
            )

    counts = history.status(now)
    assert counts.model_dump() == {
        "paused": False,
        "queued": 2,
        "running": 1,
        "awaiting_approval": 1,
        "open_incidents": 4,
        "overdue_incidents": 2,
        "notifications_pending": 2,
        "notifications_failed": 2,
        "open_breakers": [],
        "active_silences": [],
        # Nothing reloaded or polled in this store: the daemon writes those.
        "catalog_reload": None,
        "polls": [],
        "maintenance": [],
    }
    store.set_state(PAUSED_KEY, True)
    assert history.status(now).paused is True
    assert history.status(T0).overdue_incidents == 0


def test_every_stored_code_and_playbook_version_reads_back(db: Database) -> None:
    """A code edited between loads gets a second version; playbook versions keep their YAML as loaded."""
    store, history = Store(db), CatalogHistory(db)
    v1 = {"code": "DISK-001", "knowledge": {"summary": "old"}}
    v2 = {"code": "DISK-001", "knowledge": {"summary": "new"}}
    book1 = PlaybookVersion("disk-cleanup", 1, "a" * 64, "name: disk-cleanup\nversion: 1\n")
    book2 = PlaybookVersion("disk-cleanup", 2, "b" * 64, "name: disk-cleanup\nversion: 2\n")
    store.sync_catalog([book1], [CodeVersion("DISK-001", "1" * 64, v1)])
    store.sync_catalog([book1, book2], [CodeVersion("DISK-001", "2" * 64, v2)])
    store.sync_catalog([book1, book2], [CodeVersion("DISK-001", "2" * 64, v2)])  # unchanged: nothing new

    versions = history.code_versions("DISK-001")
    assert [(v.version, v.sha256) for v in versions] == [(1, "1" * 64), (2, "2" * 64)]
    assert all(v.loaded_at.tzinfo is not None for v in versions)
    assert history.code("DISK-001").body == v2 and history.code("DISK-001", 1).body == v1
    assert history.code_versions("CPU-001") == []
    with pytest.raises(NotFound, match="code CPU-001 is not stored"):
        history.code("CPU-001")

    assert [(v.name, v.version) for v in history.playbook_versions()] == [
        ("disk-cleanup", 1),
        ("disk-cleanup", 2),
    ]
    assert history.playbook("disk-cleanup").body == book2.body
    assert history.playbook("disk-cleanup", 1).body == book1.body
    assert history.playbook("disk-cleanup", 1).version.sha256 == "a" * 64
    with pytest.raises(NotFound, match=r"playbook disk-cleanup@7 is not stored"):
        history.playbook("disk-cleanup", 7)
