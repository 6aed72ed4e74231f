"""drop indexes no query reads

Every alert row paid for three indexes nothing reads: alerts by (fingerprint, startsAt) -
the incident lookup reads `incidents` - alerts by event and events by arrival time. The
first is the costly one: monitoring systems send hashed fingerprints, so each alert
dirtied a random page of it and every intake commit wrote those pages to the journal.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_alerts_fingerprint_starts_at", table_name="alerts")
    op.drop_index("ix_alerts_event_id", table_name="alerts")
    op.drop_index("ix_events_received_at", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"], unique=False)
    op.create_index("ix_alerts_event_id", "alerts", ["event_id"], unique=False)
    op.create_index("ix_alerts_fingerprint_starts_at", "alerts", ["fingerprint", "starts_at"], unique=False)
