"""Several intake writers (PostgreSQL): a batch never shares a fingerprint with one being committed,
nor overtakes an older submission of the same fingerprint left waiting."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from engine.intake.writer import IntakeWriter


def body(*fingerprints: str) -> tuple[Any, Future[Any], int, int]:
    alerts = [SimpleNamespace(alert=SimpleNamespace(fingerprint=fp)) for fp in fingerprints]
    return (SimpleNamespace(alerts=alerts, fingerprints=fingerprints), Future(), len(alerts), 10)


def taken(batch: list[Any]) -> list[tuple[str, ...]]:
    return [item[0].fingerprints for item in batch]


def writer(*items: tuple[Any, Future[Any], int, int]) -> IntakeWriter:
    w = IntakeWriter(SimpleNamespace(db=SimpleNamespace(is_sqlite=False)))  # type: ignore[arg-type]
    w._items.extend(items)  # noqa: SLF001
    w._alerts = sum(item[2] for item in items)  # noqa: SLF001
    return w


def test_a_second_writer_skips_what_the_first_holds_and_what_queues_behind_it() -> None:
    w = writer(body("a"), body("b"), body("a", "c"), body("c"), body("d"))
    first = w._pick()  # noqa: SLF001
    assert taken(first) == [("a",), ("b",), ("a", "c"), ("c",), ("d",)]  # nothing in flight: all

    w = writer(body("a"), body("b"))
    assert taken(w._pick()) == [("a",), ("b",)]  # noqa: SLF001
    w._items.extend([body("a", "c"), body("c"), body("e"), body("b")])  # noqa: SLF001
    second = w._pick()  # noqa: SLF001
    # ("a","c") waits for the batch holding a; ("c",) waits behind it; b is held too; e is free.
    assert taken(second) == [("e",)]
    assert [item[0].fingerprints for item in w._items] == [("a", "c"), ("c",), ("b",)]  # noqa: SLF001


def test_released_fingerprints_free_the_waiting_submissions_in_their_order() -> None:
    w = writer(body("a"))
    held = w._pick()  # noqa: SLF001
    w._items.extend([body("a"), body("a", "b"), body("b")])  # noqa: SLF001
    assert w._pick() == []  # noqa: SLF001
    w._threads = [object(), object()]  # type: ignore[list-item]  # noqa: SLF001
    w._release(held)  # noqa: SLF001
    assert taken(w._pick()) == [("a",), ("a", "b"), ("b",)]  # noqa: SLF001


def test_a_withdrawn_submission_is_dropped_not_committed() -> None:
    gone = body("x")
    gone[1].cancel()
    w = writer(gone, body("y"))
    assert taken(w._pick()) == [("y",)] and not w._items  # noqa: SLF001
    assert w._alerts == 1  # noqa: SLF001 - the withdrawn body's alerts no longer count
