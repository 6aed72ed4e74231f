"""The dashboard's boards: a window is counted once while its first viewer waits; later an old
board is shown at once and counted anew in the background, so no viewer waits seconds again."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.web.console.dashboard import Boards
from tests.conftest import wait_for

START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


class Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, since: str, now: datetime) -> Any:
        self.release.wait(5)
        self.calls.append((since, now))
        return f"board {len(self.calls)} of {since} at {now:%H:%M:%S}"


def test_an_old_board_is_shown_at_once_and_counted_anew_behind_it() -> None:
    now = [START]
    count = Counter()
    boards = Boards(count, lambda: now[0], fresh_for=timedelta(seconds=60))

    first = boards.get("30d", now[0])
    assert first == "board 1 of 30d at 03:00:00" and len(count.calls) == 1
    now[0] = START + timedelta(seconds=30)
    assert boards.get("30d", now[0]) is first and len(count.calls) == 1  # still fresh

    now[0] = START + timedelta(seconds=90)
    count.release.clear()  # the recount takes its time
    assert boards.get("30d", now[0]) is first  # shown at once, not waited for
    count.release.set()
    wait_for(lambda: len(count.calls) == 2, timeout=5)
    assert wait_for(lambda: boards.get("30d", now[0]) == "board 2 of 30d at 03:01:30", timeout=5)


def test_warming_counts_the_window_before_anyone_asks() -> None:
    count = Counter()
    boards = Boards(count, lambda: START, fresh_for=timedelta(seconds=60))
    boards.warm("30d", "7d")
    wait_for(lambda: len(count.calls) == 2, timeout=5)
    assert boards.get("30d", START) == "board 1 of 30d at 03:00:00"
    assert boards.get("7d", START) == "board 2 of 7d at 03:00:00"
    assert len(count.calls) == 2  # the viewers got the warmed boards, nothing counted again


def test_a_failed_background_count_keeps_the_last_board() -> None:
    now = [START]
    calls: list[datetime] = []

    def make(since: str, at: datetime) -> Any:
        calls.append(at)
        if len(calls) > 1:
            raise RuntimeError("database went away")
        return "first"

    boards = Boards(make, lambda: now[0], fresh_for=timedelta(seconds=60))
    assert boards.get("7d", now[0]) == "first"
    now[0] = START + timedelta(minutes=5)
    assert boards.get("7d", now[0]) == "first"
    wait_for(lambda: len(calls) == 2, timeout=5)
    assert boards.get("7d", now[0]) == "first"


def test_a_board_not_worth_keeping_is_counted_for_every_viewer() -> None:
    """An empty window is not kept: the first incident must show at once, not when it goes stale."""
    count = Counter()
    boards = Boards(count, lambda: START, fresh_for=timedelta(seconds=60), worth_keeping=lambda b: "2" in b)
    assert boards.get("30d", START) == "board 1 of 30d at 03:00:00"
    assert boards.get("30d", START) == "board 2 of 30d at 03:00:00"  # counted again: not kept
    assert boards.get("30d", START) == "board 2 of 30d at 03:00:00"  # kept from now on
    assert len(count.calls) == 2
