"""The wait step action."""

from __future__ import annotations

import time
from datetime import timedelta

from engine.config import Config, HttpConfig
from engine.execution.actions.base import ActionContext
from engine.execution.actions.wait import WaitAction


def make_ctx(budget: float = 5) -> ActionContext:
    return ActionContext(
        config=Config(http=HttpConfig(allowed_hosts=["127.0.0.1"])),
        target="web-1",
        timeout_seconds=budget,
        output_limit_bytes=65536,
    )


def test_wait_zero_returns_at_once() -> None:
    """`wait: 0s` succeeds with well under a millisecond of overhead."""
    action, ctx = WaitAction(), make_ctx()
    started = time.perf_counter()
    for _ in range(100):
        result = action.execute(timedelta(0), ctx)
    per_call = (time.perf_counter() - started) / 100
    assert result.ok
    assert not result.timed_out
    assert per_call < 0.0005


def test_wait_sleeps_the_duration() -> None:
    """A short wait sleeps about that long and succeeds."""
    started = time.monotonic()
    result = WaitAction().execute(timedelta(milliseconds=50), make_ctx())
    elapsed = time.monotonic() - started
    assert result.ok
    assert result.error is None
    assert 0.045 <= elapsed < 1


def test_wait_longer_than_timeout_times_out() -> None:
    """A wait beyond the step budget sleeps only the budget and reports timed_out."""
    started = time.monotonic()
    result = WaitAction().execute(timedelta(seconds=10), make_ctx(budget=0.05))
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.timed_out
    assert not result.retryable
    assert 0.045 <= elapsed < 1
    assert "10s" in (result.error or "")


def test_wait_action_name() -> None:
    """The action registers as `wait`."""
    assert WaitAction.name == "wait"
