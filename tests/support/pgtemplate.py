"""Throwaway PostgreSQL databases copied from one template migrated once per test session.

Migrating a database from scratch runs Alembic's whole chain; `CREATE DATABASE x TEMPLATE tpl`
copies the migrated files instead. The daemon, the CLI and `open_database(..., upgrade=True)`
then find the copy at head and do nothing. PostgreSQL refuses to copy a database somebody is
connected to, so the template's engine is disposed as soon as it is migrated and nobody
connects to it again.

Several pytest runs may share the server, so every name carries the pid of the run that made
it (`suture_test_<pid>_...`, `suture_test_tpl_<pid>_...`). A run that was killed cannot drop
its databases; the next run drops those whose pid is gone.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from pathlib import Path

PREFIX = "suture_test_"
_OWNED = re.compile(rf"^{PREFIX}(?:tpl_)?(\d+)_[0-9a-f]+$")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TemplateDatabases:
    """Creates the template on first use, copies it per test, drops copies and template after."""

    def __init__(self, admin_url: str) -> None:
        #: A psycopg URL of a database to run CREATE/DROP DATABASE from (never the template).
        self.admin_url = admin_url
        self._base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        self._template: str | None = None
        self._lock = threading.Lock()

    def url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` on the admin URL's server."""
        return f"{self._base}/{name}"

    def _execute(self, statement: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            cursor = conn.execute(statement.encode())  # names made here, quoted by _quoted
            return cursor.fetchall() if cursor.description else []

    def _new_name(self, kind: str = "") -> str:
        return f"{PREFIX}{kind}{os.getpid()}_{uuid.uuid4().hex[:12]}"

    def _drop_orphans(self) -> None:
        """Drop the databases of earlier runs whose process is gone (killed before cleaning up)."""
        rows = self._execute(f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'")
        for (name,) in rows:
            owned = _OWNED.match(str(name))
            if owned and not Path(f"/proc/{owned.group(1)}").exists():
                self.drop(str(name))

    def _ensure_template(self) -> str:
        with self._lock:
            if self._template is None:
                from engine.store import open_database

                self._drop_orphans()
                name = self._new_name("tpl_")
                self._execute(f"CREATE DATABASE {_quoted(name)}")
                try:
                    open_database(self.url(name), upgrade=True).dispose()
                except BaseException:
                    self.drop(name)
                    raise
                self._template = name
            return self._template

    def create(self) -> str:
        """The name of a new database, a copy of the migrated template."""
        name = self._new_name()
        self._execute(f"CREATE DATABASE {_quoted(name)} TEMPLATE {_quoted(self._ensure_template())}")
        return name

    def create_empty(self) -> str:
        """The name of a new database with nothing in it (what replicas meet on a first start)."""
        name = self._new_name()
        self._execute(f"CREATE DATABASE {_quoted(name)}")
        return name

    def drop(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")

    def close(self) -> None:
        """Drop the template (at the end of the session); a later `create()` makes a new one."""
        with self._lock:
            if self._template is not None:
                self.drop(self._template)
                self._template = None


#: The server the tests use (`SUTURE_TEST_PG`, trust auth); CREATE and DROP DATABASE run from here.
ADMIN_URL = os.environ.get("SUTURE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
#: The session's databases, one set here: tests/conftest.py is imported both as `conftest` (by
#: pytest) and as `tests.conftest` (by test modules), so a set made there would be made twice.
DATABASES = TemplateDatabases(ADMIN_URL)
