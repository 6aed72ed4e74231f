"""`stats` arithmetic on a history with known answers (fixed timestamps): TTR mean/median/p90, MTTA over
acknowledged incidents only, auto-resolved, SLA per severity, effectiveness per playbook version,
recurring pairs and unclassified groups with their suggested match."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from engine.analytics.stats import build_stats, percentile, suggested_match
from engine.cli.common import dump
from engine.models import Code
from engine.store.history import IncidentFacts, RunFacts, Window
from engine.store.tallies import AlertGroup

T0 = datetime(2026, 12, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=10)
H, M, S = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)

CODES = {
    "DISK-001": Code.model_validate(
        {"code": "DISK-001", "title": "Filesystem almost full", "severity": "high", "match": {}}
    ),
    "APPR-001": Code.model_validate(
        {
            "code": "APPR-001",
            "title": "Needs approval",
            "severity": "medium",
            "match": {},
            "policy": {"effective_within": "1h"},
        }
    ),
}


def incident(
    id: int,
    opened: timedelta,
    ttr: timedelta | None,
    code: str = "DISK-001",
    target: str = "db-1",
    **changes: Any,
) -> IncidentFacts:
    opened_at = T0 + opened
    severity = {"DISK-001": "high"}.get(code, "medium")
    due = {"high": timedelta(hours=24), "medium": timedelta(days=7)}[severity]
    facts = IncidentFacts(
        id=id,
        code=code,
        title=code.title(),
        severity=severity,
        target=target,
        status="resolved" if ttr is not None else "open",
        opened_at=opened_at,
        resolved_at=opened_at + ttr if ttr is not None else None,
        resolution="alert_resolved" if ttr is not None else None,
        due_at=opened_at + due,
        respond_by=None,
        acknowledged_at=None,
        acknowledged_by=None,
        noted=False,
    )
    return replace(facts, **changes)


def run(
    id: int,
    of: IncidentFacts,
    started: timedelta | None,
    took: timedelta,
    status: str = "succeeded",
    version: int = 1,
    **changes: Any,
) -> RunFacts:
    start = of.opened_at + started if started is not None else None
    facts = RunFacts(
        id=id,
        incident_id=of.id,
        playbook="noop",
        playbook_version=version,
        status=status,
        trigger="auto",
        dry_run=False,
        queued_at=of.opened_at,
        started_at=start,
        finished_at=start + took if start is not None else None,
        error=None if status == "succeeded" else "exit 1",
    )
    return replace(facts, **changes)


def history() -> Window:
    i1 = incident(1, H, 10 * M)  # a run fixed it, nobody touched it: auto-resolved
    i2 = incident(2, 3 * 24 * H, 20 * M, acknowledged_at=T0 + 3 * 24 * H + 300 * S, acknowledged_by="alice")
    i3 = incident(3, 4 * 24 * H, 1 * H, target="db-2", resolution="manual")
    i4 = incident(4, 4 * 24 * H + 2 * H, 30 * H, target="db-2", noted=True)  # resolved after its due time
    i5 = incident(  # still open past its due time
        5, 8 * 24 * H, None, target="db-3", acknowledged_at=T0 + 8 * 24 * H + 1800 * S, acknowledged_by="bob"
    )
    i6 = incident(6, 5 * 24 * H, 40 * M, code="APPR-001", target="app-1")  # effective within its 1h
    i7 = incident(7, 6 * 24 * H, None, code="UNCLASSIFIED", target="web-1", title="Weird")
    runs = [
        run(1, i1, M, 60 * S),
        run(2, i2, 3 * M, 120 * S),
        run(3, i3, 10 * M, 30 * S, status="failed"),
        run(4, i6, 0 * M, 60 * S, version=2),
        run(5, i6, 0 * M, 10 * S, version=2, dry_run=True),  # a dry run fixes nothing: not counted
        run(6, i3, None, 0 * S, status="skipped"),  # never started: not counted
    ]
    weird = {"alertname": "Weird", "job": "node", "env": "prod"}
    unclassified = [
        AlertGroup("Weird", "alertmanager", "web-1", {**weird, "instance": "web-1:9100"}, 2),
        AlertGroup("Weird", "alertmanager", "web-2", {**weird, "instance": "web-2:9100"}, 1),
        AlertGroup("Other", "generic", "", {"alertname": "Other"}, 1),
    ]
    return Window(T0, NOW, [i1, i2, i3, i4, i5, i6, i7], runs, [], [], unclassified)


def as_json() -> Any:
    """What `suture stats --json` prints for the history."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dump(build_stats(history(), CODES, NOW))
    return orjson.loads(out.getvalue())


def test_the_top_level_counts_and_auto_resolution_rate() -> None:
    stats = as_json()
    assert (stats["since"], stats["until"]) == ("2026-12-01T00:00:00Z", "2026-12-11T00:00:00Z")
    assert stats["incidents"] == {"opened": 7, "resolved": 5, "open": 2, "overdue": 1}
    # auto-resolved: incident 1 (DISK) and 6 (APPR); 5 resolved.
    assert stats["auto_resolution_rate"] == 0.4
    assert list(stats) == [
        "since",
        "until",
        "incidents",
        "by_code",
        "sla",
        "playbooks",
        "auto_resolution_rate",
        "recurring",
        "unclassified",
    ]


def test_per_code_time_to_resolve_acknowledge_auto_resolved_and_breaches() -> None:
    disk, approval, unclassified = as_json()["by_code"]
    # TTRs 600, 1200, 3600, 108000 s: mean 28350, median 2400, p90 3600 + 0.7 * (108000 - 3600).
    assert disk == {
        "code": "DISK-001",
        "title": "Filesystem almost full",
        "severity": "high",
        "opened": 5,
        "resolved": 4,
        "open": 1,
        "mttr_seconds": 28350.0,
        "median_ttr_seconds": 2400.0,
        "p90_ttr_seconds": 76680.0,
        "mtta_seconds": 1050.0,  # acknowledged ones only: (300 + 1800) / 2
        "auto_resolved": 1,  # 2 was acknowledged, 3 resolved by hand, 4 had a note and no run
        "sla_breached": 2,  # 4 resolved after its due time, 5 still open past it
    }
    assert approval == {
        "code": "APPR-001",
        "title": "Needs approval",
        "severity": "medium",
        "opened": 1,
        "resolved": 1,
        "open": 0,
        "mttr_seconds": 2400.0,
        "median_ttr_seconds": 2400.0,
        "p90_ttr_seconds": 2400.0,
        "mtta_seconds": None,
        "auto_resolved": 1,
        "sla_breached": 0,
    }
    # Not in the catalog: title and severity as the incident recorded them; nothing to average.
    assert unclassified == {
        "code": "UNCLASSIFIED",
        "title": "Weird",
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
    }


def test_sla_per_severity_lists_every_severity() -> None:
    assert as_json()["sla"] == [
        {"severity": "critical", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
        {"severity": "high", "opened": 5, "resolved_in_time": 3, "breached": 2, "open_overdue": 1},
        {"severity": "medium", "opened": 2, "resolved_in_time": 1, "breached": 0, "open_overdue": 0},
        {"severity": "low", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
    ]


def test_playbook_versions_count_started_runs_and_their_effectiveness() -> None:
    assert as_json()["playbooks"] == [
        {
            "playbook": "noop",
            "version": 1,
            "runs": 3,
            "succeeded": 2,
            "failed": 1,
            "effective": 2,
            "effectiveness": 0.6667,
            "median_duration_seconds": 60.0,
        },
        {
            "playbook": "noop",
            "version": 2,
            "runs": 1,
            "succeeded": 1,
            "failed": 0,
            "effective": 1,
            "effectiveness": 1.0,
            "median_duration_seconds": 60.0,
        },
    ]


def test_recurring_pairs_and_unclassified_groups_with_their_suggested_match() -> None:
    stats = as_json()
    assert stats["recurring"] == [
        {"code": "DISK-001", "target": "db-1", "incidents": 2},
        {"code": "DISK-001", "target": "db-2", "incidents": 2},
    ]
    assert stats["unclassified"] == [
        {
            "alertname": "Weird",
            "source": "alertmanager",
            "alerts": 3,
            "targets": 2,
            "suggested_match": {"env": "prod", "job": "node"},
        },
        {"alertname": "Other", "source": "generic", "alerts": 1, "targets": 0, "suggested_match": {}},
    ]


def test_an_empty_window_has_nulls_not_zeros_for_what_cannot_be_computed() -> None:
    stats = build_stats(Window(T0, NOW, [], [], [], [], []), CODES, NOW)
    assert stats.auto_resolution_rate is None
    assert (stats.by_code, stats.playbooks, stats.recurring, stats.unclassified) == ([], [], [], [])
    assert [s.opened for s in stats.sla] == [0, 0, 0, 0]


def test_percentile_interpolates_between_ranks_and_the_suggested_match_keeps_shared_labels_only() -> None:
    assert percentile([10.0], 0.9) == 10.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.1
    assert percentile([], 0.5) is None
    assert suggested_match(
        [{"alertname": "X", "a": "1", "b": "2"}, {"alertname": "X", "a": "1", "b": "3"}]
    ) == {"a": "1"}


def test_an_incident_fixed_by_two_playbook_versions_is_auto_resolved_once() -> None:
    fixed = incident(1, H, 12 * M)
    window = Window(T0, NOW, [fixed], [run(1, fixed, M, M), run(2, fixed, 2 * M, M, version=2)], [], [], [])
    stats = build_stats(window, CODES, NOW)
    assert [(p.version, p.runs, p.effective) for p in stats.playbooks] == [(1, 1, 1), (2, 1, 1)]
    [disk] = stats.by_code
    assert (disk.auto_resolved, stats.auto_resolution_rate) == (1, 1.0)


def test_the_stores_counts_become_the_same_stats_as_the_rows() -> None:
    """stats_of over the summary of the rows is build_stats: the SQL path only replaces the counting."""
    from engine.analytics.stats import stats_of, summarize

    assert stats_of(summarize(history(), CODES, NOW), CODES) == build_stats(history(), CODES, NOW)
    summary = summarize(history(), CODES, NOW)
    # Durations travel as whole microseconds: 10 min, 20 min, 1 h, 30 h.
    assert [sorted(t.ttr_us) for t in summary.incidents if t.code == "DISK-001"] == [
        [600_000_000, 1_200_000_000, 3_600_000_000, 108_000_000_000]
    ]


def test_numbers_reads_what_either_database_collected() -> None:
    from engine.store.sqlfn import numbers

    assert numbers("3,1,2") == [3, 1, 2]
    assert numbers([3, None, 1]) == [3, 1]
    assert numbers(None) == numbers("") == []
