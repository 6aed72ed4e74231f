"""index resolved alerts that found no incident

A resolved alert may arrive before its firing one. It opens nothing, so no incident row
records that its instance (fingerprint, startsAt) is over, and the late firing used to open
an incident and queue a run. The stored resolved alert is that record; this partial index
finds it per fingerprint. Only such alerts are written to it: the intake's other alerts
cost it nothing (unlike the full alerts(fingerprint, starts_at) index that 0002 dropped).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration must keep building the schema of its own day.
_NAME = "ix_alerts_resolved_without_incident"
_WHERE = "status = 'resolved' AND incident_id IS NULL"


def upgrade() -> None:
    op.create_index(
        _NAME,
        "alerts",
        ["fingerprint", "starts_at"],
        unique=False,
        sqlite_where=sa.text(_WHERE),
        postgresql_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index(_NAME, table_name="alerts")
