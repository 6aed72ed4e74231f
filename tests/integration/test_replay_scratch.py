"""The replay's scratch store answers two of the gates' reads from memory (engine/intake/scratch.py):
at every batch of a replay those answers are what its tables say, for a history (stored by the
live intake, on SQLite and PostgreSQL) with runs held back and let through by cooldowns and
budgets, shadow runs, runs asked for at a later delivery, and a silence that starts and ends
within the period. The period's alerts read back as they were stored, on either backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, insert, or_, select

from engine.catalog.loader import load_catalog
from engine.clock import ManualClock
from engine.intake import replay, scratch
from engine.intake.classify import CatalogView, Intake
from engine.intake.replay import Replayer, ReplayFailed
from engine.intake.scratch import ScratchStore
from engine.models import Alert, AlertStatus, ReplayedAlert, ReplayedIncident
from engine.records import Receipt
from engine.store import Store
from engine.store.arrivals import arrivals, first_runs
from engine.store.db import Database
from engine.store.ingest import apply_batch, recent_runs
from engine.store.store import GuardContext
from engine.store.tables import (
    alerts,
    audit_log,
    incidents,
    notifications,
    outbox,
    runs,
    silences,
    step_results,
)

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
CODES = """
- code: COOL-001
  title: Held by its cooldown and budget
  severity: high
  match: {alertname: Flappy}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  policy: {cooldown: 20m, max_runs: 2, per: 1h}
- code: SHADOW-001
  title: Runs beside a shadow
  severity: medium
  match: {alertname: Shadowed}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  shadow: noop@2
  policy: {cooldown: 10m}
- code: MIN-001
  title: Runs at the second delivery
  severity: high
  match: {alertname: Noisy}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  policy: {min_occurrences: 2, cooldown: 15m}
"""
PLAYBOOK = "name: noop\nversion: {version}\ndescription: Nothing.\nsteps:\n  - name: pause\n    wait: 0s\n"


@pytest.fixture
def view(tmp_path: Path) -> CatalogView:
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "scratch.yaml").write_text(CODES)
    (tmp_path / "playbooks").mkdir()
    for version in (1, 2):
        (tmp_path / "playbooks" / f"noop-{version}.yaml").write_text(PLAYBOOK.format(version=version))
    return CatalogView.of(load_catalog(tmp_path / "codes", tmp_path / "playbooks"))


def _alert(name: str, host: int, started: datetime, resolved: bool = False) -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": name,
            "fingerprint": f"{name}-{host}",
            "status": AlertStatus.resolved if resolved else AlertStatus.firing,
            "labels": {"alertname": name, "instance": f"web-{host}"},
            "annotations": {"summary": f"{name} on web-{host}"},
            "starts_at": started,
            "ends_at": started + timedelta(minutes=3) if resolved else None,
        }
    )


def _history(db: Database, view: CatalogView) -> None:
    """Four hours of rounds 4 minutes apart: each host's alerts fire anew, fire again (Noisy's run
    is asked for then), and resolve; web-9's resolves before it fires. Runs on web-1 are silenced
    for an hour in the middle."""
    with db.write() as conn:
        conn.execute(
            insert(silences).values(
                matchers={"target": "web-1"},
                starts_at=START + timedelta(minutes=70),
                ends_at=START + timedelta(minutes=130),
                created_by="alice",
                comment="deploy",
                created_at=START,
            )
        )
    clock = ManualClock(START)
    intake = Intake(Store(db, clock=clock), view)
    for minute in range(0, 240, 4):
        now = START + timedelta(minutes=minute)
        clock.advance(now - clock.now())
        started = now - timedelta(minutes=minute % 12)
        batch = [
            _alert(name, host, started, resolved=minute % 12 == 8)
            for name in ("Flappy", "Shadowed", "Noisy")
            for host in range(3)
        ]
        if minute % 12 == 4:  # web-9's alert resolved before its firing comes, late: that opens nothing
            batch += [_alert("Flappy", 9, now - timedelta(minutes=1), resolved=True)]
        if minute % 12 == 8:
            batch += [_alert("Flappy", 9, now - timedelta(minutes=5))]
        [receipt] = intake.commit([intake.prepare("alertmanager", "{}", batch)])
        assert isinstance(receipt, Receipt), receipt


class _Checked(ScratchStore):
    """The scratch store, each memory answer checked against its tables."""

    checked: dict[str, int] = {"runs": 0, "context": 0, "earlier": 0}

    def recent_runs_in(
        self, conn: Connection, codes: Collection[str], since: datetime
    ) -> dict[tuple[str, str], list[datetime]]:
        remembered = super().recent_runs_in(conn, codes, since)
        assert remembered == recent_runs(conn, codes, since)
        self.checked["runs"] += 1
        return remembered

    def guard_context(self, conn: Connection | None = None) -> GuardContext:
        remembered = super().guard_context(conn)
        assert remembered == Store.guard_context(self, conn)
        self.checked["context"] += 1
        return remembered

    def _keys_of(self, incident_ids: Collection[int | None]) -> dict[int | None, tuple[str, str]]:
        self.checked["earlier"] += 1
        return super()._keys_of(incident_ids)


def test_the_scratch_stores_memory_answers_as_its_tables_would(
    db: Database, view: CatalogView, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _history(db, view)
    monkeypatch.setattr(replay, "ScratchStore", _Checked)
    checked = _Checked.checked
    checked.update(runs=0, context=0, earlier=0)
    facts: list[Any] = []
    for step in (timedelta(minutes=1), timedelta(minutes=10)):
        folder = tmp_path / f"replay-{step.seconds}"
        folder.mkdir()
        facts.append(list(Replayer(db, view, step=step).run(START, START + timedelta(hours=5), folder)))

    assert checked["runs"] >= 60 and checked["context"] >= 60 and checked["earlier"] >= 10
    incidents = [fact for fact in facts[0] if isinstance(fact, ReplayedIncident)]
    reasons = {(fact.replayed.reason or "").split(" ")[0] for fact in incidents if fact.replayed is not None}
    assert {"", "policy:", "silence"} <= reasons, reasons
    assert all(fact.actual == fact.replayed for fact in incidents), "the catalog in force changes nothing"


def test_the_periods_alerts_read_back_as_they_were_stored(db: Database, view: CatalogView) -> None:
    _history(db, view)
    found = list(arrivals(db, START, START + timedelta(minutes=12)))
    assert [arrival.alert for arrival in found[:9]] == [
        _alert(name, host, START) for name in ("Flappy", "Shadowed", "Noisy") for host in range(3)
    ]
    first = found[0]
    assert (first.received_at, first.code, first.incident_code, first.incident_opened_at) == (
        START,
        "COOL-001",
        "COOL-001",
        START,
    )
    assert first.incident_id is not None and found[6].incident_id is not None
    with db.read() as conn:
        decided = first_runs(conn, [first.incident_id, found[6].incident_id])
    assert (decided[first.incident_id][1].kind, decided[found[6].incident_id][1].kind) == (
        "run",
        "held",
    )  # Noisy: not yet
    assert [arrival.received_at for arrival in found[9::10]] == [START + timedelta(minutes=m) for m in (4, 8)]
    late = found[18]  # web-9's resolution, before any firing: no incident
    assert (late.alert.status, late.incident_id, late.code) == (AlertStatus.resolved, None, "COOL-001")
    resolved = found[19:28]
    assert [arrival.alert.status for arrival in resolved] == [AlertStatus.resolved] * 9
    assert [arrival.alert.ends_at for arrival in resolved] == [START + timedelta(minutes=3)] * 9
    assert {arrival.incident_id for arrival in resolved} == {arrival.incident_id for arrival in found[:9]}
    assert (found[28].alert.status, found[28].incident_id) == (
        AlertStatus.firing,
        None,
    )  # late, opens nothing


def test_batches_that_share_a_transaction_replay_as_batches_committed_one_by_one(
    db: Database, view: CatalogView, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scratch store commits every BATCHES_PER_COMMIT batches: its reads in between (dedup,
    gates, the codes of earlier incidents) see the batches not committed yet, as they would
    committed ones."""
    _history(db, view)
    facts = {}
    for every in (1, 7):
        monkeypatch.setattr(scratch, "BATCHES_PER_COMMIT", every)
        folder = tmp_path / f"replay-{every}"
        folder.mkdir()
        facts[every] = list(Replayer(db, view).run(START, START + timedelta(hours=5), folder))
    assert len(facts[1]) > 100
    assert facts[7] == facts[1]


def test_a_batch_that_fails_stops_the_replay_and_is_not_retried_in_its_transaction(
    db: Database, view: CatalogView, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch failing half-way through its writes (here: after its events are inserted) leaves
    its transaction half-written: the replay stops there with a one-line reason instead of
    retrying the batch's submissions one by one on top of it."""
    _history(db, view)
    calls = []

    def failing(conn: Connection, batch: list[Any], *args: Any) -> Any:
        calls.append(len(batch))
        if len(calls) == 5:
            conn.exec_driver_sql(
                "INSERT INTO events (source, received_at, body, alert_count)"
                " VALUES ('x', '2026-11-02 08:00:00', '', 0)"
            )
            raise ValueError("the disk caught fire")
        return apply_batch(conn, batch, *args)

    monkeypatch.setattr(scratch, "apply_batch", failing)
    with pytest.raises(
        ReplayFailed, match="replay stopped at 2026-11-02T08:.*scratch store: the disk caught fire"
    ):
        list(Replayer(db, view).run(START, START + timedelta(hours=5), tmp_path))
    assert len(calls) == 5


def test_a_replay_stopped_early_lets_go_of_its_scratch_transaction(
    db: Database, view: CatalogView, tmp_path: Path
) -> None:
    """A caller that stops reading a replay half-way (an error in the report, ^C) closes it: the
    batches' shared write transaction is let go, so the scratch file holds no write lock."""
    _history(db, view)
    facts = Replayer(db, view).run(START, START + timedelta(hours=5), tmp_path)
    for _ in range(30):
        next(facts)
    held = sqlite3.connect(tmp_path / "replay.db", timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        held.execute("BEGIN IMMEDIATE")
    facts.close()
    held.execute("BEGIN IMMEDIATE")
    held.rollback()
    held.close()


def test_an_incident_deleted_while_the_replay_runs_counts_as_one_without_a_first_run(
    db: Database, view: CatalogView, tmp_path: Path
) -> None:
    """Retention keeps incidents, but a person may delete one by hand: once the replay has read
    the period's alerts, the incident they opened is gone when its first run is looked up. The
    replay goes on and reports it as an incident that opened with nothing known of its run."""
    _history(db, view)
    for folder in ("whole", "cut"):
        (tmp_path / folder).mkdir()
    whole = list(Replayer(db, view).run(START, START + timedelta(hours=5), tmp_path / "whole"))
    facts = Replayer(db, view).run(START, START + timedelta(hours=5), tmp_path / "cut")
    first = next(facts)  # the period's alerts are read: far fewer than a fetch takes at a time
    assert isinstance(first, ReplayedAlert)
    with db.write() as conn:
        victim = conn.execute(select(incidents.c.id).order_by(incidents.c.id).limit(1)).scalar_one()
        owned = select(runs.c.id).where(runs.c.incident_id == victim)
        conn.execute(delete(step_results).where(step_results.c.run_id.in_(owned)))
        for table in (notifications, audit_log):
            conn.execute(delete(table).where(or_(table.c.incident_id == victim, table.c.run_id.in_(owned))))
        conn.execute(delete(outbox).where(outbox.c.incident_id == victim))
        conn.execute(delete(runs).where(runs.c.incident_id == victim))
        conn.execute(delete(alerts).where(alerts.c.incident_id == victim))
        conn.execute(delete(incidents).where(incidents.c.id == victim))
    cut = [first, *facts]

    assert len(cut) == len(whole)
    gone = [f for f in cut if isinstance(f, ReplayedIncident) and f.actual_id == victim]
    was = [f for f in whole if isinstance(f, ReplayedIncident) and f.actual_id == victim]
    assert len(gone) == len(was) == 1
    assert (gone[0].actual_code, gone[0].actual) == (None, None)
    assert was[0].actual is not None and (gone[0].replayed_code, gone[0].replayed) == (
        was[0].replayed_code,
        was[0].replayed,
    )
    assert [f for f in cut if f not in gone] == [f for f in whole if f not in was]
