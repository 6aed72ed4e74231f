"""Circuit breakers on a real SQLite file and a real PostgreSQL database: counted inside the
caller's write, opened once at the threshold, read as the gate and `status` read them, reset by
a person (audited), and never opened twice by two workers finishing runs at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from engine.cli.main import main
from engine.clock import ManualClock
from engine.errors import Conflict, NotFound
from engine.policy.breakers import after_run
from engine.store import open_database
from engine.store.breakers import Breakers
from engine.store.catalog_history import CatalogHistory
from engine.store.db import Database
from engine.store.tables import audit_log

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
REASON = "3 consecutive failed or ineffective runs"


def _finish(store: Breakers, bad: bool, playbook: str = "disk-cleanup", version: int = 3) -> str | None:
    with store.db.write() as conn:
        return store.record(conn, playbook, version, bad, 3, NOW)


def test_third_bad_run_in_a_row_opens_the_breaker_once(db: Database) -> None:
    breakers = Breakers(db, ManualClock(NOW))
    assert [_finish(breakers, bad) for bad in (True, True, False, True, True)] == [None] * 5
    assert breakers.open_map() == {}
    assert _finish(breakers, True) == REASON
    assert breakers.open_map() == {("disk-cleanup", 3): REASON}
    assert _finish(breakers, True) is None  # already open: keeps counting, does not open again
    (row,) = breakers.list()
    assert (row.playbook, row.version, row.status, row.failures) == ("disk-cleanup", 3, "open", 4)
    assert (row.opened_at, row.reason, row.reset_at, row.reset_by) == (NOW, REASON, None, None)


def test_store_counts_as_the_pure_rule_does(db: Database) -> None:
    """engine.policy.breakers.after_run is the rule; the store applies it in SQL."""
    breakers = Breakers(db, ManualClock(NOW))
    runs = (True, False, True, True, False, True, True, True)
    count, expected = 0, list[bool]()
    for bad in runs:
        count, opens = after_run(count, 3, bad)
        expected.append(opens and not any(expected))  # an open breaker does not open again
    got = [_finish(breakers, bad, "restart", 1) is not None for bad in runs]
    assert got == expected
    assert breakers.list()[0].failures == count


def test_a_write_that_rolls_back_counts_nothing(db: Database) -> None:
    breakers = Breakers(db, ManualClock(NOW))
    with pytest.raises(RuntimeError), db.write() as conn:
        breakers.record(conn, "disk-cleanup", 3, True, 1, NOW)
        raise RuntimeError("finish_run failed after counting")
    assert breakers.list() == []


def test_reset_closes_an_open_breaker_and_is_audited(db: Database) -> None:
    clock = ManualClock(NOW + timedelta(hours=1))
    breakers = Breakers(db, clock)
    for _ in range(3):
        _finish(breakers, True)
    reset = breakers.reset("disk-cleanup", 3, "alice")
    assert (reset.status, reset.failures, reset.reset_at, reset.reset_by) == (
        "closed",
        0,
        NOW + timedelta(hours=1),
        "alice",
    )
    assert (reset.opened_at, reset.reason) == (NOW, REASON)  # why it last opened stays readable
    assert breakers.open_map() == {}
    with db.read() as conn:
        audited = conn.execute(select(audit_log.c.actor, audit_log.c.kind, audit_log.c.message)).all()
    assert [tuple(row) for row in audited] == [
        ("alice", "breaker_reset", "breaker of disk-cleanup@3 reset by alice")
    ]
    with pytest.raises(Conflict, match="is not open"):
        breakers.reset("disk-cleanup", 3, "bob")
    with pytest.raises(NotFound, match="no breaker for disk-cleanup@9"):
        breakers.reset("disk-cleanup", 9, "bob")
    # After a reset it takes three new bad runs to open again.
    assert [_finish(breakers, True) for _ in range(3)] == [None, None, REASON]


def test_list_shows_open_ones_first_and_status_shows_only_open_ones(db: Database) -> None:
    breakers = Breakers(db, ManualClock(NOW))
    _finish(breakers, True, "a-playbook", 1)
    for _ in range(3):
        _finish(breakers, True, "z-playbook", 2)
    assert [(b.playbook, b.status) for b in breakers.list()] == [
        ("z-playbook", "open"),
        ("a-playbook", "closed"),
    ]
    status = CatalogHistory(db).status(NOW)
    assert [(b.playbook, b.version, b.reason) for b in status.open_breakers] == [("z-playbook", 2, REASON)]
    assert status.maintenance == []


def test_two_workers_finishing_at_once_open_it_once(db: Database, db_url: str) -> None:
    """Each worker counts in its own transaction (on PostgreSQL truly at once, on its own
    connection); the count is exact and exactly one of them is told the breaker opened."""
    other = open_database(db_url)
    try:
        stores = [Breakers(db, ManualClock(NOW)), Breakers(other, ManualClock(NOW))]
        _finish(stores[0], True)
        start = Barrier(2)

        def finish(store: Breakers) -> str | None:
            start.wait()
            return _finish(store, True)

        with ThreadPoolExecutor(2) as pool:
            told = list(pool.map(finish, stores))
        assert sorted(told, key=str) == [REASON, None]
        assert stores[0].list()[0].failures == 3
    finally:
        other.dispose()


def test_cli_lists_and_resets_by_playbook_at_version(tmp_path: Path) -> None:
    """`suture breakers list|reset` in process on SQLite: the reset is recorded under `--by`; a
    closed breaker or a missing `@VERSION` is one line on stderr and exit 1."""
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'suture.db'}\n")
    db = open_database(f"sqlite:///{tmp_path / 'suture.db'}", upgrade=True)
    try:
        for _ in range(3):
            _finish(Breakers(db), True)
    finally:
        db.dispose()

    def suture(*args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--config", str(config)])

    listed = suture("breakers", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[1].split()[:4] == ["disk-cleanup", "3", "open", "3"]
    reset = suture("breakers", "reset", "disk-cleanup@3", "--by", "alice", "--json")
    assert reset.exit_code == 0, reset.output
    assert {k: v for k, v in orjson.loads(reset.stdout).items() if k in ("status", "reset_by")} == {
        "status": "closed",
        "reset_by": "alice",
    }
    again = suture("breakers", "reset", "disk-cleanup@3")
    assert (again.exit_code, again.stderr) == (
        1,
        "error: the breaker of disk-cleanup@3 is not open: nothing to reset\n",
    )
    typo = suture("breakers", "reset", "disk-cleanup")
    assert typo.exit_code == 1
    assert typo.stderr == (
        "error: PLAYBOOK@VERSION: expected a playbook and its version like disk-cleanup@3,"
        " got 'disk-cleanup'\n"
    )
