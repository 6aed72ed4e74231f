"""Multi-row inserts for the intake writer, without SQLAlchemy's per-row machinery on SQLite and
without one statement the size of the batch on PostgreSQL.

The intake writer inserts thousands of rows per second into a handful of tables. Through
`Connection.execute(insert(table), rows)` SQLAlchemy rebuilds each row's parameters in
Python (a quarter of the writer's time in py-spy profiles). On SQLite the same rows go to
`sqlite3.Cursor.executemany` directly, converted by the very bind processors SQLAlchemy
would use, so what is stored is identical. Other databases keep the Core path.

New ids on SQLite come from the table's rowid: inside the write transaction (BEGIN
IMMEDIATE holds the database's only write lock) each row gets the largest id plus one, so
a batch of n rows takes the n ids after the largest before it; the count is checked after.

On PostgreSQL an INSERT that returns its ids in row order goes out as SQLAlchemy's
"insertmanyvalues": one statement holding every row's values, which psycopg and the server parse
afresh each time (too long to cache), a third of the intake helper's time. Instead the batch
takes its ids from the table's sequence first, in one short query, and the rows, ids included,
go through psycopg's pipelined executemany of one short statement.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Column, Connection, Table, insert, text

from engine.store.db import json_text
from engine.store.sqltime import sqlite_utc_text
from engine.store.tables import UtcDateTime

Processor = Callable[[Any], Any] | None


class _SqliteInsert:
    """One table's INSERT for a fixed column list, with each column's bind processor."""

    def __init__(self, table: Table, keys: tuple[str, ...], conn: Connection) -> None:
        columns = [table.c[key] for key in keys]
        self.keys = keys
        # Values come out of each row dict in one C call; only the columns with a processor
        # (times, JSON) are converted after, in place.
        self.values = itemgetter(*keys)
        self.conversions = [
            (index, process)
            for index, column in enumerate(columns)
            if (process := _processor(column, conn)) is not None
        ]
        names = ", ".join(f'"{column.name}"' for column in columns)
        marks = ", ".join("?" for _ in columns)
        self.sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
        self.max_id = f'SELECT max(id) FROM "{table.name}"'

    def parameters(self, rows: list[dict[str, Any]]) -> list[list[Any]]:
        values, conversions = self.values, self.conversions
        single = len(self.keys) == 1
        converted = []
        for row in rows:
            row_values = [values(row)] if single else list(values(row))
            for index, process in conversions:
                row_values[index] = process(row_values[index])
            converted.append(row_values)
        return converted


def _processor(column: Column[Any], conn: Connection) -> Processor:
    """SQLAlchemy's bind processor for the column, or an equal but cheaper one for the types
    every intake row carries several of (times, JSON)."""
    if isinstance(column.type, UtcDateTime):
        return _utc_text
    impl = column.type.dialect_impl(conn.dialect)
    if isinstance(impl, JSON) and not impl.none_as_null:
        return json_text
    return impl.bind_processor(conn.dialect)


def _utc_text(value: datetime | None) -> str | None:
    return None if value is None else sqlite_utc_text(value)


_prepared: dict[tuple[str, tuple[str, ...]], _SqliteInsert] = {}


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]], *, ids: bool) -> list[int]:
    """Insert `rows` (same keys in each) in one statement; with `ids`, their new ids in order."""
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        if not ids:
            conn.execute(insert(table), rows)
            return []
        new_ids = next_ids(conn, table, len(rows))
        conn.execute(
            insert(table), [{**row, "id": new_id} for row, new_id in zip(rows, new_ids, strict=True)]
        )
        return new_ids
    keys = tuple(rows[0])
    statement = _prepared.get((table.name, keys))
    if statement is None:
        statement = _prepared[(table.name, keys)] = _SqliteInsert(table, keys, conn)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        before = (cursor.execute(statement.max_id).fetchone()[0] or 0) if ids else 0
        cursor.executemany(statement.sql, statement.parameters(rows))
        if not ids:
            return []
        after = cursor.execute(statement.max_id).fetchone()[0]
    finally:
        cursor.close()
    if after != before + len(rows):
        raise RuntimeError(f"{table.name}: {len(rows)} rows took ids {before + 1}..{after}, not contiguous")
    return list(range(before + 1, after + 1))


_NEXT_IDS = text("SELECT nextval(CAST(:sequence AS regclass)) AS id FROM generate_series(1, :n) ORDER BY id")
_sequences: dict[str, str] = {}


def next_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """`n` new ids of `table` (PostgreSQL), in increasing order, from the sequence its id column
    draws on: another writer's rows never get them."""
    sequence = _sequences.get(table.name)
    if sequence is None:
        found = conn.execute(text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name})
        sequence = _sequences[table.name] = str(found.scalar_one())
    return [int(value) for value in conn.execute(_NEXT_IDS, {"sequence": sequence, "n": n}).scalars()]


def select_rows(conn: Connection, sql: str, parameters: list[Any]) -> list[tuple[Any, ...]]:
    """A query straight through the SQLite driver: raw values, no result processing."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        return cursor.execute(sql, parameters).fetchall()
    finally:
        cursor.close()
