"""The intake batch's dedup and resolve rules (engine/store/ingest.py) on an in-memory SQLite.

An alert instance is (fingerprint, startsAt): a late firing never reopens, a resolution closes
the open incident, a redelivery only counts. The runs are what the planner says, written as
told. The same rules against a SQLite file and PostgreSQL: tests/integration/test_dedup.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, update
from sqlalchemy.pool import StaticPool

from engine.intake.runs import BatchPlanner, RunNote
from engine.models import Alert, AlertStatus, ClassifiedAlert, Mode, Policy, RunStatus, Severity, Submission
from engine.records import Receipt
from engine.store.ingest import Applied, NewRun, RunPlanner, apply_batch, recent_runs
from engine.store.tables import alerts, audit_log, incidents, metadata, runs

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A fresh schema in memory: one connection, shared by every use."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _alert(
    start: datetime | None,
    status: str = "firing",
    *,
    fingerprint: str = "fp1",
    target: str = "db-1",
    mode: Mode = Mode.auto,
    policy: Policy | None = None,
    ends_at: datetime | None = None,
) -> ClassifiedAlert:
    alert = Alert(
        source="alertmanager",
        name="DiskFull",
        fingerprint=fingerprint,
        status=AlertStatus(status),
        labels={"alertname": "DiskFull", "instance": f"{target}:9100"},
        starts_at=start,
        ends_at=ends_at if status == "resolved" else None,
    )
    return ClassifiedAlert(
        alert, "DISK-001", "Disk full", Severity.high, target, mode, ("noop", 1), policy=policy
    )


def _apply(
    engine: Engine, *bodies: list[ClassifiedAlert], now: datetime = NOW, plan: RunPlanner | None = None
) -> Applied:
    """One batch (one transaction), one submission per body."""
    batch = [Submission("alertmanager", "{}", body) for body in bodies]
    with engine.begin() as conn:
        return apply_batch(conn, batch, now, plan or BatchPlanner({}))


def _send(engine: Engine, *bodies: list[ClassifiedAlert], now: datetime = NOW) -> list[Receipt]:
    return _apply(engine, *bodies, now=now).receipts


def _table(engine: Engine, table: Any, *columns: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        query = select(*[table.c[name] for name in columns]).order_by(table.c.id)
        return [tuple(row) for row in conn.execute(query)]


def test_a_firing_opens_one_incident_and_its_run(engine: Engine) -> None:
    """A new fingerprint opens an incident and queues the run the planner gives it."""
    [receipt] = _send(engine, [_alert(T1)])
    assert len(receipt.opened) == 1 and len(receipt.runs_queued) == 1
    assert _table(engine, incidents, "status", "occurrences") == [("open", 1)]
    assert _table(engine, runs, "status", "incident_id") == [("queued", receipt.opened[0])]


def test_a_redelivery_only_counts(engine: Engine) -> None:
    """The same firing again, in the same batch or a later one: occurrences grow, nothing opens or runs."""
    [first, again] = _send(engine, [_alert(T1)], [_alert(T1)])
    [later] = _send(engine, [_alert(T1)])
    assert again.opened == [] and later.opened == [] and later.runs_queued == []
    assert again.updated == later.updated == first.opened
    assert _table(engine, incidents, "status", "occurrences") == [("open", 3)]
    assert len(_table(engine, runs, "id")) == 1
    assert [incident for (incident,) in _table(engine, alerts, "incident_id")] == first.opened * 3


def test_a_resolution_closes_the_open_incident(engine: Engine) -> None:
    """Resolved: closed as `alert_resolved` at the source's end time, never later than now and never
    before the incident opened (here it opened at NOW, after the alert's endsAt T2), no run."""
    _send(engine, [_alert(T1)])
    [receipt] = _send(engine, [_alert(T1, "resolved", ends_at=T2)])
    assert len(receipt.resolved) == 1 and receipt.runs_queued == []
    assert T2 < NOW
    assert _table(engine, incidents, "status", "resolution", "resolved_at") == [
        ("resolved", "alert_resolved", NOW)
    ]
    [receipt] = _send(engine, [_alert(T2, "resolved", fingerprint="fp2", ends_at=NOW + timedelta(hours=1))])
    assert receipt.resolved == [] and len(_table(engine, runs, "id")) == 1  # nothing to close, nothing opened


def test_a_resolution_in_the_future_closes_at_now(engine: Engine) -> None:
    """An end time after the commit is not believed: the incident closes at the batch's time."""
    _send(engine, [_alert(T1)])
    _send(engine, [_alert(T1, "resolved", ends_at=NOW + timedelta(hours=1))])
    assert _table(engine, incidents, "resolved_at") == [(NOW,)]


def test_a_late_firing_never_reopens(engine: Engine) -> None:
    """After the resolution, the same instance's firing (or an older one) counts on the closed incident."""
    [opened] = _send(engine, [_alert(T1)])
    _send(engine, [_alert(T1, "resolved", ends_at=T2)])
    [late] = _send(engine, [_alert(T1)])
    [older] = _send(engine, [_alert(T0)])
    assert late.opened == older.opened == [] and late.updated == older.updated == opened.opened
    assert _table(engine, incidents, "status", "occurrences") == [("resolved", 3)]
    assert len(_table(engine, runs, "id")) == 1


def test_a_firing_whose_resolution_came_first_opens_nothing(engine: Engine) -> None:
    """Resolved before it was seen firing: the stored resolution marks the instance over."""
    [resolved] = _send(engine, [_alert(T1, "resolved", ends_at=T2)])
    [late] = _send(engine, [_alert(T1)])
    assert resolved.opened == late.opened == [] and late.updated == []
    assert _table(engine, incidents, "id") == []
    assert _table(engine, alerts, "status", "incident_id") == [("resolved", None), ("firing", None)]


def test_a_newer_instance_after_the_resolution_opens_again(engine: Engine) -> None:
    """A firing that started after every instance seen so far is a new occurrence: new incident, new run."""
    _send(engine, [_alert(T1)], [_alert(T1, "resolved", ends_at=T1)])
    [receipt] = _send(engine, [_alert(T2)])
    assert len(receipt.opened) == 1 and len(receipt.runs_queued) == 1
    assert _table(engine, incidents, "status") == [("resolved",), ("open",)]


def test_resolved_and_firing_again_in_one_batch(engine: Engine) -> None:
    """Fire, resolve and a newer firing committed together: two incidents, the first closed."""
    _send(engine, [_alert(T1)], [_alert(T1, "resolved", ends_at=T1)], [_alert(T2)])
    assert _table(engine, incidents, "status", "occurrences") == [("resolved", 1), ("open", 1)]


def test_a_manual_code_opens_its_incident_without_a_run(engine: Engine) -> None:
    """`mode: manual` (or no playbook): the incident is stored, the planner gives it no run."""
    [receipt] = _send(engine, [_alert(T1, mode=Mode.manual)])
    assert len(receipt.opened) == 1 and receipt.runs_queued == []
    assert _table(engine, runs, "id") == [] and _table(engine, audit_log, "id") == []


def test_runs_in_one_batch_meet_the_cooldown_of_the_first(engine: Engine) -> None:
    """Two incidents of one code and target in one commit: the second run is skipped with the gate's
    reason, finished at once, and its timeline entry says why; another target runs."""
    policy = Policy(cooldown=timedelta(minutes=30))
    bodies = (
        [_alert(T1, policy=policy)],
        [_alert(T1, fingerprint="fp2", policy=policy)],
        [_alert(T1, fingerprint="fp3", target="db-2", policy=policy)],
    )
    first, second, other = _send(engine, *bodies)
    assert (len(first.runs_queued), second.runs_queued, len(other.runs_queued)) == (1, [], 1)
    skipped = "policy: cooldown 30m (last run 0s ago)"
    assert _table(engine, runs, "status", "error", "finished_at") == [
        ("queued", None, None),
        ("skipped", skipped, NOW),
        ("queued", None, None),
    ]
    assert _table(engine, audit_log, "kind", "message") == [
        ("run_queued", "run 1 of noop@1"),
        ("run_skipped", f"run 2 not started: {skipped}"),
        ("run_queued", "run 3 of noop@1"),
    ]


def test_the_store_writes_the_run_it_is_told(engine: Engine) -> None:
    """Whatever the planner decides is written as given, with the ids filled in for the hooks."""
    told: list[NewRun] = []

    def plan(item: ClassifiedAlert, now: datetime) -> NewRun:
        run = NewRun(
            playbook="other",
            version=7,
            status=RunStatus.awaiting_approval,
            trigger="approval",
            dry_run=True,
            context={"incident": {"id": None}},
            note=RunNote("run_awaiting_approval", "of other@7"),
            reason="mode: approval",
        )
        told.append(run)
        return run

    applied = _apply(engine, [_alert(T1)], plan=plan)
    [receipt] = applied.receipts
    assert applied.runs == told and told[0].id == receipt.runs_queued[0]
    assert told[0].incident_id == receipt.opened[0] and told[0].context == {
        "incident": {"id": receipt.opened[0]}
    }
    assert _table(engine, runs, "playbook", "playbook_version", "status", "trigger", "dry_run") == [
        ("other", 7, "awaiting_approval", "approval", True)
    ]
    assert [(o.incident_id, o.code, o.severity, o.target) for o in applied.opened()] == [
        (receipt.opened[0], "DISK-001", "high", "db-1")
    ]


def test_the_history_a_claimed_run_rechecks_against(engine: Engine) -> None:
    """Skipped runs never count; for a claimed run, neither it nor later runs that have not started."""
    times = [NOW - timedelta(minutes=m) for m in (40, 30, 20, 10)]
    for index, now in enumerate(times):
        _send(engine, [_alert(T1, fingerprint=f"h{index}")], now=now)
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == 1).values(status="skipped"))
        conn.execute(update(runs).where(runs.c.id == 4).values(status="running", started_at=NOW))
    since = NOW - timedelta(hours=1)
    with engine.connect() as conn:
        assert recent_runs(conn, ["DISK-001"], since) == {("DISK-001", "db-1"): times[1:]}
        assert recent_runs(conn, ["DISK-001"], since, claimed=2) == {("DISK-001", "db-1"): [times[3]]}
        assert recent_runs(conn, ["DISK-001"], NOW - timedelta(minutes=15), claimed=3) == {
            ("DISK-001", "db-1"): [times[3]]
        }
        assert recent_runs(conn, ["OTHER-001"], since) == {}
