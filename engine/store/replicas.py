"""What replicas on one database coordinate through: transaction advisory locks, inserts that
lose a race quietly, the run-queued NOTIFY and the turns of scheduled jobs.

Every lock here is a transaction lock (`pg_advisory_xact_lock`): it ends with the transaction,
so it also holds behind PgBouncer in transaction mode, where a session lock would stay with a
pooled connection. On SQLite the one write lock already serialises writers, and these are no-ops.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, text, update
from sqlalchemy.sql import Insert

from engine.store.tables import job_turns

#: Advisory lock keys ("Sutur" + a letter): one per decision that must be one across replicas.
CLAIM_LOCK = 0x5375747572
MIGRATE_LOCK = 0x537574757201
CATALOG_LOCK = 0x537574757202
GATES_LOCK = 0x537574757203

#: The channel a queued run is announced on; the payload is empty (a hint, not a message).
RUNS_CHANNEL = "suture_runs"

#: The share of a job's period that must pass since its last run before another replica's tick runs it.
TURN_SLACK = 0.9


def exclusive(conn: Connection, key: int) -> None:
    """Hold `key` until this transaction ends (PostgreSQL; SQLite writers take turns anyway)."""
    if conn.dialect.name != "sqlite":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The backend's own INSERT, which knows ON CONFLICT (both dialects spell it alike)."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    return postgresql_insert(table)


def insert_new(conn: Connection, table: Table, conflict: list[Any]) -> Insert:
    """An INSERT that does nothing when a row with the same `conflict` columns exists."""
    return dialect_insert(conn, table).on_conflict_do_nothing(index_elements=conflict)


def announce_runs(conn: Connection) -> None:
    """Tell every replica's workers, at this transaction's commit, that runs were queued."""
    if conn.dialect.name != "sqlite":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": RUNS_CHANNEL})


def take_turn(conn: Connection, job: str, every: timedelta, owner: str, now: datetime) -> bool:
    """Whether this replica's tick runs `job` now: it does when the job last ran (on any replica)
    at least nine tenths of `every` ago, and its write says so before anyone else's.

    Each replica ticks every `every` at its own phase; the tenth's slack lets a replica's own next
    tick always qualify (its ticks wander by milliseconds), so the job runs once per period
    whichever replicas are alive, and a period never passes without a run while one is."""
    moved = conn.execute(
        update(job_turns)
        .where(and_(job_turns.c.job == job, job_turns.c.last_at <= now - every * TURN_SLACK))
        .values(last_at=now, claimed_by=owner)
    ).rowcount
    if moved == 1:
        return True
    first = conn.execute(  # psycopg reports no rowcount for ON CONFLICT DO NOTHING: ask for the row
        insert_new(conn, job_turns, [job_turns.c.job])
        .values(job=job, last_at=now, claimed_by=owner)
        .returning(job_turns.c.job)
    ).first()
    return first is not None
