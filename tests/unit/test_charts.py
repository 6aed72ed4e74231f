"""The console's SVG charts (engine.web.console.charts) and the dashboard's chart builders: what a
reader of the page sees drawn, named and escaped, and that nothing in them reaches outside."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

from markupsafe import Markup

from engine.records import Stats
from engine.store.trends import DayCount, DayResolveTimes
from engine.web.console import charts, dashboard
from engine.web.console.charts import Series

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&'
DAYS = ["02 Nov", "03 Nov", "04 Nov"]


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def titles(svg: str) -> list[str]:
    return [t.text or "" for t in parsed(svg).iter(f"{SVG}title")]


def outside_urls(svg: str) -> list[str]:
    """Every http(s) URL but the namespace declarations (which name, and load, nothing)."""
    return re.findall(r"https?://[^\s\"'<>]*", re.sub(r'xmlns(:\w+)?="[^"]*"', "", svg))


def test_stacked_columns_draw_every_series_with_its_values_as_titles() -> None:
    """Each bar carries `series · label: value` in a title a browser shows on hover; each series has
    its legend entry."""
    svg = charts.stacked_columns(
        "Incidents per day", DAYS, [Series("DISK-001", [1, 2, 3]), Series("other", [4, 0, 1])], y_title="n"
    )
    shown = titles(svg)
    assert "DISK-001 · 03 Nov: 2" in shown and "other · 02 Nov: 4" in shown
    legend = [t.text for t in parsed(svg).iter(f"{SVG}text") if t.text in ("DISK-001", "other")]
    assert sorted(set(legend)) == ["DISK-001", "other"]


def test_a_chart_is_an_accessible_image_named_by_its_title() -> None:
    """The root says role="img" and points at its first <title>, which holds the chart's name."""
    svg = charts.lines("Time to resolve, critical", DAYS, [Series("median", [0.2, None, 0.4])], y_title="h")
    root = parsed(svg)
    assert root.get("role") == "img"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Time to resolve, critical"
    assert root.get("aria-labelledby") == title.get("id")


def test_names_and_labels_are_escaped_not_markup() -> None:
    """A code or target with markup in it is text in the SVG: no element comes of it."""
    svg = charts.bars("Recurring", [f"{HOSTILE} · db-1"], [Series(HOSTILE, [3])], x_title="incidents")
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    assert f"{HOSTILE} · {HOSTILE} · db-1: 3" in titles(svg)  # the text itself, unescaped when read
    assert [e for e in parsed(svg).iter() if e.tag.endswith("script")] == []


def test_no_chart_names_or_loads_anything_outside_the_daemon() -> None:
    """No script (neither pygal's tooltips from its host nor its inline config), no comment naming
    its web site, no XML declaration: only the namespace declarations carry a URL."""
    for svg in (
        charts.stacked_columns("a", DAYS, [Series("A", [1, 2, 3])], y_title="n"),
        charts.lines("b", DAYS, [Series("deadline", [4, 4, 4], dashed=True)], y_title="h"),
        charts.bars("c", ["x", "y"], [Series("A", [1, 2]), Series("B", [2, 1])], x_title="n", stacked=True),
        charts.bars("d", [], [], x_title="n"),
    ):
        assert outside_urls(svg) == []
        assert "<script" not in svg and "<!--" not in svg and not svg.startswith("<?xml")
        assert isinstance(svg, Markup)  # inlined as is: pygal escaped it already


def test_a_dashed_series_is_drawn_dashed_without_dots() -> None:
    """The deadline reads as a threshold: a dashed line, no point markers."""
    svg = charts.lines(
        "t", DAYS, [Series("median", [1, 2, 3]), Series("deadline", [4, 4, 4], dashed=True)], y_title="h"
    )
    assert "stroke-dasharray:7,5" in svg.replace(" ", "")
    assert not any(t.startswith("deadline") for t in titles(svg))  # no dots: nothing to hover
    assert "median · 04 Nov: 3.00 h" in titles(svg)


def test_horizontal_bars_list_the_first_label_on_top() -> None:
    """The rows read down the page in the order given (pygal draws bottom up)."""
    svg = charts.bars("r", ["first", "second", "third"], [Series("n", [3, 2, 1])], x_title="n")
    ys = {
        t.text: float(t.get("y", "0")) for t in parsed(svg).iter(f"{SVG}text") if t.text in ("first", "third")
    }
    assert ys["first"] < ys["third"]


def test_incidents_chart_keeps_the_top_codes_and_adds_up_the_rest_as_other() -> None:
    """The codes with most incidents are drawn on their own, the others as one "other" series, per day."""
    since = datetime(2026, 11, 2, 6, tzinfo=UTC)
    slots = dashboard.buckets(since, since + timedelta(days=2))
    rows = [DayCount(date(2026, 11, 2), f"C-{n:02d}", 10 + n) for n in range(dashboard.TOP_CODES + 2)]
    rows.append(DayCount(date(2026, 11, 4), "C-00", 1))  # C-00 and C-01: 11 each, the fewest
    chart = dashboard.incidents_chart(rows, slots)
    [by_code, per_day] = chart.tables
    names = [row[0].text for row in by_code.rows]
    assert names[0] == f"C-{dashboard.TOP_CODES + 1:02d}" and names[-1] == "other"
    assert len(names) == dashboard.TOP_CODES + 1
    assert "C-00" not in names and "C-01" not in names
    assert by_code.rows[-1][1].text == "22"
    assert [row[0].text for row in per_day.rows] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert {"other · 02 Nov: 21", "other · 04 Nov: 1"} <= set(titles(chart.pictures[0].svg))


def test_resolve_chart_gives_each_severity_its_median_p90_and_deadline() -> None:
    """Per day: the median and p90 in hours (linear between ranks), and the severity's deadline line."""
    since = datetime(2026, 11, 2, tzinfo=UTC)
    slots = dashboard.buckets(since, since + timedelta(days=1))
    hour = 3_600_000_000
    times = [DayResolveTimes(date(2026, 11, 2), "critical", [1 * hour, 2 * hour, 3 * hour, 10 * hour])]
    chart = dashboard.resolve_chart(times, slots, {"critical": timedelta(hours=4)})
    [picture] = chart.pictures
    assert picture.heading == "critical"
    [row] = chart.tables[0].rows
    assert [c.text for c in row] == ["2026-11-02", "critical", "4", "2.50 h", "7.90 h", "4h"]
    assert "deadline" in picture.svg
    assert any("p90 over the deadline on 1 of 1 days" in line for line in chart.caption)


def test_a_long_window_is_drawn_per_week() -> None:
    """Past three months the time charts have a bar per week, not per day."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    slots = dashboard.buckets(since, since + timedelta(days=365))
    assert slots.days == 7 and len(slots.starts) == 53
    assert slots.of(date(2026, 1, 8)) == 1


def test_sla_and_automation_charts_read_the_stats() -> None:
    """Compliance per severity is in time of in time + breached; a version's rates are of its runs."""
    stats = Stats.model_validate(
        {
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-08T00:00:00Z",
            "incidents": {"opened": 10, "resolved": 8, "open": 2, "overdue": 1},
            "by_code": [],
            "sla": [
                {
                    "severity": "critical",
                    "opened": 10,
                    "resolved_in_time": 6,
                    "breached": 2,
                    "open_overdue": 1,
                },
                {"severity": "low", "opened": 0, "resolved_in_time": 0, "breached": 0, "open_overdue": 0},
            ],
            "playbooks": [
                {
                    "playbook": "disk-cleanup",
                    "version": 2,
                    "runs": 4,
                    "succeeded": 3,
                    "failed": 1,
                    "effective": 2,
                    "effectiveness": 0.5,
                    "median_duration_seconds": 61.0,
                },
            ],  # fmt: skip
            "auto_resolution_rate": 0.25,
            "recurring": [],
            "unclassified": [],
        }
    )
    sla = dashboard.sla_chart(stats, {"critical": timedelta(hours=4), "low": None})
    assert [c.text for c in sla.tables[0].rows[0]] == [
        "critical",
        "4h",
        "10",
        "6",
        "2 (1 still open)",
        "2",
        "75 %",
    ]
    assert "in time · critical: 60 %" in titles(sla.pictures[0].svg)
    automation = dashboard.automation_chart(stats)
    assert "effective · disk-cleanup v2: 50 %" in titles(automation.pictures[0].svg)
    assert "succeeded · disk-cleanup v2: 75 %" in titles(automation.pictures[0].svg)
