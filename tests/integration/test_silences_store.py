"""People's silences in a real SQLite file and a real PostgreSQL database: added with who and why,
listed newest first, ended early exactly once, shown by `status`, and read for the gate in one query.

Times come from a ManualClock, so nothing here sleeps."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from engine.clock import ManualClock
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.models import Mode
from engine.policy.decisions import Hold
from engine.policy.matchers import Subject
from engine.policy.request import RunHistory, RunRequest
from engine.policy.silences import rules_of, silence
from engine.records import Silence
from engine.store.catalog_history import CatalogHistory
from engine.store.db import Database
from engine.store.silences import Silences

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DB_1 = {"target": "db-1", "code": "DISK-.*"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(db: Database, clock: ManualClock) -> Silences:
    return Silences(db, clock)


def _add(store: Silences, ends: timedelta = HOUR, starts: timedelta | None = None, **kwargs: Any) -> Silence:
    values: dict[str, Any] = {"matchers": DB_1, "created_by": "alice", "comment": "new disk", **kwargs}
    start = START + starts if starts is not None else None
    return store.add(values.pop("matchers"), start, START + ends, **values)


def test_a_silence_is_stored_with_its_matchers_times_author_and_comment(store: Silences) -> None:
    added = _add(store, ends=2 * HOUR)
    assert added.model_dump() == {
        "id": added.id,
        "matchers": {"code": "DISK-.*", "target": "db-1"},
        "starts_at": START,
        "ends_at": START + 2 * HOUR,
        "created_by": "alice",
        "comment": "new disk",
        "created_at": START,
        "expired_by": None,
        "active": True,
    }
    assert store.get(added.id) == added
    assert store.list() == [added]


def test_a_start_in_the_future_is_pending_until_then(store: Silences, clock: ManualClock) -> None:
    later = _add(store, starts=HOUR, ends=3 * HOUR)
    assert later.active is False and later.starts_at == START + HOUR
    assert store.list() == [later]  # not ended: listed
    clock.advance(HOUR)
    assert store.get(later.id).active is True


def test_times_in_another_zone_are_kept_in_utc(store: Silences) -> None:
    from zoneinfo import ZoneInfo

    end = (START + HOUR).astimezone(ZoneInfo("America/New_York"))
    added = store.add(DB_1, None, end, "alice", "why")
    stored = store.get(added.id)
    assert stored.ends_at == START + HOUR and stored.ends_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"matchers": {}}, r"^match: at least one matcher"),
        ({"ends": timedelta(0)}, r"^ends_at 2026-12-01T12:00:00Z is in the past"),
        ({"starts": -2 * HOUR, "ends": -HOUR}, r"^ends_at 2026-12-01T11:00:00Z is in the past"),
        ({"starts": 2 * HOUR, "ends": HOUR}, r"is not after starts_at 2026-12-01T14:00:00Z"),
        ({"comment": "  "}, r"^comment is empty"),
        ({"created_by": ""}, r"^created_by is empty"),
        ({"created_by": "x" * 129}, r"^created_by is longer than 128 characters"),
    ],
)
def test_a_silence_that_could_never_hold_anything_is_refused(
    store: Silences, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        _add(store, **change)
    assert store.list(include_ended=True) == []


def test_the_list_is_newest_first_and_leaves_ended_ones_out_unless_asked(
    store: Silences, clock: ManualClock
) -> None:
    short = _add(store, ends=HOUR, comment="short")
    long = _add(store, ends=3 * HOUR, comment="long")
    expired = _add(store, ends=3 * HOUR, comment="expired")
    store.expire(expired.id, "bob")
    assert [s.comment for s in store.list()] == ["long", "short"]
    clock.advance(HOUR)  # `short` ends on its own
    assert [s.id for s in store.list()] == [long.id]
    everything = store.list(include_ended=True)
    assert [s.comment for s in everything] == ["expired", "long", "short"]
    assert [s.active for s in everything] == [False, True, False]
    assert everything[2].ends_at == START + HOUR and everything[2].expired_by is None
    assert short.id < long.id < expired.id


def test_expiring_ends_it_now_under_the_name_of_who_did(store: Silences, clock: ManualClock) -> None:
    added = _add(store, ends=2 * HOUR)
    clock.advance(timedelta(minutes=10))
    ended = store.expire(added.id, "bob")
    assert ended.ends_at == START + timedelta(minutes=10)
    assert (ended.expired_by, ended.active, ended.created_by) == ("bob", False, "alice")
    assert store.get(added.id) == ended
    with pytest.raises(
        Conflict, match=rf"^silence {added.id} already expired by bob at 2026-12-01T12:10:00Z"
    ):
        store.expire(added.id, "carol")
    with pytest.raises(NotFound, match=r"^silence 999 not found"):
        store.expire(999, "bob")
    with pytest.raises(NotFound, match=r"^silence 999 not found"):
        store.get(999)


def test_one_that_ended_by_itself_cannot_be_expired(store: Silences, clock: ManualClock) -> None:
    added = _add(store, ends=HOUR)
    clock.advance(HOUR)
    with pytest.raises(Conflict, match=rf"^silence {added.id} already ended at 2026-12-01T13:00:00Z"):
        store.expire(added.id, "bob")
    assert store.get(added.id).expired_by is None


def test_expiring_one_still_to_start_ends_it_before_it_began(store: Silences) -> None:
    later = _add(store, starts=HOUR, ends=2 * HOUR)
    ended = store.expire(later.id, "bob")
    assert (ended.starts_at, ended.ends_at, ended.expired_by) == (START, START, "bob")
    assert store.list() == []


def test_two_people_expiring_at_once_one_wins(db: Database, clock: ManualClock) -> None:
    """Each thread has its own store over the one database; exactly one expiry is recorded."""
    added = _add(Silences(db, clock), ends=HOUR)

    def expire(name: str) -> str:
        try:
            return Silences(db, clock).expire(added.id, name).expired_by or ""
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(expire, ["bob", "carol", "dave", "erin"]))
    assert sorted(outcomes).count("conflict") == 3
    [winner] = [o for o in outcomes if o != "conflict"]
    assert Silences(db, clock).get(added.id).expired_by == winner


def test_the_gate_reads_every_silence_not_ended_in_one_query(db: Database, store: Silences) -> None:
    """Lowest id first, pending ones included (the gate checks the start), ended ones left out."""
    first = _add(store, ends=2 * HOUR, matchers={"labels.team": "db"})
    pending = _add(store, starts=HOUR, ends=2 * HOUR)
    gone = _add(store, ends=2 * HOUR)
    store.expire(gone.id, "bob")
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        stored = store.not_ended(START)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len([s for s in statements if "silences" in s]) == 1
    assert [s.id for s in stored] == [first.id, pending.id]

    rules = rules_of(stored)
    request = RunRequest("DISK-001", "db-1", "disk-cleanup", 3, Mode.auto, labels={"team": "db"})
    held = silence(request, RunHistory(silences=rules), START)
    assert isinstance(held, Hold) and held.silenced_by == f"silence {first.id}"
    assert held.reason == f"silence {first.id} by alice until 2026-12-01T14:00:00Z: new disk"
    subject = Subject("DISK-001", "db-1", "high", "alertmanager", "DiskFull", {})
    assert [rule.id for rule in rules if rule.active(START + HOUR) and rule.matchers.matches(subject)] == [
        pending.id
    ]


def test_status_lists_the_silences_holding_runs_now(
    db: Database, store: Silences, clock: ManualClock
) -> None:
    now_one = _add(store, ends=HOUR, comment="now")
    _add(store, starts=HOUR, ends=2 * HOUR, comment="later")
    ended = _add(store, ends=HOUR, comment="expired")
    store.expire(ended.id, "bob")
    assert CatalogHistory(db).status(clock.now()).active_silences == [store.get(now_one.id)]
    clock.advance(HOUR)
    [later] = CatalogHistory(db).status(clock.now()).active_silences
    assert later.comment == "later" and later.active
