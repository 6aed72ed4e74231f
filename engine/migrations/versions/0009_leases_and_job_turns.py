"""leases and fencing for runs; one turn per scheduled job period across replicas

Replicas on one database: a claimed run carries its attempt number and a lease its worker renews,
and each write of that worker is conditioned on both; a scheduled job runs on the replica that
moves its row's `last_at` on.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.tables

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = engine.store.tables.UtcDateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite's batch mode would rebuild `runs` and lose its partial indexes' WHERE.
    op.add_column("runs", sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("runs", sa.Column("lease_until", _TIME, nullable=True))
    op.create_table(
        "job_turns",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("last_at", _TIME, nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_turns")),
    )


def downgrade() -> None:
    op.drop_table("job_turns")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("lease_until")
        runs.drop_column("attempt")
