"""Circuit breakers: the counting rule and the gate that holds runs of an open version. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.models import Mode
from engine.policy.breakers import after_run, breaker
from engine.policy.decisions import ALLOW, Hold
from engine.policy.request import RunHistory, RunRequest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_consecutive_bad_runs_open_at_the_threshold() -> None:
    assert after_run(0, 3, bad=True) == (1, False)
    assert after_run(1, 3, bad=True) == (2, False)
    assert after_run(2, 3, bad=True) == (3, True)
    assert after_run(0, 1, bad=True) == (1, True)


def test_a_good_run_starts_the_count_again() -> None:
    count = 0
    for bad in (True, True, False, True, True):
        count, opened = after_run(count, 3, bad)
        assert not opened
    assert count == 2
    assert after_run(2, 3, bad=False) == (0, False)


def test_a_threshold_lowered_below_the_count_opens_on_the_next_bad_run() -> None:
    assert after_run(4, 3, bad=True) == (5, True)


def _request(playbook: str = "disk-cleanup", version: int = 3) -> RunRequest:
    return RunRequest("DISK-001", "db-1", playbook, version, Mode.auto)


def test_gate_holds_only_the_open_version_and_names_the_breaker() -> None:
    history = RunHistory(open_breakers={("disk-cleanup", 3): "3 consecutive failed or ineffective runs"})
    assert breaker(_request(), history, NOW) == Hold(
        "breaker open for disk-cleanup@3: 3 consecutive failed or ineffective runs", gate="breaker"
    )
    assert breaker(_request(version=4), history, NOW) == ALLOW
    assert breaker(_request("restart", 3), history, NOW) == ALLOW
    assert breaker(_request(), RunHistory(), NOW) == ALLOW
