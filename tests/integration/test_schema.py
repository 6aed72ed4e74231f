"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.store import open_database
from engine.store.tables import metadata


def test_migrations_match_the_declared_tables(db_url: str) -> None:
    db = open_database(db_url)
    try:
        db.migrate()  # not `upgrade`, which makes an empty SQLite file from these very tables
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        db.dispose()
    assert differences == []


def test_downgrade_to_the_first_revision_restores_its_indexes(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from engine.store.db import MIGRATIONS

    db = open_database(db_url, upgrade=True)
    try:
        with db.engine.connect() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
            conn.commit()
            names = {index["name"] for index in inspect(conn).get_indexes("alerts")}
        assert {"ix_alerts_fingerprint_starts_at", "ix_alerts_event_id"} <= names
    finally:
        db.dispose()


def test_every_migration_upgrades_a_store_that_holds_incidents_and_runs(db_url: str) -> None:
    """A user's store is never empty: from the first revision, with an incident and a run that
    refers to it (a foreign key a table copy must not break), up to head, keeping both rows."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from engine.store.db import MIGRATIONS

    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                text(
                    "INSERT INTO incidents (code, title, status, severity, target, source, fingerprint,"
                    " alertname, labels, annotations, occurrences, opened_at, last_seen)"
                    " VALUES ('DISK-001', 't', 'open', 'high', 'db-1', 'alertmanager', 'fp', 'a', '{}', '{}',"
                    " 1, :at, :at)"
                ),
                {"at": "2026-12-01 10:00:00.000000"},
            )
            conn.execute(
                text(
                    "INSERT INTO runs (incident_id, playbook, playbook_version, status, trigger, dry_run,"
                    " queued_at, context) VALUES ((SELECT max(id) FROM incidents), 'noop', 1, 'succeeded',"
                    " 'auto', false, :at, '{}')"
                ),
                {"at": "2026-12-01 10:00:01.000000"},
            )
            conn.commit()
        db.upgrade()
        assert db.is_current()
        with db.read() as conn:
            counts = conn.execute(
                text("SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM runs)")
            ).one()
        assert tuple(counts) == (1, 1)
    finally:
        db.dispose()


_MAKE = """
import sys
from engine.store import open_database
db = open_database(sys.argv[1], upgrade=True)
print("current" if db.is_current() else "behind", "alembic" if "alembic" in sys.modules else "no-alembic")
"""


def _sqlite_schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return sorted((kind, name, " ".join((sql or "").split())) for kind, name, sql in rows)


def test_a_new_sqlite_file_is_made_as_the_migrations_make_it(tmp_path: Path) -> None:
    """`upgrade` makes an empty SQLite file from the declared tables without alembic: the same
    tables, columns in the same order, indexes (partial ones with the same WHERE) and revision as
    the migrations leave, so later migrations upgrade it alike."""
    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    db = open_database(f"sqlite:///{migrated}")
    db.migrate()
    db.dispose()
    made = subprocess.run(
        [sys.executable, "-c", _MAKE, f"sqlite:///{created}"], capture_output=True, text=True, check=True
    )
    assert made.stdout.split() == ["current", "no-alembic"], made.stderr
    db = open_database(f"sqlite:///{created}")
    try:
        db.migrate()  # alembic finds it at head: nothing to do
    finally:
        db.dispose()
    assert _sqlite_schema(created) == _sqlite_schema(migrated)
    assert len(_sqlite_schema(created)) > 40


def test_a_sqlite_file_that_holds_anything_is_migrated_not_made(tmp_path: Path) -> None:
    path = tmp_path / "partial.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    db = open_database(f"sqlite:///{path}", upgrade=True)
    try:
        assert db.is_current()
    finally:
        db.dispose()
    names = {name for _, name, _ in _sqlite_schema(path)}
    assert {"notes", "incidents", "alembic_version"} <= names
