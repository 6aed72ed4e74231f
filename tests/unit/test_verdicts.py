"""The verdict a breaker counts for a succeeded run, with fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.models import Policy
from engine.policy.verdicts import EFFECTIVE_WITHIN, effective_within, verdict

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=1)
WITHIN = timedelta(minutes=30)


def test_resolved_in_time_by_the_monitoring_system_is_effective() -> None:
    assert verdict(START, END, END + timedelta(minutes=5), "alert_resolved", END, WITHIN) is True
    assert verdict(START, END, START + timedelta(seconds=30), "alert_resolved", END, WITHIN) is True  # raced
    assert verdict(START, END, END + WITHIN, "alert_resolved", END, WITHIN) is True  # the edge counts


def test_late_manual_or_never_resolved_is_ineffective_and_open_in_time_is_not_known() -> None:
    assert verdict(START, END, END + WITHIN + timedelta(seconds=1), "alert_resolved", END, WITHIN) is False
    assert verdict(START, END, END + timedelta(minutes=1), "manual", END, WITHIN) is False
    assert verdict(START, END, None, None, END + timedelta(minutes=29), WITHIN) is None
    assert verdict(START, END, None, None, END + WITHIN + timedelta(seconds=1), WITHIN) is False


def test_the_window_is_the_codes_or_the_default() -> None:
    assert effective_within(None) == EFFECTIVE_WITHIN == timedelta(minutes=30)
    assert effective_within(Policy(effective_within=timedelta(minutes=5))) == timedelta(minutes=5)
