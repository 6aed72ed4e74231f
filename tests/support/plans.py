"""What the database plans for a statement: tests that a query reads through the index it was shaped
for keep it from degrading into a scan (and a sort of every match) as tables grow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.store.db import Database
from engine.store.sqltime import sqlite_utc_text


def explain(db: Database, statement: Any) -> str:
    """The backend's plan of `statement` (its values bound with `.params()`), as one line;
    PostgreSQL is told to avoid table scans, which it rightly prefers on a table this small."""
    with db.read() as conn:
        expanded = statement.compile(dialect=conn.dialect).construct_expanded_state()
        sql, params = expanded.statement, expanded.parameters
        if db.is_sqlite:
            values = tuple(
                sqlite_utc_text(v) if isinstance(v, datetime) else v for v in expanded.positional_parameters
            )
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", values)
            return " ".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return " ".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
