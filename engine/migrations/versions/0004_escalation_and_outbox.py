"""escalation deadlines, acknowledgement, and the notification outbox

Incidents gain `respond_by` (first-response deadline), who acknowledged them and when, and
when escalation last fired (and for which deadline). `outbox` holds events written in the
transaction of the change that caused them; `notifications` one delivery per channel.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.store.tables

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names spelled out, not imported: a migration must keep building the schema of its own day.
_TIME = engine.store.tables.UtcDateTime(timezone=True)
_UNSENT = "dispatched = false"


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("respond_by", _TIME, nullable=True))
        batch.add_column(sa.Column("acknowledged_at", _TIME, nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("escalated_at", _TIME, nullable=True))
        batch.add_column(sa.Column("escalated_for", sa.String(16), nullable=True))
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("dispatched", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name="fk_outbox_incident_id_incidents"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_outbox_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index(
        "ix_outbox_undispatched",
        "outbox",
        ["id"],
        sqlite_where=sa.text(_UNSENT),
        postgresql_where=sa.text(_UNSENT),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("claimed_at", _TIME, nullable=True),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name="fk_notifications_outbox_id_outbox"),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name="fk_notifications_incident_id_incidents"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_notifications_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index(
        "ix_notifications_outbox_id_channel", "notifications", ["outbox_id", "channel"], unique=True
    )
    op.create_index("ix_notifications_channel_status_id", "notifications", ["channel", "status", "id"])
    op.create_index("ix_notifications_status_id", "notifications", ["status", "id"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_index("ix_outbox_undispatched", table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("incidents") as batch:
        for column in ("escalated_for", "escalated_at", "acknowledged_by", "acknowledged_at", "respond_by"):
            batch.drop_column(column)
