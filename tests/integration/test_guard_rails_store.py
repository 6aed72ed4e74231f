"""Guard rails where intake meets the store, on SQLite and PostgreSQL: `min_occurrences` asks for
the run on the delivery that makes the count, `delay` queues a run no worker takes before its
time, and one target's runs wait for each other at the claim (`policy.concurrency`)."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.catalog.loader import load_catalog
from engine.clock import ManualClock
from engine.execution.verdicts import RunVerdicts
from engine.intake.classify import CatalogView, Intake
from engine.models import Alert, AlertStatus, RunStatus
from engine.records import Receipt
from engine.store import Store, open_database
from engine.store.db import Database
from engine.store.ingest import recent_runs_query
from engine.store.store import _DUE_ON_BUSY, _OLDEST_DUE, _OLDEST_DUE_ELSEWHERE
from tests.conftest import TEST_CATALOG
from tests.support.plans import explain

START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
CODES = """
- code: MIN-001
  title: Needs three deliveries
  severity: high
  match: {alertname: Noisy}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  policy: {min_occurrences: 3}
- code: LATER-001
  title: Waits two minutes
  severity: high
  match: {alertname: Patient}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  policy: {delay: 2m}
- code: ONE-001
  title: One at a time
  severity: high
  match: {alertname: OneAtATime}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
- code: BRK-001
  title: Keeps succeeding without fixing anything
  severity: high
  match: {alertname: Stubborn}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  policy: {breaker: {failures: 2}, effective_within: 5m}
- code: TWO-001
  title: Two at a time
  severity: high
  match: {alertname: TwoAtATime}
  target: "{{ labels.instance }}"
  playbook: noop
  mode: auto
  policy: {concurrency: 2}
"""


@pytest.fixture
def view(tmp_path: Path) -> CatalogView:
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "rails.yaml").write_text(CODES)
    shutil.copytree(TEST_CATALOG / "playbooks", tmp_path / "playbooks")
    return CatalogView.of(load_catalog(tmp_path / "codes", tmp_path / "playbooks"))


def _alert(name: str, fingerprint: str, instance: str = "web-1") -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": name,
            "fingerprint": fingerprint,
            "status": AlertStatus.firing,
            "labels": {"alertname": name, "instance": instance},
            "starts_at": START,
        }
    )


def _send(store: Store, view: CatalogView, *alerts: Alert) -> Receipt:
    intake = Intake(store, view)
    [receipt] = intake.commit([intake.prepare("alertmanager", "{}", list(alerts))])
    assert isinstance(receipt, Receipt), receipt
    return receipt


def _statuses(store: Store, incident_id: int) -> list[tuple[str, str | None]]:
    return [(run.status, run.reason) for run in store.get_incident(incident_id).runs]


def test_min_occurrences_runs_on_the_delivery_that_makes_the_count(db: Database, view: CatalogView) -> None:
    store = Store(db, clock=ManualClock(START))
    fingerprint = uuid.uuid4().hex[:16]
    [incident_id] = _send(store, view, _alert("Noisy", fingerprint)).opened
    held = [("skipped", "policy: min_occurrences 3 (delivered 1 time so far)")]
    assert _statuses(store, incident_id) == held
    _send(store, view, _alert("Noisy", fingerprint))
    assert _statuses(store, incident_id) == held
    third = _send(store, view, _alert("Noisy", fingerprint))
    assert len(third.runs_queued) == 1
    assert _statuses(store, incident_id) == [*held, ("queued", None)]
    _send(store, view, _alert("Noisy", fingerprint))  # a fourth delivery asks for nothing more
    assert len(_statuses(store, incident_id)) == 2 and store.get_incident(incident_id).occurrences == 4


def test_a_delayed_run_is_not_claimed_before_its_time(db: Database, view: CatalogView) -> None:
    clock = ManualClock(START)
    store = Store(db, clock=clock)
    [incident_id] = _send(store, view, _alert("Patient", uuid.uuid4().hex[:16])).opened
    [(status, reason)] = _statuses(store, incident_id)
    assert status == "queued" and reason is not None and reason.startswith("policy: delay 2m")
    assert store.claim_run("w") is None
    clock.advance(timedelta(minutes=1, seconds=59))
    assert store.claim_run("w") is None
    clock.advance(timedelta(seconds=1))
    claimed = store.claim_run("w")
    assert claimed is not None and claimed.incident_id == incident_id


def test_one_targets_runs_wait_for_each_other_at_the_claim(db: Database, view: CatalogView) -> None:
    """Default concurrency 1: the second run of web-1 stays queued while the first runs, and a
    later run on another target goes past it; `policy.concurrency: 2` lets two through."""
    store = Store(db, clock=ManualClock(START))
    first, second = _send(store, view, _alert("OneAtATime", "a"), _alert("OneAtATime", "b")).runs_queued
    [other] = _send(store, view, _alert("OneAtATime", "c", instance="web-2")).runs_queued
    taken = store.claim_run("w")
    assert taken is not None and taken.id == first
    skipping = store.claim_run("w")
    assert skipping is not None and skipping.id == other
    assert store.claim_run("w") is None
    store.finish_run(first, RunStatus.succeeded, None, remediated=True)
    last = store.claim_run("w")
    assert last is not None and last.id == second

    pair = _send(
        store, view, _alert("TwoAtATime", "d", "db-1"), _alert("TwoAtATime", "e", "db-1")
    ).runs_queued
    both = [store.claim_run("w"), store.claim_run("w")]
    assert sorted(run.id for run in both if run is not None) == sorted(pair)


def _claim_and_succeed(store: Store, run_id: int) -> None:
    claimed = store.claim_run("w")
    assert claimed is not None and claimed.id == run_id
    store.finish_run(run_id, RunStatus.succeeded, None, remediated=True, breaker=2)


def test_succeeded_runs_that_fix_nothing_open_the_breaker(db: Database, view: CatalogView) -> None:
    """Verdicts come when known: a run whose alert resolves in time is effective (and resets the
    count); two that leave their incident open past `effective_within` open the breaker."""
    clock = ManualClock(START)
    store = Store(db, clock=clock, notify={"breaker_open"})
    verdicts = RunVerdicts(store, lambda code: view.catalog.find_code(code).policy, clock)  # type: ignore[union-attr]
    first, second = (
        _send(store, view, _alert("Stubborn", f, instance=f)).runs_queued[0] for f in ("s1", "s2")
    )
    _claim_and_succeed(store, first)
    _claim_and_succeed(store, second)
    assert verdicts() == 0  # nothing known yet: the alerts may still resolve
    clock.advance(timedelta(minutes=5, seconds=1))
    assert verdicts() == 2
    assert [store.get_run(r).effective for r in (first, second)] == [False, False]
    [breaker] = store.breakers.list()
    assert (breaker.playbook, breaker.status, breaker.failures) == ("noop", "open", 2)
    assert [event.event for event in store.outbox.undispatched()] == ["breaker_open"]
    assert verdicts() == 0  # judged once

    store.breakers.reset("noop", 1, "alice")
    [third] = _send(store, view, _alert("Stubborn", "s3", instance="s3")).runs_queued
    _claim_and_succeed(store, third)
    resolved = _alert("Stubborn", "s3", instance="s3").model_copy(update={"status": AlertStatus.resolved})
    _send(store, view, resolved)
    assert verdicts() == 1 and store.get_run(third).effective is True
    assert store.breakers.list()[0].failures == 0


@pytest.mark.parametrize("query", ["oldest due", "oldest due elsewhere", "due on busy targets"])
def test_a_claim_reads_the_queue_in_order_through_its_partial_index(db: Database, query: str) -> None:
    """A claim per run: through the general (status, queued_at) index it read and sorted the whole
    queue every time, so a storm's deep queue made every claim cost the queue."""
    statement = {
        "oldest due": _OLDEST_DUE.params(now=START),
        "oldest due elsewhere": _OLDEST_DUE_ELSEWHERE.params(now=START, busy=["web-1", "web-2"]),
        "due on busy targets": _DUE_ON_BUSY.params(now=START, busy=["web-1"], before=1000),
    }[query]
    plan = explain(db, statement)
    assert "ix_runs_queued" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_the_gates_look_back_through_the_runs_of_the_window_not_every_incident_of_the_code(
    tmp_path: Path,
) -> None:
    """cooldown and max_runs read the runs queued since the look-back began: through the code's
    incidents SQLite read every incident the code ever had, at every intake batch (a 30-day replay
    spent four fifths of its time there). SQLite only: it plans without statistics; PostgreSQL
    weighs both by its own."""
    db = open_database(f"sqlite:///{tmp_path / 'plan.db'}", upgrade=True)
    try:
        plan = explain(db, recent_runs_query(["DISK-001", "NET-002"], START - timedelta(hours=1)))
    finally:
        db.dispose()
    assert "ix_runs_queued_at" in plan, plan
    assert "ix_incidents_code" not in plan, plan
