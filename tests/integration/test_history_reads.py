"""`suture stats --json` over a history built through the real store, on SQLite and PostgreSQL: alerts go
through intake's own classification and commit, runs are claimed and finished by the store, people
acknowledge, note and resolve by hand; then every time is pinned to a known value (`UPDATE`), so the
numbers the CLI prints are known exactly."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from engine.analytics.effectiveness import DEFAULT_WINDOWS, windows
from engine.analytics.stats import stats_of, summarize
from engine.catalog.loader import load_catalog
from engine.intake.classify import CatalogView, Intake
from engine.models import UNCLASSIFIED, Alert, AlertStatus, Code, CodeVersion, PlaybookVersion, RunStatus
from engine.records import Receipt
from engine.store import Store
from engine.store.db import Database
from engine.store.history import History, Summary
from engine.store.tables import (
    alerts,
    audit_log,
    codes,
    events,
    incidents,
    playbook_versions,
    runs,
    step_results,
)
from engine.store.tallies import windows_key
from tests.conftest import TEST_CATALOG, run_cli, write_config

VIEW = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
DISK = "NodeFilesystemAlmostOutOfSpace"
#: Four days back, on the hour: the window starts here and every time below is pinned from it.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def alert(name: str, instance: str, fingerprint: str, status: str = "firing", **labels: str) -> Alert:
    return Alert.model_validate(
        {
            "source": "alertmanager",
            "name": name,
            "fingerprint": fingerprint,
            "status": AlertStatus(status),
            "labels": {"alertname": name, "instance": f"{instance}:9100", **labels},
            "starts_at": T0,
        }
    )


def send(store: Store, *alerts: Alert) -> Receipt:
    intake = Intake(store, VIEW)
    [receipt] = intake.commit([intake.prepare("alertmanager", "{}", list(alerts))])
    assert isinstance(receipt, Receipt), receipt
    return receipt


def pin(db: Database, incident_id: int, opened: timedelta, due: timedelta | None, **times: timedelta) -> None:
    values: dict[str, Any] = {"opened_at": T0 + opened, "due_at": T0 + opened + due if due else None}
    values.update({name: T0 + at for name, at in times.items()})
    with db.write() as conn:
        conn.execute(update(incidents).where(incidents.c.id == incident_id).values(**values))


def finish(store: Store, incident_id: int, status: RunStatus, started: timedelta, took: timedelta) -> int:
    run = store.claim_run("worker-1")
    assert run is not None and run.incident_id == incident_id
    store.finish_run(run.id, status, None if status is RunStatus.succeeded else "exit 1", remediated=False)
    with store.db.write() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.id == run.id)
            .values(started_at=T0 + started, finished_at=T0 + started + took)
        )
    return run.id


def build(store: Store) -> dict[str, int]:
    """The history; returns the incident ids by name."""
    db = store.db
    fp = {name: uuid.uuid4().hex[:16] for name in ("fixed", "manual", "acked", "approval", "web1", "web2")}
    [fixed] = send(store, alert(DISK, "db-1", fp["fixed"], mountpoint="/")).opened
    finish(store, fixed, RunStatus.succeeded, 1 * M, 1 * M)
    assert send(store, alert(DISK, "db-1", fp["fixed"], "resolved", mountpoint="/")).resolved == [fixed]
    pin(db, fixed, 0 * M, 24 * H, resolved_at=10 * M)  # resolved 8 min after its run: effective

    [manual] = send(store, alert(DISK, "db-2", fp["manual"], mountpoint="/var")).opened
    finish(store, manual, RunStatus.failed, H + M, M)
    store.add_note(manual, "alice", "cleaned /var by hand")
    store.resolve_by_hand(manual, "alice")
    pin(db, manual, H, 24 * H, resolved_at=H + 30 * M)

    [acked] = send(store, alert(DISK, "db-1", fp["acked"], mountpoint="/")).opened  # its run stays queued
    store.acknowledge(acked, "bob")
    pin(db, acked, 2 * D, 24 * H, acknowledged_at=2 * D + 15 * M)  # due at T0 + 3 d: overdue now

    [approval] = send(store, alert("NeedsApproval", "app-1", fp["approval"])).opened
    pin(db, approval, D, 7 * D)

    mystery = {"job": "node", "env": "prod"}
    opened = send(
        store,
        alert("MysteryAlert", "web-1", fp["web1"], **mystery, zone="a"),
        alert("MysteryAlert", "web-2", fp["web2"], **mystery, zone="b"),
    ).opened
    for incident_id in opened:
        pin(db, incident_id, D + H, 7 * D)
    # A code version loaded before the window: not a change of this period.
    with db.write() as conn:
        conn.execute(update(codes).values(loaded_at=T0 - D))
    return {"fixed": fixed, "manual": manual, "acked": acked, "approval": approval, "web1": opened[0]}


def test_stats_json_gives_the_contracts_numbers_exactly(db: Database, db_url: str, tmp_path: Path) -> None:
    store = Store(db)
    ids = build(store)
    config = write_config(tmp_path / "site", db_url)

    stats = run_cli("stats", "--since", T0.isoformat(), "--json", config=config)

    assert stats["since"] == T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stats["incidents"] == {"opened": 6, "resolved": 2, "open": 4, "overdue": 1}
    assert stats["auto_resolution_rate"] == 0.5
    unclassified_title = store.incident(ids["web1"]).title
    assert stats["by_code"] == [
        {
            "code": "DISK-001",
            "title": "Filesystem almost full",
            "severity": "high",
            "opened": 3,
            "resolved": 2,
            "open": 1,
            "mttr_seconds": 1200.0,  # TTRs 600 s and 1800 s
            "median_ttr_seconds": 1200.0,
            "p90_ttr_seconds": 1680.0,
            "mtta_seconds": 900.0,
            "auto_resolved": 1,
            "sla_breached": 1,
        },
        {
            "code": "UNCLASSIFIED",
            "title": unclassified_title,
            "severity": "medium",
            "opened": 2,
            "resolved": 0,
            "open": 2,
            "mttr_seconds": None,
            "median_ttr_seconds": None,
            "p90_ttr_seconds": None,
            "mtta_seconds": None,
            "auto_resolved": 0,
            "sla_breached": 0,
        },
        {
            "code": "APPR-001",
            "title": "Needs approval",
            "severity": "medium",
            "opened": 1,
            "resolved": 0,
            "open": 1,
            "mttr_seconds": None,
            "median_ttr_seconds": None,
            "p90_ttr_seconds": None,
            "mtta_seconds": None,
            "auto_resolved": 0,
            "sla_breached": 0,
        },
    ]
    assert stats["sla"] == [
        {"severity": "critical", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
        {"severity": "high", "opened": 3, "resolved_in_time": 2, "breached": 1, "open_overdue": 1},
        {"severity": "medium", "opened": 3, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
        {"severity": "low", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
    ]
    # The acknowledged incident's run is still queued and the approval's awaits a person: not started.
    assert stats["playbooks"] == [
        {
            "playbook": "noop",
            "version": 1,
            "runs": 2,
            "succeeded": 1,
            "failed": 1,
            "effective": 1,
            "effectiveness": 0.5,
            "median_duration_seconds": 60.0,
        }
    ]
    assert stats["recurring"] == [{"code": "DISK-001", "target": "db-1", "incidents": 2}]
    assert stats["unclassified"] == [
        {
            "alertname": "MysteryAlert",
            "source": "alertmanager",
            "alerts": 2,
            "targets": 2,
            "suggested_match": {"env": "prod", "job": "node"},
        }
    ]


def test_a_window_after_the_history_is_empty_and_an_earlier_one_sees_the_first_day(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    build(Store(db))
    config = write_config(tmp_path / "site", db_url)

    later = run_cli("stats", "--since", "1h", "--json", config=config)
    first_day = History(db).window(T0, T0 + D)

    assert later["incidents"] == {"opened": 0, "resolved": 0, "open": 0, "overdue": 0}
    assert later["auto_resolution_rate"] is None
    assert sorted(i.target for i in first_day.incidents) == ["db-1", "db-2"]
    assert [(r.status, r.started_at) for r in first_day.runs] == [
        ("succeeded", T0 + M),
        ("failed", T0 + H + M),
    ]
    assert [i.noted for i in first_day.incidents] == [False, True]


def test_report_reads_notes_approvals_open_incidents_and_catalog_versions(db: Database) -> None:
    store = Store(db)
    ids = build(store)
    history = History(db)
    now = datetime.now(UTC)

    open_ones, their_runs = history.open_incidents()
    [waiting] = history.awaiting_approval()
    [note] = history.notes(T0 - D, now + M)

    assert [i.id for i in open_ones] == [ids["approval"], ids["web1"], ids["web1"] + 1, ids["acked"]]
    assert [(r.incident_id, r.status) for r in their_runs] == [
        (ids["acked"], "queued"),
        (ids["approval"], "awaiting_approval"),
    ]
    assert (waiting.code, waiting.target, waiting.run.status) == ("APPR-001", "app-1", "awaiting_approval")
    assert (note.by, note.text, note.incident_id, note.code) == (
        "alice",
        "cleaned /var by hand",
        ids["manual"],
        "DISK-001",
    )


def test_catalog_changes_are_the_versions_first_loaded_in_the_window_with_the_one_before(
    db: Database,
) -> None:
    store = Store(db)
    catalog = VIEW.catalog
    playbooks = [
        PlaybookVersion(e.playbook.name, e.playbook.version, e.sha256, e.body)
        for e in catalog.playbooks.values()
    ]
    first = [
        CodeVersion(e.code.code, e.sha256, {"code": e.code.code, "title": e.code.title})
        for e in catalog.codes
    ]
    store.sync_catalog(playbooks, first)
    with db.write() as conn:
        conn.execute(update(codes).values(loaded_at=T0 - D))
        conn.execute(update(playbook_versions).values(loaded_at=T0 - D))
    changed = CodeVersion("DISK-001", "f" * 64, {"code": "DISK-001", "title": "Disk filling up"})
    store.sync_catalog(playbooks, [changed])
    now = datetime.now(UTC)

    [change] = History(db).catalog_changes(T0, now + M)
    before = History(db).catalog_changes(T0 - 2 * D, T0)

    assert (change.kind, change.name, change.version, change.sha256) == ("code", "DISK-001", 2, "f" * 64)
    assert change.body == {"code": "DISK-001", "title": "Disk filling up"}
    assert change.previous_body == {"code": "DISK-001", "title": "Filesystem almost full"}
    assert sorted((c.kind, c.name, c.version, c.previous_body is None) for c in before) == sorted(
        [("code", e.code.code, 1, True) for e in catalog.codes]
        + [("playbook", name, version, True) for name, version in catalog.playbooks]
    )


# ------------------------------------------- the SQL count against the row-by-row reference
#
# A history written straight into the tables (fixed times, every edge of the effective-run
# definition), counted twice: in SQL (History.summary, what read_stats uses) and row by row in
# Python (engine.analytics.stats.summarize over History.window). Both must agree, on both databases,
# and say what the definitions say.

W0 = datetime(2026, 11, 2, tzinfo=UTC)  # the window: [W0, W0 + 10 days)
UNTIL = W0 + 10 * D
S, US = timedelta(seconds=1), timedelta(microseconds=1)
SQL_CODES = {
    "DISK-001": Code.model_validate(
        {"code": "DISK-001", "title": "Filesystem almost full", "severity": "high", "match": {}}
    ),
    "APPR-001": Code.model_validate(
        {
            "code": "APPR-001",
            "title": "Needs approval",
            "severity": "medium",
            "match": {},
            "policy": {"effective_within": "1h", "recurrence_window": "1h"},
        }
    ),
}


class Rows:
    """Inserts incidents, runs, verify steps, notes and alerts with known values."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with db.write() as conn:
            self.event = conn.execute(
                insert(events)
                .values(source="alertmanager", received_at=W0, body="{}", alert_count=1)
                .returning(events.c.id)
            ).scalar_one()

    def incident(
        self,
        at: datetime,
        target: str,
        code: str = "DISK-001",
        resolved: timedelta | None = 12 * M,
        resolution: str = "alert_resolved",
        acked: timedelta | None = None,
        title: str = "",
    ) -> int:
        severity = {"DISK-001": "high", "APPR-001": "medium", "GONE-001": "low"}.get(code, "low")
        due = {"high": 24 * H, "medium": 7 * D}.get(severity)
        with self.db.write() as conn:
            return int(
                conn.execute(
                    insert(incidents)
                    .values(
                        code=code,
                        title=title or f"{code} on {target}",
                        status="open" if resolved is None else "resolved",
                        severity=severity,
                        target=target,
                        source="alertmanager",
                        fingerprint=uuid.uuid4().hex,
                        alertname="A",
                        labels={},
                        annotations={},
                        occurrences=1,
                        opened_at=at,
                        last_seen=at,
                        due_at=at + due if due else None,
                        resolved_at=at + resolved if resolved is not None else None,
                        resolution=resolution if resolved is not None else None,
                        acknowledged_at=at + acked if acked is not None else None,
                        acknowledged_by="alice" if acked is not None else None,
                    )
                    .returning(incidents.c.id)
                ).scalar_one()
            )

    def run(
        self,
        incident_id: int,
        at: datetime,
        status: str = "succeeded",
        started: timedelta | None = M,
        took: timedelta | None = M + 1_234 * US,
        playbook: str = "disk-cleanup",
        version: int = 1,
        dry_run: bool = False,
    ) -> int:
        start = at + started if started is not None else None
        with self.db.write() as conn:
            return int(
                conn.execute(
                    insert(runs)
                    .values(
                        incident_id=incident_id,
                        playbook=playbook,
                        playbook_version=version,
                        status=status,
                        trigger="auto",
                        dry_run=dry_run,
                        queued_at=at,
                        started_at=start,
                        finished_at=start + took if start is not None and took is not None else None,
                        context={},
                    )
                    .returning(runs.c.id)
                ).scalar_one()
            )

    def verify(self, run_id: int, seq: int, name: str, status: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                insert(step_results).values(
                    run_id=run_id,
                    seq=seq,
                    name=name,
                    phase="verify",
                    action="http",
                    status=status,
                    params={},
                    stdout="",
                    stderr="",
                    started_at=W0,
                    duration_ms=5,
                    attempt=1,
                )
            )

    def note(self, incident_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=W0, actor="bob", kind="note", incident_id=incident_id, message="looked at it"
                )
            )

    def alert(self, incident_id: int, name: str, code: str = UNCLASSIFIED, **labels: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                insert(alerts).values(
                    event_id=self.event,
                    source="alertmanager",
                    fingerprint=uuid.uuid4().hex,
                    name=name,
                    status="firing",
                    labels={"alertname": name, **labels},
                    annotations={},
                    received_at=W0,
                    code=code,
                    incident_id=incident_id,
                )
            )


def edge_history(db: Database) -> dict[str, int]:
    """Every case of the definitions, the runs named by what the definitions make of them."""
    rows, named = Rows(db), {}

    def fixed(name: str, at: datetime, target: str, **changes: Any) -> int:
        """An incident resolved 12 min after opening, with a run from +1m to +2m."""
        run_changes = {k[4:]: changes.pop(k) for k in list(changes) if k.startswith("run_")}
        incident_id = rows.incident(at, target, **changes)
        named[name] = rows.run(incident_id, at, **run_changes)
        return incident_id

    def at(hours: float) -> datetime:
        return W0 + hours * H + 654_321 * US  # microseconds: both counts must keep them

    stray = fixed("effective", at(1), "db-1")
    rows.alert(stray, "Stray", zone="a")  # an unclassified alert on a classified incident: counted
    fixed("manual", at(2), "db-2", resolution="manual")
    fixed("recurred", at(3), "db-3")
    fixed("after recurrence", at(3) + 12 * M + 24 * H, "db-3")  # opened exactly 24h after: a recurrence
    fixed("not recurred", at(4), "db-4")
    again = rows.incident(at(4) + 12 * M + 24 * H + S, "db-4", resolved=None)  # a second later: not one
    named["failed"] = rows.run(again, at(4) + 12 * M + 24 * H + S, status="failed")
    fixed("retried verify", at(5), "db-5")
    rows.verify(named["retried verify"], 3, "disk below 90%", "failed")
    rows.verify(named["retried verify"], 4, "disk below 90%", "succeeded")
    rows.verify(named["retried verify"], 5, "port open", "skipped")
    fixed("failed verify", at(6), "db-6")
    rows.verify(named["failed verify"], 3, "disk below 90%", "succeeded")
    rows.verify(named["failed verify"], 4, "port open", "failed")
    dry = fixed("failed beside a dry run", at(7), "db-7", run_status="failed")
    named["dry"] = rows.run(dry, at(7), dry_run=True)
    fixed("acknowledged", at(8), "db-8", acked=5 * M)
    noted = fixed("noted", at(9), "db-9")
    rows.note(noted)
    twice = fixed("first of two", at(10), "db-10")
    named["second of two"] = rows.run(twice, at(10), version=2, started=2 * M)
    fixed("resolved before it started", at(11), "db-11", resolved=30 * S)
    cancelled = fixed("cancelled, verify failed", at(12), "db-12", run_status="cancelled")
    rows.verify(named["cancelled, verify failed"], 2, "disk below 90%", "failed")
    fixed("never started", at(13), "db-13", run_started=None, run_status="skipped")
    del cancelled
    # APPR-001: effective_within 1h, recurrence_window 1h.
    fixed("within its hour", at(24), "app-1", code="APPR-001", resolved=50 * M, run_playbook="approve")
    fixed(
        "recurrence after its hour", at(25), "app-2", code="APPR-001", resolved=50 * M, run_playbook="approve"
    )
    rows.incident(at(25) + 50 * M + 90 * M, "app-2", code="APPR-001", resolved=None)
    fixed(
        "resolved too late for its hour",
        at(26),
        "app-3",
        code="APPR-001",
        resolved=63 * M,
        run_playbook="approve",
    )
    # A code no longer in the catalog: title and severity from its newest incident.
    rows.incident(at(30), "srv-1", code="GONE-001", title="Gone, older")
    rows.incident(at(48), "srv-1", code="GONE-001", title="Gone, newest")
    # Unclassified incidents and their alerts.
    web1 = rows.incident(at(72), "web-1", code=UNCLASSIFIED, resolved=None)
    rows.alert(web1, "Weird", job="node", zone="a")
    rows.alert(web1, "Weird", job="node", zone="a")
    web2 = rows.incident(at(73), "web-2", code=UNCLASSIFIED, resolved=None)
    rows.alert(web2, "Weird", job="node", zone="b")
    rows.alert(web2, "Weird", code="DISK-001", job="node")  # classified: not counted
    # Resolved after the window ends; the next incident opens after the window too.
    late = UNTIL - 2 * H
    fixed("recurred after the window", late, "db-20", resolved=2 * D, run_started=2 * D - 3 * M)
    rows.incident(late + 2 * D + 2 * H, "db-20", resolved=None)
    # Before and after the window: not counted, but an opening after it is a recurrence.
    rows.incident(W0 - D, "db-1")
    rows.incident(W0, "db-30", resolved=None)  # at its start: counted
    rows.incident(W0, "db-30", resolved=None)
    rows.incident(UNTIL, "db-31", resolved=None)  # at its end: not counted
    rows.incident(UNTIL, "db-31", resolved=None)
    fixed("recurred just after the window", UNTIL - H, "db-21")
    rows.incident(UNTIL + H, "db-21", resolved=None)
    return named


def counted_both_ways(db: Database, since: datetime, until: datetime) -> tuple[Summary, Summary]:
    history = History(db)
    policies = {name: code.policy for name, code in SQL_CODES.items()}
    in_sql = history.summary(
        since, until, until, windows(policies), DEFAULT_WINDOWS, known=SQL_CODES.keys(), recurring_limit=10
    )
    reach = max(w.recurrence for w in [*windows(policies).values(), DEFAULT_WINDOWS])
    by_rows = summarize(history.window(since, until, reach), SQL_CODES, until)
    return in_sql, by_rows


def canonical(summary: Summary) -> Summary:
    """Lists in one order: SQL returns groups and collected values in no particular one."""
    return dataclasses.replace(
        summary,
        incidents=sorted(
            (
                dataclasses.replace(t, ttr_us=sorted(t.ttr_us), tta_us=sorted(t.tta_us))
                for t in summary.incidents
            ),
            key=lambda t: (t.code, t.severity),
        ),
        runs=sorted(
            (
                dataclasses.replace(
                    t, durations_us=sorted(t.durations_us), auto_resolved=sorted(t.auto_resolved)
                )
                for t in summary.runs
            ),
            key=lambda t: (t.playbook, t.version, t.code),
        ),
        unclassified=sorted(summary.unclassified, key=lambda g: (g.name, g.source, g.target, str(g.labels))),
    )


def test_the_sql_count_agrees_with_the_row_by_row_one_and_with_the_definitions(db: Database) -> None:
    edge_history(db)

    in_sql, by_rows = counted_both_ways(db, W0, UNTIL)

    assert canonical(in_sql) == canonical(by_rows)
    stats = stats_of(in_sql, SQL_CODES)
    assert stats == stats_of(by_rows, SQL_CODES)
    playbooks = {
        (p.playbook, p.version): (p.runs, p.succeeded, p.failed, p.effective) for p in stats.playbooks
    }
    # disk-cleanup@1 started 16 runs (not the dry run, not the one never started): failed are the
    # failed one, the one beside the dry run, the failed verification and the cancelled one;
    # effective: effective, not recurred, after recurrence, retried verify, acknowledged, noted,
    # first of two.
    assert playbooks == {
        ("disk-cleanup", 1): (16, 12, 4, 7),
        ("disk-cleanup", 2): (1, 1, 0, 1),
        ("approve", 1): (3, 3, 0, 2),
    }
    by_code = {c.code: c for c in stats.by_code}
    # Auto-resolved: effective, not recurred, after recurrence, retried verify, first of two (once).
    assert (by_code["DISK-001"].auto_resolved, by_code["APPR-001"].auto_resolved) == (5, 2)
    assert (by_code["GONE-001"].title, by_code["GONE-001"].severity) == ("Gone, newest", "low")
    assert [(r.code, r.target, r.incidents) for r in stats.recurring] == [
        ("APPR-001", "app-2", 2),
        ("DISK-001", "db-3", 2),
        ("DISK-001", "db-30", 2),
        ("DISK-001", "db-4", 2),
        ("GONE-001", "srv-1", 2),
    ]
    assert [(u.alertname, u.alerts, u.targets, u.suggested_match) for u in stats.unclassified] == [
        ("Weird", 3, 2, {"job": "node"}),
        ("Stray", 1, 1, {"zone": "a"}),
    ]


def test_an_empty_window_counts_nothing_on_both_paths(db: Database) -> None:
    edge_history(db)

    in_sql, by_rows = counted_both_ways(db, W0 - 30 * D, W0 - 20 * D)

    assert canonical(in_sql) == canonical(by_rows)
    stats = stats_of(in_sql, SQL_CODES)
    assert (stats.incidents.opened, stats.by_code, stats.playbooks, stats.recurring) == (0, [], [], [])
    assert stats.auto_resolution_rate is None


def test_the_windows_hold_to_the_microsecond(db: Database) -> None:
    """Resolved exactly `effective_within` after the run finished counts, a microsecond later not; a
    new incident exactly `recurrence_window` after the resolution is a recurrence, a microsecond later
    not: what SQLite's millisecond julian days cannot tell, the stored microseconds do."""
    rows = Rows(db)
    for n, resolved in enumerate((32 * M, 32 * M + US, 32 * M - US)):
        opened = W0 + n * H + 999_600 * US  # SQLite's julian day rounds this up to the next second
        incident_id = rows.incident(opened, f"db-{n}", resolved=resolved)
        rows.run(incident_id, opened, took=M, playbook=f"in-time-{n}")  # finished at +2m
    for n, gap in enumerate((24 * H, 24 * H + US, 24 * H - US)):
        opened = W0 + D + n * H + 123457 * US
        incident_id = rows.incident(opened, f"app-{n}")
        rows.run(incident_id, opened, playbook=f"recurrence-{n}")
        rows.incident(opened + 12 * M + gap, f"app-{n}", resolved=None)

    in_sql, by_rows = counted_both_ways(db, W0, UNTIL)

    effective = {t.playbook: t.effective for t in in_sql.runs}
    assert effective == {t.playbook: t.effective for t in by_rows.runs}
    assert effective == {
        "in-time-0": 1,
        "in-time-1": 0,
        "in-time-2": 1,
        "recurrence-0": 0,
        "recurrence-1": 1,
        "recurrence-2": 0,
    }


# ------------------------------------------------------------------ counted hours (engine.store.buckets)


def _count_hours(db: Database, at: datetime) -> int:
    """Count the hours from W0 on, as the daemon's job does at `at`."""
    policies = {name: code.policy for name, code in SQL_CODES.items()}
    return History(db).buckets.refresh(at, windows(policies), DEFAULT_WINDOWS, horizon=at - W0)


def _kept_hours(db: Database) -> set[datetime]:
    policies = {name: code.policy for name, code in SQL_CODES.items()}
    key, reach = (
        windows_key(windows(policies), DEFAULT_WINDOWS),
        max(w.recurrence for w in [*windows(policies).values(), DEFAULT_WINDOWS]),
    )
    history = History(db)
    with db.read() as conn:
        return {start for start, hours in history.buckets.usable(conn, W0, UNTIL, key, reach) if hours == 1}


def test_counted_hours_give_the_same_numbers_as_counting_the_window(db: Database) -> None:
    edge_history(db)
    counted_at = UNTIL + 3 * D

    assert _count_hours(db, counted_at) > 0
    in_sql, by_rows = counted_both_ways(db, W0, UNTIL)

    assert _kept_hours(db), "the window is read from counted hours"
    assert canonical(in_sql) == canonical(by_rows)
    # An hour never counts twice: counting again keeps every hour and recounts none.
    assert _count_hours(db, counted_at + 10 * M) == 0
    assert canonical(counted_both_ways(db, W0, UNTIL)[0]) == canonical(by_rows)


def test_a_note_a_run_or_a_recurrence_after_the_count_is_counted(db: Database) -> None:
    """What changes a settled incident after its hour was counted: the hour is read afresh until
    it is counted again, and then holds the change."""
    rows = Rows(db)
    first = rows.incident(W0 + 2 * H, "db-1")
    rows.run(first, W0 + 2 * H)
    second = rows.incident(W0 + 5 * H, "db-2")
    rows.run(second, W0 + 5 * H)
    counted_at = W0 + 2 * D
    third = rows.incident(counted_at - 3 * H, "db-3")
    rows.run(third, counted_at - 3 * H)
    _count_hours(db, counted_at)
    before = counted_both_ways(db, W0, UNTIL)
    assert canonical(before[0]) == canonical(before[1])
    hours = _kept_hours(db)
    assert {W0 + 2 * H, W0 + 5 * H, counted_at - 3 * H} <= hours

    later = counted_at + 5 * M
    with db.write() as conn:
        conn.execute(
            insert(audit_log).values(at=later, actor="bob", kind="note", incident_id=first, message="seen")
        )
    rows.run(second, later, playbook="disk-cleanup-again")
    rows.incident(later, "db-3", resolved=None)  # 2h48m after its resolution: a recurrence

    assert not {W0 + 2 * H, W0 + 5 * H, counted_at - 3 * H} & _kept_hours(db)
    in_sql, by_rows = counted_both_ways(db, W0, UNTIL)
    assert canonical(in_sql) == canonical(by_rows)
    assert canonical(in_sql) != canonical(before[0])

    _count_hours(db, later + M)
    assert {W0 + 2 * H, W0 + 5 * H, counted_at - 3 * H} <= _kept_hours(db)
    assert canonical(counted_both_ways(db, W0, UNTIL)[0]) == canonical(by_rows)
