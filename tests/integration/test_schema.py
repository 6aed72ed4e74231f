"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.store import open_database
from engine.store.tables import metadata


def test_migrations_match_the_declared_tables(db_url: str) -> None:
    db = open_database(db_url, upgrade=True)
    try:
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
