"""Runs held under leases, and scheduled jobs taken in turns, on SQLite and PostgreSQL.

A claim is one attempt: the worker's writes land only while the run is still running under that
attempt, and recovery takes a run back only from the attempt it saw and only while its lease is
still out. What a replica that lost its lease sees is LeaseLost, and nothing of its is stored.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from engine.clock import ManualClock
from engine.errors import LeaseLost
from engine.execution.recovery import abandoned_runs, recover_runs
from engine.execution.worker import Incarnation
from engine.models import Lease, Playbook, RunStatus
from engine.records import ClaimedRun
from engine.store import Store, open_database
from engine.store.db import Database
from engine.store.wakeups import RunsQueuedListener
from tests.integration.test_outbox_store import alert, open_one, send

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
#: A replica on another host: recovery judges its runs by their lease alone.
ELSEWHERE = "host-b:77:boot-b:0"
ME = Incarnation("host-a", 100, "boot-a")


def idempotent(name: str, version: int) -> Playbook:
    return Playbook.model_validate(
        {"name": name, "version": version, "idempotent": True, "steps": [{"wait": "0s"}]}
    )


def step(name: str) -> dict[str, object]:
    return {
        "seq": 1,
        "name": name,
        "phase": "steps",
        "action": "ssh",
        "status": "succeeded",
        "params": {"command": "true"},
        "exit_code": 0,
        "http_status": None,
        "stdout": "",
        "stderr": "",
        "error": None,
        "started_at": START,
        "duration_ms": 5,
        "attempt": 1,
    }


def claimed(store: Store, worker: str = ELSEWHERE) -> ClaimedRun:
    run = store.claim_run(worker)
    assert run is not None
    return run


def test_a_claim_starts_an_attempt_under_a_lease_that_a_renewal_pushes_on(db: Database) -> None:
    clock = ManualClock(START)
    store = Store(db, clock=clock, lease=LEASE)
    open_one(store)
    run = claimed(store)
    [held] = store.running_runs()
    assert (run.attempt, held.attempt, held.lease_until) == (1, 1, START + LEASE)

    clock.advance(timedelta(seconds=20))
    assert store.renew_lease(Lease(run.id, ELSEWHERE, 1)) == START + timedelta(seconds=50)
    assert store.renew_lease(Lease(run.id, "someone-else:1:x:0", 1)) is None
    assert store.renew_lease(Lease(run.id, ELSEWHERE, 2)) is None
    [held] = store.running_runs()
    assert held.lease_until == START + timedelta(seconds=50)


def test_a_run_whose_lease_ran_out_is_taken_back_and_its_old_holder_writes_nothing(db: Database) -> None:
    """Past the lease, recovery on another replica re-queues the idempotent run; the next claim is
    attempt 2, and the first holder's step and finish are refused, its run untouched."""
    clock = ManualClock(START)
    store = Store(db, clock=clock, lease=LEASE)
    open_one(store)
    first = claimed(store)
    old = Lease(first.id, ELSEWHERE, first.attempt)
    store.record_step(first.id, step("before the pause"), old)

    clock.advance(LEASE - timedelta(seconds=1))
    assert recover_runs(store, idempotent, ME, clock.now()) == {"requeued": [], "interrupted": []}
    clock.advance(timedelta(seconds=2))
    assert recover_runs(store, idempotent, ME, clock.now()) == {"requeued": [first.id], "interrupted": []}

    second = claimed(store, "host-c:5:boot-c:0")
    assert (second.id, second.attempt) == (first.id, 2)
    with pytest.raises(LeaseLost):
        store.record_step(first.id, step("after the pause"), old)
    with pytest.raises(LeaseLost):
        store.finish_run(first.id, RunStatus.succeeded, None, remediated=True, lease=old)

    detail = store.get_run(first.id)
    assert [s.name for s in detail.steps] == ["before the pause"]
    assert (detail.status, detail.worker) == ("running", "host-c:5:boot-c:0")
    store.finish_run(
        first.id, RunStatus.succeeded, None, remediated=True, lease=Lease(first.id, second.worker or "", 2)
    )
    assert store.get_run(first.id).status == "succeeded"


def test_recovery_leaves_a_run_whose_lease_was_renewed_since_it_looked(db: Database) -> None:
    """Recovery decided on an expired lease, but the holder renewed it before the write: kept."""
    clock = ManualClock(START)
    store = Store(db, clock=clock, lease=LEASE)
    open_one(store)
    run = claimed(store)
    clock.advance(LEASE + timedelta(seconds=1))
    decided = abandoned_runs(store.running_runs(), idempotent, ME, clock.now())
    assert list(decided) == [run.id]
    store.renew_lease(Lease(run.id, ELSEWHERE, run.attempt))
    assert store.recover_interrupted(decided) == {"requeued": [], "interrupted": []}
    assert store.get_run(run.id).status == "running"


def test_a_scheduled_job_runs_once_per_period_whichever_replica_ticks(db: Database) -> None:
    """Three replicas tick every 10 s at their own phases: one run per period in all; when the
    replica that ran it stops ticking, the next one's tick takes over within the period."""
    clock = ManualClock(START)
    store = Store(db, clock=clock)
    every = timedelta(seconds=10)
    ran: list[tuple[float, str]] = []
    phases = {"a": 0.0, "b": 3.0, "c": 6.5}
    for period in range(6):
        for owner, phase in phases.items():
            if owner == "a" and period >= 3:
                continue  # replica a died
            at = START + every * period + timedelta(seconds=phase)
            clock._now = at  # noqa: SLF001 - ticks of three replicas on one clock
            if store.take_turn("poll-x", every, owner):
                ran.append(((at - START).total_seconds(), owner))
    assert ran == [(0.0, "a"), (10.0, "a"), (20.0, "a"), (33.0, "b"), (43.0, "b"), (53.0, "b")]


def test_a_run_queued_on_one_replica_wakes_the_listener_of_another(pg_url: str) -> None:
    """PostgreSQL: the commit that queues a run notifies `suture_runs`; another process's listener
    hears it at once (long before any poll), and a commit that queues nothing tells nobody."""
    database = open_database(pg_url, upgrade=True)
    woken = threading.Event()
    calls: list[float] = []

    def wake() -> None:
        calls.append(1.0)
        woken.set()

    listener = RunsQueuedListener(database.engine.url, wake)
    listener.start()
    try:
        assert woken.wait(5), "the listener did not connect"  # it wakes once when it connects
        woken.clear()
        store = Store(database, clock=ManualClock(START))
        send(store, [alert("ManualOnly")])  # an incident without a run: no notification
        assert not woken.wait(1.5)
        open_one(store)  # DISK-001 queues its run
        assert woken.wait(3), "no wake-up for the queued run"
    finally:
        listener.stop()
        database.dispose()


def test_a_run_started_by_hand_keeps_no_lease_and_is_judged_by_its_heartbeat(db: Database) -> None:
    """`suture run` records its steps without a lease: recovery on a daemon leaves it alone past
    any lease, and takes it back only once silent past its playbook's timeout and the margin."""
    clock = ManualClock(START)
    store = Store(db, clock=clock, lease=LEASE)
    run_id = store.create_manual_run("noop", 1, {}, dry_run=False, status=RunStatus.running)
    store.record_step(run_id, step("by hand"))
    [held] = store.running_runs()
    assert (held.worker, held.lease_until, held.heartbeat_at) == ("cli", None, START)
    clock.advance(LEASE * 4)
    assert recover_runs(store, idempotent, ME, clock.now()) == {"requeued": [], "interrupted": []}
    clock.advance(timedelta(hours=1))
    assert recover_runs(store, idempotent, ME, clock.now()) == {"requeued": [run_id], "interrupted": []}
