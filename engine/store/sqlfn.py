"""The few SQL expressions analytics needs that SQLite and PostgreSQL spell differently, one construct
per need, compiled per dialect (time arithmetic, list aggregates, ordering, planner hints).

SQLite keeps times as text (`UtcDateTime`: `YYYY-MM-DD HH:MM:SS.ffffff`, compared as text);
PostgreSQL as timestamptz. Aggregates read numbers, never datetimes, so no row is parsed in Python:

- `micros_between(a, b)`: `b - a` in whole microseconds, exactly. SQLite's `julianday()` rounds to
  the millisecond, so there the whole seconds come from the julian days and the microseconds from
  the text's last six digits.
- `at_most_apart(a, b, limit_us)`: `b - a <= limit_us` exactly on both (null if a time is null): on
  SQLite the julian days decide unless they fall within two milliseconds of the limit, where the
  text's microseconds do.
- `collected(x)`: every non-null `x` of a group: `group_concat` text on SQLite, an array on
  PostgreSQL; `numbers()` turns either into a list of ints.
- `bytewise(text)`: order by code point as Python does, not by PostgreSQL's locale collation.
- `unindexed(column)`: the same value, but SQLite will not pick an index on that column for the
  condition (SQLite's unary `+`), so that it scans the covering index the query is shaped for.
- `utc_day(time)`: the UTC calendar day of a stored time as `YYYY-MM-DD` text (the dashboard's days).
- `likely(condition)`: the same condition, but SQLite's planner (which has no statistics) takes it
  as true of most rows, so it walks a partial index on that condition in its order instead of
  searching a general index on the column and sorting every match.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, String, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

#: How far SQLite's julian-day difference may be from the exact one, in microseconds: each end
#: rounded to the millisecond (500 us) plus the REAL's error (under 100 us), with room to spare.
_SQLITE_SLACK_US = 2000


class _MicrosBetween(FunctionElement[int]):
    type = BigInteger()
    name = "suture_micros_between"
    inherit_cache = True


class _AtMostApart(FunctionElement[bool]):
    type = Boolean()
    name = "suture_at_most_apart"
    inherit_cache = True


class _Collected(FunctionElement[Any]):
    type = NullType()
    name = "suture_collected"
    inherit_cache = True


class _Bytewise(FunctionElement[str]):
    type = Text()
    name = "suture_bytewise"
    inherit_cache = True


class _Unindexed(FunctionElement[Any]):
    name = "suture_unindexed"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type  # so that what it is compared with is bound as the column's type


class _Likely(FunctionElement[Any]):
    type = NullType()  # not Boolean: SQLite would get `likely(...) = 1`, which no index matches
    name = "suture_likely"
    inherit_cache = True


def micros_between(start: ColumnElement[Any], end: ColumnElement[Any]) -> ColumnElement[int]:
    """`end - start` in microseconds; null if either is null."""
    return _MicrosBetween(start, end)


def at_most_apart(
    start: ColumnElement[Any], end: ColumnElement[Any], limit_us: ColumnElement[int] | int
) -> ColumnElement[bool]:
    """Whether `end - start <= limit_us` (raw time columns; negative differences pass; null if either
    time is null). On SQLite `end` is read once unless the two are too close to tell."""
    return _AtMostApart(start, end, limit_us)


def collected(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return _Collected(value)


def bytewise(text: ColumnElement[str]) -> ColumnElement[str]:
    return _Bytewise(text)


def unindexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return _Unindexed(column)


def likely(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return _Likely(condition)


def numbers(value: Any) -> list[int]:
    """What `collected()` fetched (a comma-separated text, a list or null) as ints."""
    if value is None:
        return []
    if isinstance(value, str):
        return [int(part) for part in value.split(",")] if value else []
    return [int(part) for part in value if part is not None]


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


# ------------------------------------------------------------------ SQLite


def _exact_micros_sqlite(start: str, end: str) -> str:
    """`end - start` in microseconds from the texts: whole seconds from the julian days (far
    closer than half a second), the microseconds from the text's last six digits."""
    fraction = f"(substr({end}, 21) - substr({start}, 21))"
    seconds = f"round((julianday({end}) - julianday({start})) * 86400.0 - {fraction} / 1000000.0)"
    return f"(CAST({seconds} AS INTEGER) * 1000000 + {fraction})"


@compiles(_MicrosBetween, "sqlite")
def _micros_sqlite(element: _MicrosBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    return _exact_micros_sqlite(start, end)


@compiles(_AtMostApart, "sqlite")
def _apart_sqlite(element: _AtMostApart, compiler: SQLCompiler, **kw: Any) -> str:
    start, end, limit = _args(element, compiler, **kw)
    approx = f"((julianday({end}) - julianday({start})) * 86400000000.0 - ({limit}))"
    # -1: clearly within, 1: clearly beyond, 0: too close to tell from the julian days, null: a time
    # is null. `CASE x WHEN` computes x once.
    side = f"max(-1, min(1, CAST({approx} / {_SQLITE_SLACK_US} AS INTEGER)))"
    exact = f"{_exact_micros_sqlite(start, end)} <= ({limit})"
    return f"(CASE {side} WHEN -1 THEN 1 WHEN 1 THEN 0 WHEN 0 THEN {exact} END)"


@compiles(_Collected, "sqlite")
def _collected_sqlite(element: _Collected, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"group_concat({value})"


@compiles(_Bytewise, "sqlite")
def _bytewise_sqlite(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = _args(element, compiler, **kw)
    return text  # BINARY: memcmp of UTF-8, which is code point order


@compiles(_Unindexed, "sqlite")
def _unindexed_sqlite(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(element, compiler, **kw)
    return f"+{column}"


@compiles(_Likely, "sqlite")
def _likely_sqlite(element: _Likely, compiler: SQLCompiler, **kw: Any) -> str:
    (condition,) = _args(element, compiler, **kw)
    return f"likely({condition})"


# -------------------------------------------------------------- PostgreSQL


@compiles(_MicrosBetween)
def _micros_pg(element: _MicrosBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = _args(element, compiler, **kw)
    # date_part is a double (extract's numeric is slower): exact to the microsecond for any span
    # under a century.
    return f"CAST(round(date_part('epoch', {end} - {start}) * 1000000) AS BIGINT)"


@compiles(_AtMostApart)
def _apart_pg(element: _AtMostApart, compiler: SQLCompiler, **kw: Any) -> str:
    start, end, limit = _args(element, compiler, **kw)
    return f"(({end}) - ({start}) <= CAST({limit} AS BIGINT) * INTERVAL '1 microsecond')"


@compiles(_Collected)
def _collected_pg(element: _Collected, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = _args(element, compiler, **kw)
    return f"array_agg({value})"


@compiles(_Bytewise)
def _bytewise_pg(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = _args(element, compiler, **kw)
    return f'({text} COLLATE "C")'


@compiles(_Unindexed)
def _unindexed_pg(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _args(element, compiler, **kw)
    return column


@compiles(_Likely)
def _likely_pg(element: _Likely, compiler: SQLCompiler, **kw: Any) -> str:
    (condition,) = _args(element, compiler, **kw)
    return f"({condition})"


class _UtcDay(FunctionElement[str]):
    """The UTC calendar day of a stored time, as `YYYY-MM-DD` text on both backends."""

    type = String()
    name = "suture_utc_day"
    inherit_cache = True


@compiles(_UtcDay, "sqlite")
def _utc_day_sqlite(element: _UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = [compiler.process(clause, **kw) for clause in element.clauses]
    return f"substr({column}, 1, 10)"  # UtcDateTime's text starts with the UTC date


@compiles(_UtcDay)
def _utc_day_pg(element: _UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = [compiler.process(clause, **kw) for clause in element.clauses]
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def utc_day(column: ColumnElement[Any]) -> ColumnElement[str]:
    return _UtcDay(column)
