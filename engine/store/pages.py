"""Newest-first pages of incidents and runs, in plain SQL on the driver's own connection.

The daemon's Store and the read commands (`incidents list`, `runs list`) run the same query
from here: the Store on the connection of its pool, a read command on one it opens without
SQLAlchemy (engine.store.direct), so that the command does not pay for importing it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, Literal, Protocol, TypeVar

from engine.codegen import admitted
from engine.records import Incident, Record, Run
from engine.store.sqltime import sqlite_utc_datetime, sqlite_utc_text

Dialect = Literal["sqlite", "postgresql"]
RecordT = TypeVar("RecordT", bound=Record)


class Pages(Protocol):
    """What a list page is read from: the Store, or a read command's direct connection."""

    def list_incidents(
        self,
        *,
        status: str | None = None,
        code: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]: ...

    def list_runs(
        self,
        *,
        status: str | None = None,
        playbook: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Run]: ...


@dataclass(frozen=True)
class Listing(Generic[RecordT]):
    """A table listed newest first by `time_column`, its rows read as `record`."""

    table: str
    record: type[RecordT]
    time_column: str

    @cached_property
    def fields(self) -> tuple[str, ...]:
        return self.record.field_names()

    @cached_property
    def kinds(self) -> tuple[str, ...]:
        """Per field, how the driver's value becomes the record's: `time`, `flag` or as is."""
        return tuple(_kind(self.record.model_fields[name].annotation) for name in self.fields)


INCIDENTS = Listing("incidents", Incident, "opened_at")
RUNS = Listing("runs", Run, "queued_at")


def _kind(annotation: Any) -> str:
    types = admitted(annotation)
    if datetime in types:
        return "time"
    if bool in types:
        return "flag"
    return "value"


def newest_first(
    conn: Any,
    dialect: Dialect,
    listing: Listing[RecordT],
    *,
    equals: Mapping[str, str | None],
    since: datetime | None,
    limit: int,
    before_id: int | None = None,
    among: tuple[str, Collection[str]] | None = None,
) -> list[RecordT]:
    """A page of records, newest first; `before_id` is the cursor the API hands out.

    Ordered by (time, id) rather than id alone: the filters' indexes, (code, opened_at),
    (status, queued_at), ..., hold rows in that order, so a page reads its rows from the index
    instead of sorting every match (SQLite sorted 900k runs for one page of 100). The cursor
    stays an id: its row's time is read inside the page's own statement, then the page starts
    after (time, id). `among`: only rows whose column is one of these values.
    """
    mark = "?" if dialect == "sqlite" else "%s"
    time = _quoted(listing.time_column)
    where: list[str] = []
    params: list[Any] = []
    for column, value in equals.items():
        if value:
            where.append(f"{_quoted(column)} = {mark}")
            params.append(value)
    if among is not None:
        column, values = among
        if values:
            where.append(f"{_quoted(column)} IN ({', '.join([mark] * len(values))})")
            params.extend(sorted(values))
        else:
            where.append("1 = 0")
    if since:
        where.append(f"{time} >= {mark}")
        params.append(_bind_time(since, dialect))
    head = f"SELECT {', '.join(_quoted(name) for name in listing.fields)} FROM {listing.table}"
    tail = f" ORDER BY {time} DESC, id DESC LIMIT {mark}"
    cursor = conn.cursor()
    try:
        if before_id:
            after = f"(SELECT {time} FROM {listing.table} WHERE id = {mark})"
            cursor.execute(
                head + _where([*where, f"{time} <= {after} AND ({time} < {after} OR id < {mark})"]) + tail,
                [*params, before_id, before_id, before_id, limit],
            )
            found = cursor.fetchall()
            if found or _exists(cursor, listing.table, mark, before_id):
                return _records(listing, found, dialect)
            where.append(f"id < {mark}")  # a cursor whose row is gone
            params.append(before_id)
        cursor.execute(head + _where(where) + tail, [*params, limit])
        return _records(listing, cursor.fetchall(), dialect)
    finally:
        cursor.close()


def _quoted(column: str) -> str:
    """A column name quoted for both backends (`trigger` is a keyword)."""
    return f'"{column}"'


def _exists(cursor: Any, table: str, mark: str, row_id: int) -> bool:
    cursor.execute(f"SELECT id FROM {table} WHERE id = {mark}", [row_id])
    return cursor.fetchone() is not None


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _bind_time(value: datetime, dialect: Dialect) -> Any:
    """A time as `UtcDateTime` binds it: naive means UTC; SQLite compares its text."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return sqlite_utc_text(aware) if dialect == "sqlite" else aware.astimezone(UTC)


def _records(listing: Listing[RecordT], rows: list[Any], dialect: Dialect) -> list[RecordT]:
    fields = listing.fields
    kinds = listing.kinds
    trusted = listing.record.trusted
    return [
        trusted(
            {name: _value(kind, value, dialect) for name, kind, value in zip(fields, kinds, row, strict=True)}
        )
        for row in rows
    ]


def _value(kind: str, value: Any, dialect: Dialect) -> Any:
    if value is None or kind == "value":
        return value
    if kind == "flag":
        return bool(value)
    if dialect == "sqlite" and isinstance(value, str):
        return sqlite_utc_datetime(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
