"""guard rails: silences, breakers, why a run did not happen; the (code, target, time) index

Runs gain `reason` (the gate that held back, or what cancelled it) and `not_before` (a run queued
under `policy.delay` waits for it); succeeded runs with no verdict yet (`effective` null) are
indexed apart, for the job that judges them for their breakers. Incidents gain `silenced_by` (the
silence or maintenance window that held their automation) and `flapping`. `silences` are
people's; `breakers` one row per playbook version that has failed in a row. Incidents are indexed
by (code, target, opened_at): the last incidents of one code and target (`incidents show`), the
recurrence check of stats, the storm and flapping gates all look there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-15 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.tables

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration must keep building the schema of its own day.
_TIME = engine.store.tables.UtcDateTime(timezone=True)
_JSON = engine.store.tables.Json
_UNDECIDED = "ix_runs_undecided"
_UNDECIDED_WHERE = "status = 'succeeded' AND effective IS NULL AND dry_run = false"


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it for these): a batch copy of `incidents` would drop the old
    # table under the foreign keys of every run that refers to it, and fail on a filled store.
    op.add_column("incidents", sa.Column("silenced_by", sa.Text(), nullable=True))
    op.add_column("incidents", sa.Column("flapping", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_incidents_code_target_opened_at", "incidents", ["code", "target", "opened_at"])
    op.add_column("runs", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("not_before", _TIME, nullable=True))
    op.create_index(
        _UNDECIDED,
        "runs",
        ["id"],
        sqlite_where=sa.text(_UNDECIDED_WHERE),
        postgresql_where=sa.text(_UNDECIDED_WHERE),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matchers", _JSON, nullable=False),
        sa.Column("starts_at", _TIME, nullable=False),
        sa.Column("ends_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expired_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_silences"),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])
    op.create_table(
        "breakers",
        sa.Column("playbook", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", _TIME, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reset_at", _TIME, nullable=True),
        sa.Column("reset_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("playbook", "version", name="pk_breakers"),
    )


def downgrade() -> None:
    op.drop_table("breakers")
    op.drop_index("ix_silences_ends_at", table_name="silences")
    op.drop_table("silences")
    op.drop_index(_UNDECIDED, table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("not_before")
        batch.drop_column("reason")
    op.drop_index("ix_incidents_code_target_opened_at", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("flapping")
        batch.drop_column("silenced_by")
