"""Alembic environment: the connection is handed in by engine.store.db.Database.upgrade()."""

from alembic import context
from sqlalchemy import Connection, create_engine

from engine.store.tables import declare_for_postgresql, metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        declare_for_postgresql()
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite needs table copies for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic revision --autogenerate` from a shell, against SUTURE_DB_URL
    import os

    with create_engine(os.environ.get("SUTURE_DB_URL", "sqlite:///suture-dev.db")).connect() as conn:
        _run(conn)
        conn.commit()
