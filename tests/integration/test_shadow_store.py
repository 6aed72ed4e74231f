"""A shadow run's end in the store, on SQLite and PostgreSQL: a failed shadow (its version's template
error) raises no `run_failed` event for anyone to be paged for; a failed live run does."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select

from engine.models import RunStatus
from engine.store import Store
from engine.store.db import Database
from engine.store.tables import outbox, runs
from tests.support.incidents import open_incident

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def test_a_failed_shadow_run_raises_no_run_failed_event(db: Database) -> None:
    with db.write() as conn:
        incident = open_incident(conn, T0)
        made = {}
        for shadow in (False, True):
            made[shadow] = conn.execute(
                insert(runs)
                .values(
                    incident_id=incident,
                    playbook="noop",
                    playbook_version=2 if shadow else 1,
                    status="running",
                    trigger="shadow" if shadow else "auto",
                    dry_run=shadow,
                    queued_at=T0,
                    context={},
                    shadow=shadow,
                )  # fmt: skip
                .returning(runs.c.id)
            ).scalar_one()
    store = Store(db, notify={"run_failed"})

    store.finish_run(made[True], RunStatus.failed, "step 'x': undefined name", remediated=False)
    store.finish_run(made[False], RunStatus.failed, "step 'x': exit 1", remediated=False)

    with db.read() as conn:
        events = conn.execute(select(outbox.c.event, outbox.c.run_id)).all()
    assert [(event, run_id) for event, run_id in events] == [("run_failed", made[False])]
