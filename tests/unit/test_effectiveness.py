"""The contract's effective run: succeeded (verify passed), its alert resolved within `effective_within`
(default 30m) after it finished, and no new incident of the same code and target within
`recurrence_window` (default 24h) after that. Fixed timestamps, known answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from engine.analytics.effectiveness import effective_runs, verify_failed
from engine.models import Policy
from engine.store.history import IncidentFacts, Opening, RunFacts, VerifyStep

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def incident(id: int = 1, resolved_after: timedelta | None = 12 * MIN, **changes: object) -> IncidentFacts:
    facts = IncidentFacts(
        id=id,
        code="DISK-001",
        title="Filesystem almost full",
        severity="high",
        target="db-1",
        status="resolved" if resolved_after is not None else "open",
        opened_at=T0,
        resolved_at=T0 + resolved_after if resolved_after is not None else None,
        resolution="alert_resolved" if resolved_after is not None else None,
        due_at=T0 + timedelta(hours=24),
        respond_by=T0 + timedelta(hours=2),
        acknowledged_at=None,
        acknowledged_by=None,
        noted=False,
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def run(id: int = 10, incident_id: int = 1, **changes: object) -> RunFacts:
    """A run queued at T0, started at +1m, finished at +2m."""
    facts = RunFacts(
        id=id,
        incident_id=incident_id,
        playbook="disk-cleanup",
        playbook_version=3,
        status="succeeded",
        trigger="auto",
        dry_run=False,
        queued_at=T0,
        started_at=T0 + MIN,
        finished_at=T0 + 2 * MIN,
        error=None,
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def effective(
    incidents: Sequence[IncidentFacts],
    runs: Sequence[RunFacts],
    verify: Sequence[VerifyStep] = (),
    later: Sequence[Opening] = (),
    policy: Policy | None = None,
) -> set[int]:
    return effective_runs(incidents, runs, verify, later, {"DISK-001": policy} if policy else {})


def test_a_succeeded_run_whose_alert_resolved_ten_minutes_later_is_effective() -> None:
    assert effective([incident(resolved_after=12 * MIN)], [run()]) == {10}


def test_resolving_more_than_thirty_minutes_after_the_run_finished_is_not_its_doing() -> None:
    assert effective([incident(resolved_after=32 * MIN + timedelta(seconds=1))], [run()]) == set()
    # Exactly 30 minutes after the run finished still counts.
    assert effective([incident(resolved_after=32 * MIN)], [run()]) == {10}


def test_the_codes_effective_within_replaces_the_default() -> None:
    late = [incident(resolved_after=50 * MIN)]
    assert effective(late, [run()], policy=Policy(effective_within=timedelta(hours=1))) == {10}
    assert (
        effective([incident(resolved_after=12 * MIN)], [run()], policy=Policy(effective_within=5 * MIN))
        == set()
    )


def test_failed_dry_unstarted_runs_and_manual_or_missing_resolutions_are_never_effective() -> None:
    resolved = [incident()]
    assert effective(resolved, [run(status="failed")]) == set()
    assert effective(resolved, [run(dry_run=True)]) == set()
    assert effective(resolved, [run(started_at=None)]) == set()
    assert effective([incident(resolution="manual")], [run()]) == set()
    assert effective([incident(resolved_after=None)], [run()]) == set()
    # The alert went away before the run even started: the run did not fix it.
    assert effective([incident(resolved_after=timedelta(seconds=30))], [run()]) == set()


def test_a_resolution_while_the_run_is_finishing_counts() -> None:
    assert effective([incident(resolved_after=90 * timedelta(seconds=1))], [run()]) == {10}


def test_a_new_incident_of_the_same_code_and_target_within_a_day_undoes_it() -> None:
    first = incident(1, resolved_after=12 * MIN)
    again = incident(2, resolved_after=None, opened_at=T0 + timedelta(hours=5))
    assert effective([first, again], [run()]) == set()
    # Another target, another code, or after the recurrence window: still effective.
    assert effective([first, replace(again, target="db-2")], [run()]) == {10}
    assert effective([first, replace(again, code="DISK-002")], [run()]) == {10}
    after_a_day = replace(again, opened_at=T0 + 12 * MIN + timedelta(hours=24, seconds=1))
    assert effective([first, after_a_day], [run()]) == {10}


def test_recurrences_after_the_window_and_the_codes_recurrence_window_are_taken_into_account() -> None:
    first = incident(1, resolved_after=12 * MIN)
    later = [Opening("DISK-001", "db-1", T0 + timedelta(hours=2))]
    assert effective([first], [run()], later=later) == set()
    assert effective([first], [run()], later=later, policy=Policy(recurrence_window=timedelta(hours=1))) == {
        10
    }


def test_a_failed_verification_fails_the_run_unless_a_retry_passed() -> None:
    failed = [VerifyStep(10, 3, "disk below 90%", "failed")]
    assert verify_failed(failed) == {10}
    assert effective([incident()], [run()], verify=failed) == set()
    retried = [
        *failed,
        VerifyStep(10, 4, "disk below 90%", "succeeded"),
        VerifyStep(10, 5, "port", "skipped"),
    ]
    assert verify_failed(retried) == set()
    assert effective([incident()], [run()], verify=retried) == {10}


def test_only_the_runs_that_qualify_are_named() -> None:
    incidents = [incident(1), incident(2, target="db-2", resolved_after=None)]
    runs = [run(10), run(11, status="failed"), run(12, incident_id=2), run(13, incident_id=99)]
    assert effective(incidents, runs) == {10}
