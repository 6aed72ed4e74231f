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
