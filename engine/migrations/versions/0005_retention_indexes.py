"""index what retention prunes: event bodies and step output not emptied yet

Retention empties the raw body of events older than `retention.events` and the output of step
results older than `retention.step_output`, a bounded batch per transaction. Each batch finds
its rows through a partial index holding only rows that still have something to prune: it is
appended to at the right edge as events and steps arrive (time only grows), and a pruned row
leaves it, so a batch never walks the rows earlier batches emptied.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration must keep building the schema of its own day.
_EVENTS = "ix_events_unpruned"
_EVENTS_WHERE = "body <> ''"
_STEPS = "ix_step_results_with_output"
_STEPS_WHERE = "stdout <> '' OR stderr <> ''"


def upgrade() -> None:
    op.create_index(
        _EVENTS,
        "events",
        ["received_at"],
        sqlite_where=sa.text(_EVENTS_WHERE),
        postgresql_where=sa.text(_EVENTS_WHERE),
    )
    op.create_index(
        _STEPS,
        "step_results",
        ["started_at"],
        sqlite_where=sa.text(_STEPS_WHERE),
        postgresql_where=sa.text(_STEPS_WHERE),
    )


def downgrade() -> None:
    op.drop_index(_STEPS, table_name="step_results")
    op.drop_index(_EVENTS, table_name="events")
