"""Figures, their targets, and the two outputs: a text table or one JSON document."""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How a figure meets its target: "==" must hold for every run, the others for the median.
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass
class Figure:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    op: str | None = None  # None: reported, no target
    target: float | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        clean = [v for v in self.values if not math.isnan(v)]
        return statistics.median(clean) if clean and len(clean) == len(self.values) else None

    @property
    def met(self) -> bool | None:
        if self.op is None or self.target is None:
            return None
        median = self.median
        if median is None:
            return False
        check = OPS[self.op]
        if self.op == "==":
            return all(check(v, self.target) for v in self.values)
        return bool(check(median, self.target))

    def as_json(self) -> dict[str, Any]:
        clean = [v for v in self.values if not math.isnan(v)]
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(clean) if clean else None,
            "max": max(clean) if clean else None,
            "runs": len(self.values),
            "values": [None if math.isnan(v) else v for v in self.values],
            "target": None if self.op is None else f"{self.op} {_fmt(self.target, self.unit)}",
            "target_value": self.target,
            "met": self.met,
            "note": self.note,
        }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _num(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}"
    if unit in ("ms", "s"):
        return f"{value:.3g}" if value < 10 or unit == "s" else f"{value:.0f}"
    if unit == "MB" or float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{_num(value, unit)} {unit}".rstrip()


def table(figures: list[Figure]) -> str:
    header = ("figure", "median", "min-max", "runs", "target", "met")
    rows = [header]
    for fig in figures:
        clean = [v for v in fig.values if not math.isnan(v)]
        span = f"{_num(min(clean), fig.unit)} - {_fmt(max(clean), fig.unit)}" if clean else "-"
        target = "-" if fig.op is None else f"{fig.op} {_fmt(fig.target, fig.unit)}"
        met = {True: "yes", False: "NO", None: ""}[fig.met]
        rows.append((fig.name, _fmt(fig.median, fig.unit), span, str(len(fig.values)), target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {fig.name}: {fig.note}" for fig in figures if fig.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))
