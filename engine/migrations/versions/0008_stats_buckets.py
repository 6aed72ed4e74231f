"""keep each past hour's and day's settled incidents counted for stats; shadow runs

A 30-day `suture stats` counted a few hundred thousand incidents, runs and steps in SQL at every
read. A past hour's settled incidents (resolved, runs final) change only through rows stamped
later, so each hour is counted once and kept (engine.store.buckets).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.tables

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = engine.store.tables.UtcDateTime(timezone=True)


def upgrade() -> None:
    # A shadow run: a version rendered beside the live one, never executed (issue 18). A plain
    # ADD COLUMN: SQLite's batch mode would rebuild `runs` and lose its partial indexes' WHERE.
    op.add_column("runs", sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "stats_buckets",
        sa.Column("starts", _TIME, nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("windows", sa.String(32), nullable=False),
        sa.Column("counted_at", _TIME, nullable=False),
        sa.Column("pending", engine.store.tables.Json, nullable=False),
        sa.Column("seen", engine.store.tables.Json, nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("starts", "hours", "windows", name=op.f("pk_stats_buckets")),
    )


def downgrade() -> None:
    op.drop_table("stats_buckets")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("shadow")
