"""The replay reads each incident's first run over id ranges: the ranges cover every id asked for
and never span a gap wider than allowed (a few far ids must not make one scan read the table)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.store.arrivals import id_ranges


def test_dense_ids_are_one_range_and_a_far_one_its_own() -> None:
    assert list(id_ranges([1, 2, 3, 10, 5000], gap=64)) == [(1, 10), (5000, 5000)]
    assert list(id_ranges([], gap=64)) == []
    assert list(id_ranges([7], gap=64)) == [(7, 7)]


@given(st.sets(st.integers(min_value=1, max_value=100_000), max_size=300), st.integers(1, 500))
def test_ranges_cover_every_id_and_skip_no_wide_gap(ids: set[int], gap: int) -> None:
    wanted = sorted(ids)
    ranges = list(id_ranges(wanted, gap=gap))
    assert all(any(low <= i <= high for low, high in ranges) for i in wanted)
    assert all(low in ids and high in ids for low, high in ranges)
    assert all(later[0] - earlier[1] > gap for earlier, later in zip(ranges, ranges[1:], strict=False))
    inside = [[i for i in wanted if low <= i <= high] for low, high in ranges]
    assert all(b - a <= gap for part in inside for a, b in zip(part, part[1:], strict=False))
