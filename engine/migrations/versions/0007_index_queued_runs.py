"""index the queued runs apart, in id order

A worker's claim asks for the oldest due queued run; through (status, queued_at) it read and
sorted every queued run of the queue at each claim, so a storm's deep queue cost each claim the
whole queue. The queued runs are few once drained and the partial index hands the oldest first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = "ix_runs_queued"
_QUEUED_WHERE = "status = 'queued'"


def upgrade() -> None:
    op.create_index(
        _QUEUED,
        "runs",
        ["id"],
        sqlite_where=sa.text(_QUEUED_WHERE),
        postgresql_where=sa.text(_QUEUED_WHERE),
    )


def downgrade() -> None:
    op.drop_index(_QUEUED, table_name="runs")
