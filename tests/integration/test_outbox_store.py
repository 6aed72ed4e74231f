"""The notification outbox and the human side of an incident, on a real SQLite file and a real
PostgreSQL database: outbox rows committed with their cause, deliveries expanded once, claimed
oldest first per channel, retried in order, and every outcome on the incident's timeline.

Alerts go through intake's own classification (`Intake` over the test catalog) and commit;
times the outbox is asked about are passed explicitly, so nothing here sleeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text, update

from engine.catalog.loader import load_catalog
from engine.clock import ManualClock
from engine.errors import Conflict, NotFound
from engine.intake.classify import CatalogView, Intake
from engine.models import Abandoned, Alert, AlertStatus, Policy, RunStatus
from engine.notify.escalation import DeadlineCheck
from engine.records import Incident, Note, Receipt
from engine.store import Store, open_database
from engine.store.db import Database
from engine.store.outbox import Delivery, OutboxEvent
from engine.store.tables import incidents
from tests.conftest import TEST_CATALOG, wait_for

VIEW = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
EVERY_EVENT = frozenset(
    {"incident_opened", "escalation", "run_failed", "approval_needed", "approval_expired", "resolved"}
)
#: DISK-001 in tests/catalog is `high`: respond within 2 h, resolve within 24 h.
DISK = "NodeFilesystemAlmostOutOfSpace"
STARTS = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def alert(name: str = DISK, fingerprint: str | None = None, status: str = "firing", **labels: str) -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": name,
            "fingerprint": fingerprint or uuid.uuid4().hex[:16],
            "status": AlertStatus(status),
            "labels": {"alertname": name, "instance": "db-1:9100", "mountpoint": "/", **labels},
            "starts_at": STARTS,
            "ends_at": None if status == "firing" else STARTS + timedelta(minutes=5),
        }
    )


def send(store: Store, *bodies: list[Alert]) -> list[Receipt]:
    """One intake commit (one transaction) of one submission per body, classified as intake does."""
    intake = Intake(store, VIEW)
    outcomes = intake.commit([intake.prepare("alertmanager", "{}", body) for body in bodies])
    receipts = [outcome for outcome in outcomes if isinstance(outcome, Receipt)]
    assert len(receipts) == len(outcomes), outcomes
    return receipts


def open_one(store: Store, name: str = DISK, instance: str = "db-1:9100") -> int:
    [receipt] = send(store, [alert(name, instance=instance)])
    [incident_id] = receipt.opened
    return incident_id


def events(store: Store) -> list[tuple[str, int | None, int | None]]:
    return [(e.event, e.incident_id, e.run_id) for e in store.outbox.undispatched()]


def kinds(store: Store, incident_id: int) -> list[str]:
    return [entry.kind for entry in store.get_incident(incident_id).timeline]


# ------------------------------------------------------ outbox rows of intake


def test_an_intake_batch_writes_one_outbox_row_per_opened_incident(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    repeat = uuid.uuid4().hex[:16]

    receipts = send(store, [alert(fingerprint=repeat), alert()], [alert(fingerprint=repeat)])

    opened = receipts[0].opened
    assert len(opened) == 2 and receipts[1].opened == []
    rows = store.outbox.undispatched()
    assert [(r.event, r.incident_id, r.run_id) for r in rows] == [
        ("incident_opened", i, None) for i in opened
    ]
    assert {r.reason for r in rows} == {"a new incident was opened"}


def test_no_outbox_rows_when_no_channel_hears_of_the_event(db: Database) -> None:
    fingerprint = uuid.uuid4().hex[:16]
    send(Store(db), [alert(fingerprint=fingerprint), alert("NeedsApproval")])
    send(Store(db, notify={"escalation"}), [alert(fingerprint=fingerprint, status="resolved"), alert()])

    assert Store(db).outbox.undispatched() == []


def test_intake_writes_approval_needed_and_resolved_rows_with_their_cause(db: Database) -> None:
    store = Store(db, notify={"approval_needed", "resolved"})
    fingerprint = uuid.uuid4().hex[:16]
    [first] = send(store, [alert(fingerprint=fingerprint), alert("NeedsApproval")])
    disk, approval = first.opened
    [run_id] = [run.id for run in store.get_incident(approval).runs]
    assert store.get_incident(approval).runs[0].status == "awaiting_approval"

    [second] = send(store, [alert(fingerprint=fingerprint, status="resolved")])

    assert second.resolved == [disk]
    assert events(store) == [("approval_needed", approval, run_id), ("resolved", disk, None)]


def test_an_incident_opened_by_intake_carries_its_codes_deadlines(db: Database) -> None:
    store = Store(db)
    incident = store.incident(open_one(store))

    assert incident.severity == "high"
    assert incident.respond_by == incident.opened_at + timedelta(hours=2)
    assert incident.due_at == incident.opened_at + timedelta(hours=24)
    low = store.incident(open_one(store, "ManualOnly"))
    assert (low.severity, low.respond_by, low.due_at) == ("low", None, None)


# -------------------------------------------------------------- people's side


def test_resolve_by_hand_is_manual_writes_resolved_and_a_second_is_a_conflict(db: Database) -> None:
    store = Store(db, notify={"resolved"})
    incident_id = open_one(store)

    resolved = store.resolve_by_hand(incident_id, "alice", note="freed space by hand")

    assert (resolved.status, resolved.resolution) == ("resolved", "manual")
    assert resolved.resolved_at is not None
    assert [(e.event, e.incident_id, e.reason) for e in store.outbox.undispatched()] == [
        ("resolved", incident_id, "resolved by hand by alice")
    ]
    detail = store.get_incident(incident_id)
    assert [(n.by, n.text) for n in detail.notes] == [("alice", "freed space by hand")]
    closing = [(e.kind, e.actor, e.message) for e in detail.timeline if e.kind == "resolved"]
    assert closing == [("resolved", "alice", "resolved by hand by alice")]
    with pytest.raises(Conflict, match=f"incident {incident_id} is resolved"):
        store.resolve_by_hand(incident_id, "bob")
    assert len(store.outbox.undispatched()) == 1
    with pytest.raises(NotFound):
        store.resolve_by_hand(10**9, "bob")


def test_acknowledge_records_who_and_a_second_is_a_conflict(db: Database) -> None:
    store = Store(db)
    incident_id = open_one(store)

    acked = store.acknowledge(incident_id, "alice")

    assert acked.acknowledged_by == "alice" and acked.acknowledged_at is not None
    entries = [(e.kind, e.actor) for e in store.get_incident(incident_id).timeline]
    assert ("acknowledged", "alice") in entries
    with pytest.raises(Conflict, match="was acknowledged by alice"):
        store.acknowledge(incident_id, "bob")
    assert store.incident(incident_id).acknowledged_by == "alice"
    store.resolve_by_hand(incident_id, "alice")
    other = open_one(store)
    store.resolve_by_hand(other, "alice")
    with pytest.raises(Conflict, match="nothing to acknowledge"):
        store.acknowledge(other, "bob")


def test_a_note_is_kept_with_the_incident_and_on_its_timeline(db: Database) -> None:
    store = Store(db)
    incident_id = open_one(store)

    note = store.add_note(incident_id, "alice", "db-1 keeps old WAL files; asked the DBA team")
    store.add_note(incident_id, "bob", "WAL archiving fixed")

    detail = store.get_incident(incident_id)
    assert detail.notes[0] == note
    assert [(n.by, n.text) for n in detail.notes] == [
        ("alice", "db-1 keeps old WAL files; asked the DBA team"),
        ("bob", "WAL archiving fixed"),
    ]
    assert isinstance(note, Note) and note.at is not None
    noted = [(e.actor, e.message) for e in detail.timeline if e.kind == "note"]
    assert noted == [("alice", note.text), ("bob", "WAL archiving fixed")]
    with pytest.raises(NotFound):
        store.add_note(10**9, "alice", "nobody reads this")


# ----------------------------------------------------------- runs that failed


def test_a_failed_run_writes_run_failed_and_a_succeeded_one_nothing(db: Database) -> None:
    store = Store(db, notify={"run_failed"})
    # Two targets: one run at a time per target would hold the second run queued.
    failing, fine = open_one(store), open_one(store, instance="db-2:9100")
    claimed = [store.claim_run("worker-1"), store.claim_run("worker-1")]
    by_incident = {run.incident_id: run.id for run in claimed if run is not None}

    store.finish_run(by_incident[failing], RunStatus.failed, "step 'pause' exit 1", remediated=False)
    store.finish_run(by_incident[fine], RunStatus.succeeded, None, remediated=True)

    [row] = store.outbox.undispatched()
    assert (row.event, row.incident_id, row.run_id) == ("run_failed", failing, by_incident[failing])
    assert row.reason == f"run {by_incident[failing]} failed: step 'pause' exit 1"


def test_a_run_interrupted_by_a_restart_writes_run_failed_a_requeued_one_nothing(db: Database) -> None:
    store = Store(db, notify={"run_failed"})
    lost, again = open_one(store), open_one(store, instance="db-2:9100")
    claimed = [store.claim_run("worker-1"), store.claim_run("worker-1")]
    by_incident = {run.incident_id: run.id for run in claimed if run is not None}

    # Taken as a dead holder's (not for an expired lease): the leases of a moment ago still run.
    outcome = store.recover_interrupted(
        {by_incident[lost]: Abandoned(False, 1, False), by_incident[again]: Abandoned(True, 1, False)}
    )

    assert outcome == {"requeued": [by_incident[again]], "interrupted": [by_incident[lost]]}
    assert events(store) == [("run_failed", lost, by_incident[lost])]


# ------------------------------------------------------ dispatch and claiming


def outbox_events(store: Store, count: int) -> list[OutboxEvent]:
    """`count` incident_opened outbox rows, one incident each, oldest first."""
    send(store, [alert() for _ in range(count)])
    found = store.outbox.undispatched()
    assert len(found) == count
    return found


def test_dispatching_an_event_twice_adds_its_deliveries_once(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    first, second = outbox_events(store, 2)
    now = datetime.now(UTC)

    assert store.outbox.dispatch([(first, ["chat", "pager"])], now) == 2
    assert store.outbox.dispatch([(first, ["chat", "pager"])], now) == 0  # another replica, after a crash
    # A batch holding an event another process expanded meanwhile adds only the rest.
    assert Store(db).outbox.dispatch([(first, ["chat"]), (second, ["chat"])], now) == 1

    deliveries = store.outbox.list()
    assert sorted((d.incident_id or 0, d.channel, d.event, d.status) for d in deliveries) == sorted(
        [
            (first.incident_id or 0, "chat", "incident_opened", "pending"),
            (first.incident_id or 0, "pager", "incident_opened", "pending"),
            (second.incident_id or 0, "chat", "incident_opened", "pending"),
        ]
    )
    assert store.outbox.undispatched() == []


def test_an_event_no_channel_hears_of_is_marked_expanded_with_no_delivery(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    [event] = outbox_events(store, 1)

    assert store.outbox.dispatch([(event, [])], datetime.now(UTC)) == 0

    assert store.outbox.undispatched() == [] and store.outbox.list() == []


def dispatched(store: Store, count: int, channels: list[str], now: datetime) -> list[OutboxEvent]:
    found = outbox_events(store, count)
    assert store.outbox.dispatch([(event, channels) for event in found], now) == count * len(channels)
    return found


def test_claim_takes_the_oldest_delivery_per_channel_and_none_while_one_is_sending(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    now = datetime.now(UTC)
    first, second, _ = dispatched(store, 3, ["chat", "pager"], now)
    stale_before = now - timedelta(minutes=2)

    taken = store.outbox.claim("chat", now, stale_before)

    assert taken is not None
    assert (taken.outbox_id, taken.channel, taken.attempts) == (first.id, "chat", 1)
    assert store.outbox.claim("chat", now + timedelta(seconds=5), stale_before) is None  # in order
    assert store.outbox.channels_with_work(["chat", "pager"], now, stale_before) == ["pager"]
    pager = store.outbox.claim("pager", now, stale_before)
    assert pager is not None and pager.outbox_id == first.id
    assert [d.status for d in store.outbox.list(status="sending")] == ["sending", "sending"]

    store.outbox.settle(taken, now, answer="HTTP 200: ok")
    following = store.outbox.claim("chat", now, stale_before)
    assert following is not None and following.outbox_id == second.id


def test_a_stale_claim_is_taken_again_so_a_restart_mid_attempt_loses_nothing(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    now = datetime.now(UTC)
    [event] = dispatched(store, 1, ["chat"], now)
    taken = store.outbox.claim("chat", now, now - timedelta(minutes=2))
    assert taken is not None
    # The process that claimed it dies here; two minutes later another one looks.

    later = now + timedelta(minutes=1)
    assert store.outbox.channels_with_work(["chat", "pager"], later, later - timedelta(minutes=2)) == []
    assert store.outbox.claim("chat", later, later - timedelta(minutes=2)) is None
    much_later = now + timedelta(minutes=3)
    assert store.outbox.channels_with_work(
        ["chat", "pager"], much_later, much_later - timedelta(minutes=2)
    ) == ["chat"]
    again = store.outbox.claim("chat", much_later, much_later - timedelta(minutes=2))

    assert again is not None
    assert (again.id, again.outbox_id, again.attempts) == (taken.id, event.id, 2)
    store.outbox.settle(again, much_later, answer="HTTP 200: ok")
    [delivery] = store.outbox.list()
    assert (delivery.status, delivery.attempts, delivery.sent_at) == ("sent", 2, much_later)


def test_a_retry_keeps_the_channel_in_order_while_another_channel_goes_on(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    now = datetime.now(UTC)
    first, second = dispatched(store, 2, ["chat", "pager"], now)
    stale_before = now - timedelta(minutes=2)
    taken = store.outbox.claim("chat", now, stale_before)
    assert taken is not None

    retry_at = now + timedelta(seconds=10)
    store.outbox.settle(taken, now, error="channel chat answered HTTP 503", retry_at=retry_at)

    chat = sorted((d for d in store.outbox.list() if d.channel == "chat"), key=lambda d: d.id)
    assert [(d.status, d.attempts) for d in chat] == [("pending", 1), ("pending", 0)]
    assert chat[0].next_attempt_at == retry_at and chat[0].error == "channel chat answered HTTP 503"
    soon = now + timedelta(seconds=5)
    assert store.outbox.claim("chat", soon, stale_before) is None  # the second waits behind the first
    assert store.outbox.channels_with_work(["chat", "pager"], soon, stale_before) == ["pager"]
    pager = [store.outbox.claim("pager", soon, stale_before) for _ in range(2)]
    assert [d.outbox_id for d in pager if d is not None] == [first.id]  # one at a time per channel

    due = store.outbox.claim("chat", retry_at, stale_before)
    assert due is not None and (due.id, due.outbox_id, due.attempts) == (taken.id, first.id, 2)
    store.outbox.settle(due, retry_at, answer="HTTP 200: ok")
    following = store.outbox.claim("chat", retry_at, stale_before)
    assert following is not None and following.outbox_id == second.id


def settle_one(store: Store, channel: str, now: datetime) -> Delivery:
    delivery = store.outbox.claim(channel, now, now - timedelta(minutes=2))
    assert delivery is not None
    return delivery


def test_every_attempt_is_on_the_timeline_and_listed_by_status(db: Database) -> None:
    store = Store(db, notify={"incident_opened"})
    now = datetime.now(UTC)
    [event] = dispatched(store, 1, ["chat", "pager", "mail"], now)
    incident_id = event.incident_id
    assert incident_id is not None

    chat = settle_one(store, "chat", now)
    store.outbox.settle(chat, now, answer="HTTP 200: ok")
    pager = settle_one(store, "pager", now)
    store.outbox.settle(pager, now, error="HTTP 503", retry_at=now + timedelta(seconds=4))
    mail = settle_one(store, "mail", now)
    store.outbox.settle(mail, now, error="SMTP 550 no such user")

    by_status = {s: [d.channel for d in store.outbox.list(status=s)] for s in ("sent", "pending", "failed")}
    assert by_status == {"sent": ["chat"], "pending": ["pager"], "failed": ["mail"]}
    [sent] = store.outbox.list(status="sent")
    assert (sent.answer, sent.error, sent.sent_at, sent.attempts) == ("HTTP 200: ok", None, now, 1)
    [failed] = store.outbox.list(status="failed")
    assert (failed.error, failed.sent_at) == ("SMTP 550 no such user", None)
    assert store.outbox.counts() == {"sent": 1, "pending": 1, "failed": 1}
    assert [d.channel for d in store.outbox.list(limit=2)] == ["mail", "pager"]  # newest first
    assert [d.channel for d in store.outbox.list(before_id=pager.id)] == ["chat"]

    timeline = [
        (e.kind, e.actor, e.message)
        for e in store.get_incident(incident_id).timeline
        if e.kind in ("notified", "notification_failed")
    ]
    assert timeline[0] == ("notified", "suture", "incident_opened sent to chat: HTTP 200: ok")
    assert timeline[1][:2] == ("notification_failed", "suture")
    assert timeline[1][2].startswith("incident_opened to pager failed (attempt 1): HTTP 503; next attempt ")
    assert timeline[2] == (
        "notification_failed",
        "suture",
        "incident_opened to mail failed (attempt 1): SMTP 550 no such user; given up",
    )


# ---------------------------------------------------------------- deadlines


def test_escalate_once_and_not_after_an_acknowledgement_meanwhile(db: Database) -> None:
    store = Store(db, notify={"escalation"})
    quiet, acked = open_one(store), open_one(store)
    before_ack = store.incident(acked)
    late = before_ack.opened_at + timedelta(hours=2, minutes=1)
    assert {incident.id for incident, _ in store.overdue(late)} >= {quiet, acked}

    store.acknowledge(acked, "alice")
    assert store.escalate(before_ack, "respond", "not acknowledged in time", late) is False

    seen = store.incident(quiet)
    assert store.escalate(seen, "respond", "not acknowledged in time", late) is True
    assert store.escalate(seen, "respond", "not acknowledged in time", late) is False  # another replica
    assert [(e.event, e.incident_id, e.reason) for e in store.outbox.undispatched()] == [
        ("escalation", quiet, "not acknowledged in time")
    ]
    assert store.incident(quiet).escalated_at == late
    assert store.incident(acked).escalated_at is None
    assert [(i.id, last) for i, last in store.overdue(late) if i.id in (quiet, acked)] == [(quiet, "respond")]
    assert "escalated" in kinds(store, quiet) and "escalated" not in kinds(store, acked)

    # Acknowledged, then past its resolve deadline: the resolve escalation still goes out.
    due = before_ack.opened_at + timedelta(hours=24, minutes=1)
    assert store.escalate(store.incident(acked), "resolve", "still open", due) is True


def test_the_deadline_check_escalates_repeats_and_stops_at_an_acknowledgement(db: Database) -> None:
    store = Store(db, notify={"escalation"})
    incident_id = open_one(store)
    opened = store.incident(incident_id).opened_at
    clock = ManualClock(opened)
    woken: list[bool] = []
    check = DeadlineCheck(
        store, timedelta(hours=1), lambda code: None, clock=clock, wake=lambda: woken.append(True)
    )

    def escalations() -> int:
        return sum(1 for e in store.outbox.undispatched() if e.incident_id == incident_id)

    clock.advance(timedelta(hours=1, minutes=59))
    check()
    assert escalations() == 0 and woken == []
    clock.advance(timedelta(minutes=2))
    check()
    assert escalations() == 1 and woken == [True]
    clock.advance(timedelta(minutes=30))
    check()
    assert escalations() == 1
    clock.advance(timedelta(minutes=31))
    check()
    assert escalations() == 2
    [first, second] = [e.reason for e in store.outbox.undispatched() if e.incident_id == incident_id]
    assert "first-response deadline" in first and "nobody has acknowledged it" in second

    store.acknowledge(incident_id, "alice")
    clock.advance(timedelta(hours=3))
    check()
    assert escalations() == 2


def test_expire_approval_marks_the_run_expired_with_its_outbox_row(db: Database) -> None:
    store = Store(db, notify={"approval_expired"})
    incident_id = open_one(store, "NeedsApproval")
    [(run, code)] = [(r, c) for r, c, _target in store.awaiting_approval() if r.incident_id == incident_id]
    assert code == "APPR-001"
    now = run.queued_at + timedelta(hours=1)

    assert store.expire_approval(run.id, "nobody approved it within 1h", now) is True
    assert store.expire_approval(run.id, "nobody approved it within 1h", now) is False

    expired = store.get_run_summary(run.id)
    assert (expired.status, expired.error, expired.finished_at) == (
        "expired",
        "nobody approved it within 1h",
        now,
    )
    assert events(store) == [("approval_expired", incident_id, run.id)]
    assert "expired" in kinds(store, incident_id)
    with pytest.raises(Conflict):
        store.decide_run(run.id, approve=True, by="alice")


def test_the_deadline_check_expires_a_run_after_its_codes_approval_timeout(db: Database) -> None:
    store = Store(db, notify={"approval_expired"})
    incident_id = open_one(store, "NeedsApproval")
    [run] = store.get_incident(incident_id).runs
    clock = ManualClock(run.queued_at)
    timeout = Policy(approval_timeout=timedelta(hours=1))
    check = DeadlineCheck(
        store, timedelta(hours=1), lambda code: timeout if code == "APPR-001" else None, clock=clock
    )

    clock.advance(timedelta(minutes=59))
    assert check.expire() == []
    clock.advance(timedelta(minutes=1))
    assert check.expire() == [run.id]
    assert store.get_run_summary(run.id).status == "expired"
    [row] = store.outbox.undispatched()
    assert row.reason == "nobody approved it within 1h"


def test_every_event_kind_reaches_one_outbox_in_commit_order(db: Database) -> None:
    """With every event heard, one incident's life writes its rows in the order things happened."""
    store = Store(db, notify=EVERY_EVENT)
    incident_id = open_one(store)
    run = store.claim_run("worker-1")
    assert run is not None and run.incident_id == incident_id
    store.finish_run(run.id, RunStatus.failed, "exit 1", remediated=False)
    incident = store.incident(incident_id)
    store.escalate(incident, "respond", "late", incident.opened_at + timedelta(hours=3))
    store.resolve_by_hand(incident_id, "alice")

    assert [e for e, i, _ in events(store) if i == incident_id] == [
        "incident_opened",
        "run_failed",
        "escalation",
        "resolved",
    ]
    assert isinstance(store.incident(incident_id), Incident)


# ------------------------------------------ two writers at once (PostgreSQL)


def _waiting_on_locks(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def _at_once(db: Database, incident_id: int, calls: list[Callable[[], Any]]) -> list[BaseException | None]:
    """Run `calls` so that each has read the incident before any of them may write it.

    A third connection holds the incident's row lock while the calls start: each reads the row
    (PostgreSQL readers do not wait), then waits at its UPDATE; the lock is released only once all
    of them wait there, as when two people press the button in the same second."""
    with db.engine.connect() as holder:
        held = holder.begin()
        try:
            holder.execute(
                update(incidents).where(incidents.c.id == incident_id).values(last_seen=incidents.c.last_seen)
            )
            with ThreadPoolExecutor(len(calls)) as pool:
                futures = [pool.submit(call) for call in calls]
                wait_for(lambda: _waiting_on_locks(db) == len(calls))
                held.commit()
                return [future.exception(timeout=30) for future in futures]
        finally:
            if held.is_active:
                held.rollback()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    database = open_database(pg_url, upgrade=True)
    try:
        yield Store(database, notify=EVERY_EVENT)
    finally:
        database.dispose()


def test_two_replicas_escalating_at_once_escalate_once(pg_store: Store) -> None:
    incident_id = open_one(pg_store)
    seen = pg_store.incident(incident_id)
    late = seen.opened_at + timedelta(hours=3)
    answers: list[bool] = []

    def escalate() -> None:
        answers.append(pg_store.escalate(seen, "respond", "late", late))

    assert _at_once(pg_store.db, incident_id, [escalate, escalate]) == [None, None]
    assert sorted(answers) == [False, True]
    assert [e for e, i, _ in events(pg_store) if i == incident_id] == ["incident_opened", "escalation"]


def test_two_people_resolving_at_once_resolve_once(pg_store: Store) -> None:
    incident_id = open_one(pg_store)

    outcomes = _at_once(
        pg_store.db,
        incident_id,
        [
            lambda: pg_store.resolve_by_hand(incident_id, "alice"),
            lambda: pg_store.resolve_by_hand(incident_id, "bob"),
        ],
    )

    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["Conflict", "NoneType"]
    assert [e for e, i, _ in events(pg_store) if i == incident_id] == ["incident_opened", "resolved"]
    assert kinds(pg_store, incident_id).count("resolved") == 1


def test_two_people_acknowledging_at_once_acknowledge_once(pg_store: Store) -> None:
    incident_id = open_one(pg_store)

    outcomes = _at_once(
        pg_store.db,
        incident_id,
        [
            lambda: pg_store.acknowledge(incident_id, "alice"),
            lambda: pg_store.acknowledge(incident_id, "bob"),
        ],
    )

    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["Conflict", "NoneType"]
    assert kinds(pg_store, incident_id).count("acknowledged") == 1
