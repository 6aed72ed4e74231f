"""A read command's own connection to the database, through the driver alone (sqlite3 or psycopg).

`incidents list` and `runs list` read their page through here, which spares them importing
SQLAlchemy: most of what such a command cost was starting up, not reading. `open_direct` vouches
only for a database it knows as it is: a URL form it reads, a file that exists, the schema at
`HEAD_REVISION`. Otherwise it returns None and the command opens the Store, which migrates a
schema that is behind and words every failure as the other commands do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import StoreUnavailable
from engine.records import Incident, Run
from engine.store.pages import INCIDENTS, RUNS, Dialect, Listing, RecordT, newest_first
from engine.store.revision import HEAD_REVISION

SQLITE_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")
POSTGRES_PREFIX = "postgresql+psycopg://"
BUSY_TIMEOUT_S = 5.0


class DirectPages:
    """List pages read on one driver connection, each in its own read transaction."""

    def __init__(self, conn: Any, dialect: Dialect, errors: type[Exception]) -> None:
        self._conn = conn
        self._dialect: Dialect = dialect
        self._errors = errors

    def list_incidents(
        self,
        *,
        status: str | None = None,
        code: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        return self._page(INCIDENTS, {"status": status, "code": code}, since, limit)

    def list_runs(
        self,
        *,
        status: str | None = None,
        playbook: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Run]:
        return self._page(RUNS, {"status": status, "playbook": playbook}, since, limit)

    def close(self) -> None:
        self._conn.close()

    def at_head(self) -> bool:
        """Whether the schema is at HEAD_REVISION, which this version's SQL is written for."""
        try:
            cursor = self._conn.cursor()
            cursor.execute("SELECT version_num FROM alembic_version")
            found = [row[0] for row in cursor.fetchall()]
            cursor.close()
            self._conn.rollback()
        except self._errors:
            return False
        return found == [HEAD_REVISION]

    def _page(
        self, listing: Listing[RecordT], equals: Mapping[str, str | None], since: datetime | None, limit: int
    ) -> list[RecordT]:
        try:
            if self._dialect == "sqlite":
                self._conn.execute("BEGIN")
            try:
                return newest_first(
                    self._conn, self._dialect, listing, equals=equals, since=since, limit=limit
                )
            finally:
                if self._dialect == "sqlite":
                    self._conn.execute("ROLLBACK")
                else:
                    self._conn.rollback()
        except self._errors as exc:
            raise StoreUnavailable(f"database unavailable: {str(exc).splitlines()[0]}") from exc


def open_direct(url: str) -> DirectPages | None:
    """The database of `url` for list pages, or None where the Store must open it instead."""
    path = _sqlite_path(url)
    if path is not None:
        if not path.is_file():
            return None  # the Store creates and migrates it
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error:
            return None
        return _if_at_head(DirectPages(conn, "sqlite", sqlite3.Error))
    if url.startswith(POSTGRES_PREFIX):
        try:
            import psycopg
        except ImportError:
            return None  # the Store says which extra to install
        try:
            pg = psycopg.connect("postgresql://" + url[len(POSTGRES_PREFIX) :])
        except psycopg.Error:
            return None
        return _if_at_head(DirectPages(pg, "postgresql", psycopg.Error))
    return None


def _sqlite_path(url: str) -> Path | None:
    """The file of a plain `sqlite:///path` URL; None for memory, `file:` URIs, query options."""
    for prefix in SQLITE_PREFIXES:
        if url.startswith(prefix):
            database = url[len(prefix) :]
            unusual = "?" in database or "%" in database or database.startswith((":memory:", "file:"))
            if not database or unusual:
                return None
            return Path(database)
    return None


def _if_at_head(pages: DirectPages) -> DirectPages | None:
    """`pages` if its schema is at HEAD_REVISION; else its connection is closed and None returned."""
    if pages.at_head():
        return pages
    pages.close()
    return None
