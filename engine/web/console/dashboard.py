"""Console page: the dashboard, for the team lead's look at what recurs and what the automation fixes.

Five charts over the incidents opened in a window (`?since=30d`): incidents per day by code, time to
resolve per day against the severity's deadline, automation per playbook version, SLA compliance per
severity, the (code, target) pairs that recur. Each is server-side SVG (engine.web.console.charts)
with its numbers in a caption and a table, so it reads without the picture.

The numbers are read_stats' (the same as `suture stats` and the API) and two grouped reads of
engine.store.trends. Counting a month of a large store takes seconds (read_stats above all), so a
window's board is kept for FRESH_FOR and the page says as of when.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from engine.analytics import catalog_windows, read_stats
from engine.analytics.effectiveness import DEFAULT_WINDOWS
from engine.analytics.stats import SEVERITIES, percentile
from engine.durations import format_duration, parse_since
from engine.errors import InvalidArgument
from engine.logging import get_logger
from engine.records import Stats
from engine.store.history import History
from engine.store.trends import DayCount, DayResolveTimes, Trends
from engine.web.console import charts
from engine.web.console.charts import Series
from engine.web.console.context import ConsoleContext
from engine.web.console.formatting import span

log = get_logger("suture.console")

DEFAULT_SINCE = "30d"
#: The codes drawn on their own in the incidents chart; the others add up as "other".
TOP_CODES = 8
#: The playbook versions drawn (most runs first); the table lists them all.
TOP_VERSIONS = 12
#: How long a window's board is shown again before it is counted anew.
FRESH_FOR = timedelta(seconds=60)
#: Windows of more days than this are drawn per week, not per day.
DAILY_UP_TO = 92
#: The most bars a time chart draws: a longer window's periods are longer than a week.
MOST_BUCKETS = 120
#: Boards kept at once (one per `since` asked for recently).
KEPT = 16
OTHER = "other"
PRESETS = ("1d", "7d", "30d", "90d")


# ------------------------------------------------------------------ view


@dataclass(frozen=True)
class Cell:
    text: str
    href: str | None = None
    number: bool = False


@dataclass(frozen=True)
class Table:
    head: list[str]
    rows: list[list[Cell]]
    #: Shown folded (`<details>`) under this summary; None: shown open.
    folded: str | None = None


@dataclass(frozen=True)
class Picture:
    """One SVG of a chart, with a heading when a chart draws several (one per severity)."""

    svg: Markup
    heading: str | None = None


@dataclass(frozen=True)
class Chart:
    id: str
    heading: str
    pictures: list[Picture]
    caption: list[str]
    tables: list[Table]
    wide: bool = False


@dataclass(frozen=True)
class Board:
    since: datetime
    until: datetime
    stats: Stats
    charts: list[Chart]


@dataclass(frozen=True)
class Buckets:
    """The days or weeks of a window, in order: what the time charts have a bar or point for."""

    starts: list[date]
    days: int  # 1 or 7

    def of(self, day: date) -> int:
        return (day - self.starts[0]).days // self.days

    def label(self, n: int) -> str:
        return self.starts[n].strftime("%d %b")

    def name(self, n: int) -> str:
        start = self.starts[n]
        if self.days == 1:
            return start.isoformat()
        return f"{start.isoformat()} – {(start + timedelta(days=self.days - 1)).isoformat()}"

    @property
    def unit(self) -> str:
        return {1: "day", 7: "week"}.get(self.days, f"{self.days}-day period")

    def every(self, labels: int = 8) -> int:
        """Label every n-th bucket: `labels` labels or so."""
        return max(1, math.ceil(len(self.starts) / labels))


def buckets(since: datetime, until: datetime) -> Buckets:
    """Days up to three months; then weeks, or longer periods past MOST_BUCKETS weeks."""
    first, last = since.date(), (until - timedelta(microseconds=1)).date()
    days = (last - first).days + 1
    size = 1 if days <= DAILY_UP_TO else max(7, math.ceil(days / MOST_BUCKETS))
    count = math.ceil(days / size)
    return Buckets([first + timedelta(days=n * size) for n in range(count)], size)


def incidents_chart(per_day: Sequence[DayCount], slots: Buckets) -> Chart:
    totals: dict[str, int] = defaultdict(int)
    for row in per_day:
        totals[row.code] += row.incidents
    ranked = sorted(totals, key=lambda code: (-totals[code], code))
    top = ranked[:TOP_CODES]
    names = top + ([OTHER] if len(ranked) > TOP_CODES else [])
    grid = {name: [0] * len(slots.starts) for name in names}
    for row in per_day:
        name = row.code if row.code in top else OTHER  # codes are upper case: never "other"
        grid[name][slots.of(row.day)] += row.incidents
    series = [
        Series(name, grid[name], colour=charts.OTHER_COLOUR if n >= len(top) else None)
        for n, name in enumerate(names)
    ]
    labels = [slots.label(n) for n in range(len(slots.starts))]
    per_slot = [sum(grid[name][n] for name in names) for n in range(len(slots.starts))]
    total = sum(per_slot)
    unit = slots.unit
    svg = charts.stacked_columns(
        f"Incidents opened per {unit}, by code",
        labels,
        series,
        y_title="incidents",
        label_every=slots.every(),
    )
    rest = ", the rest as “other”" if len(names) > len(top) else ""
    which = f": the {len(top)} codes with most incidents{rest}" if top else ""
    caption = [
        f"Incidents opened per UTC {unit} from {slots.starts[0].isoformat()}, stacked by code{which}. "
        f"The first and last {unit} are partial."
    ]
    if total:
        busiest = max(range(len(per_slot)), key=lambda n: (per_slot[n], -n))
        caption.append(
            f"{total:,} incidents in all; busiest {unit}: {slots.name(busiest)} with {per_slot[busiest]:,}."
        )
    else:
        caption.append("No incident opened in this window.")
    by_code = Table(
        ["Code", "Incidents", "Share", f"Busiest {unit}"],
        [
            [
                Cell(name, _incidents_link(code=name) if name != OTHER else None),
                Cell(f"{sum(grid[name]):,}", number=True),
                Cell(f"{sum(grid[name]) / total * 100:.0f} %" if total else "—", number=True),
                Cell(_busiest(grid[name], slots)),
            ]
            for name in names
        ],
    )
    each_slot = Table(
        [unit.capitalize(), "All", *names],
        [
            [Cell(slots.name(n)), Cell(f"{per_slot[n]:,}", number=True)]
            + [Cell(f"{grid[name][n]:,}", number=True) for name in names]
            for n in range(len(slots.starts))
        ],
        folded=f"Incidents per {unit}",
    )
    return Chart("chart-incidents-per-day", f"Incidents per {unit} by code", [Picture(svg)], caption,
                 [by_code, each_slot], wide=True)  # fmt: skip


def _busiest(values: Sequence[int], slots: Buckets) -> str:
    if not any(values):
        return "—"
    n = max(range(len(values)), key=lambda k: (values[k], -k))
    return f"{slots.name(n)} ({values[n]:,})"


@dataclass
class _Quantiles:
    resolved: int
    median_h: float | None
    p90_h: float | None


def resolve_chart(
    times: Sequence[DayResolveTimes], slots: Buckets, deadlines: Mapping[str, timedelta | None]
) -> Chart:
    gathered: dict[str, list[list[int]]] = {}
    for row in times:
        lists = gathered.setdefault(row.severity, [[] for _ in slots.starts])
        lists[slots.of(row.day)].extend(row.ttr_us)
    order = [s for s in SEVERITIES if s in gathered] + sorted(set(gathered) - set(SEVERITIES))
    labels = [slots.label(n) for n in range(len(slots.starts))]
    unit = slots.unit
    pictures: list[Picture] = []
    caption = [
        f"Time from opening to resolution of the incidents opened each UTC {unit} and resolved since, "
        "median and 90th percentile in hours, one chart per severity; the dashed line is the severity's "
        "resolve deadline (escalation.resolve_within; a code may set its own). Incidents still open are "
        f"not counted yet, so the last {unit}s may rise."
    ]
    rows: list[list[Cell]] = []
    for severity in order:
        quantiles = [_quantiles(values) for values in gathered[severity]]
        deadline = deadlines.get(severity)
        series = [
            Series("median", [q.median_h for q in quantiles]),
            Series("p90", [q.p90_h for q in quantiles], colour=charts.PALETTE[1]),
        ]
        if deadline is not None:
            hours = deadline.total_seconds() / 3600
            series.append(Series("deadline", [hours] * len(labels), colour=charts.BAD, dashed=True))
        title = f"Time to resolve, {severity} incidents, per {unit}"
        pictures.append(
            Picture(
                charts.lines(
                    title, labels, series, y_title="hours", label_every=slots.every(4), size=charts.SMALL
                ),
                heading=severity,
            )
        )
        caption.append(_resolve_summary(severity, quantiles, deadline, unit))
        for n, q in enumerate(quantiles):
            if q.resolved:
                rows.append(
                    [
                        Cell(slots.name(n)),
                        Cell(severity),
                        Cell(f"{q.resolved:,}", number=True),
                        Cell(_hours(q.median_h), number=True),
                        Cell(_hours(q.p90_h), number=True),
                        Cell(format_duration(deadline) if deadline else "none", number=True),
                    ]
                )
    if not order:
        pictures.append(Picture(charts.lines("Time to resolve", labels, [], y_title="hours")))
        caption.append("No incident opened in this window has been resolved.")
    table = Table(
        [unit.capitalize(), "Severity", "Resolved", "Median", "p90", "Deadline"], rows,
        folded=f"Time to resolve per {unit} and severity",
    )  # fmt: skip
    return Chart("chart-time-to-resolve", "Time to resolve against the deadline", pictures, caption,
                 [table], wide=True)  # fmt: skip


def _quantiles(values_us: Sequence[int]) -> _Quantiles:
    """Median and p90 as engine.analytics.stats computes them (sorted once: the second sort of an
    ordered list is linear), in hours."""
    ordered = sorted(values_us)
    median, p90 = percentile(ordered, 0.5), percentile(ordered, 0.9)
    return _Quantiles(len(ordered), _in_hours(median), _in_hours(p90))


def _in_hours(micros: float | None) -> float | None:
    return None if micros is None else micros / 3_600_000_000


def _hours(value: float | None) -> str:
    return "—" if value is None else charts.hours(value)


def _resolve_summary(
    severity: str, quantiles: Sequence[_Quantiles], deadline: timedelta | None, unit: str
) -> str:
    seen = [q for q in quantiles if q.resolved]
    resolved = sum(q.resolved for q in seen)
    worst = max((q.p90_h or 0.0) for q in seen) if seen else None
    text = f"{severity}: {resolved:,} resolved; highest p90 of a {unit} {_hours(worst)}"
    if deadline is None:
        return text + "; no resolve deadline."
    hours = deadline.total_seconds() / 3600
    over = sum(1 for q in seen if q.p90_h is not None and q.p90_h > hours)
    return text + f"; deadline {span(deadline)}; p90 over the deadline on {over} of {len(seen)} {unit}s."


def automation_chart(stats: Stats) -> Chart:
    versions = sorted(stats.playbooks, key=lambda p: (-p.runs, p.playbook, p.version))
    shown = versions[:TOP_VERSIONS]
    labels = [f"{p.playbook} v{p.version}" for p in shown]
    series = [
        Series("succeeded", [p.succeeded / p.runs * 100 for p in shown], colour=charts.PALETTE[0]),
        Series("effective", [p.effective / p.runs * 100 for p in shown], colour=charts.GOOD),
    ]
    svg = charts.bars(
        "Automation per playbook version: succeeded and effective, in % of runs",
        labels,
        series,
        x_title="% of the runs that started",
        formatter=charts.percent,
        maximum=100,
    )
    caption = [
        "Runs that started for incidents opened in the window (dry runs aside), per playbook version: "
        "succeeded (every step and verify passed) and effective (succeeded, its alert resolved soon after "
        "and did not come back within the code's recurrence window), in % of the runs."
    ]
    if not versions:
        caption.append("No run started in this window.")
    elif len(versions) > len(shown):
        caption.append(f"Drawn: the {len(shown)} versions with most runs, of {len(versions)}.")
    table = Table(
        ["Playbook", "Version", "Runs", "Succeeded", "Failed", "Effective", "Effectiveness", "Median run"],
        [
            [
                Cell(p.playbook),
                Cell(str(p.version), number=True),
                Cell(f"{p.runs:,}", number=True),
                Cell(f"{p.succeeded:,}", number=True),
                Cell(f"{p.failed:,}", number=True),
                Cell(f"{p.effective:,}", number=True),
                Cell(_percent(p.effectiveness), number=True),
                Cell(span(p.median_duration_seconds), number=True),
            ]
            for p in versions
        ],
        folded=f"All {len(versions)} versions" if len(versions) > len(shown) else None,
    )
    return Chart("chart-automation", "Automation per playbook version", [Picture(svg)], caption, [table])


def sla_chart(stats: Stats, deadlines: Mapping[str, timedelta | None]) -> Chart:
    labels: list[str] = []
    in_time: list[float | None] = []
    late: list[float | None] = []
    waiting: list[float | None] = []
    rows: list[list[Cell]] = []
    for row in stats.sla:
        pending = row.opened - row.resolved_in_time - row.breached
        labels.append(row.severity if row.opened else f"{row.severity} (none)")
        for values, part in ((in_time, row.resolved_in_time), (late, row.breached), (waiting, pending)):
            values.append(part / row.opened * 100 if row.opened else None)
        decided = row.resolved_in_time + row.breached
        deadline = deadlines.get(row.severity)
        rows.append(
            [
                Cell(row.severity),
                Cell(format_duration(deadline) if deadline else "none", number=True),
                Cell(f"{row.opened:,}", number=True),
                Cell(f"{row.resolved_in_time:,}", number=True),
                Cell(
                    f"{row.breached:,} ({row.open_overdue:,} still open)"
                    if row.open_overdue
                    else f"{row.breached:,}",
                    number=True,
                ),
                Cell(f"{pending:,}", number=True),
                Cell(_percent(row.resolved_in_time / decided if decided else None), number=True),
            ]
        )
    series = [
        Series("in time", in_time, colour=charts.GOOD),
        Series("breached", late, colour=charts.BAD),
        Series("not yet due", waiting, colour=charts.PENDING),
    ]
    svg = charts.bars(
        "SLA compliance per severity, in % of the incidents opened",
        labels,
        series,
        x_title="% of the incidents opened",
        formatter=charts.percent,
        stacked=True,
        maximum=100,
    )
    caption = [
        "Incidents opened in the window per severity: resolved by their deadline, breached (resolved "
        "after it or still open past it) or still open and not yet due. Compliance: resolved in time, "
        "of those resolved in time or breached."
    ]
    head = ["Severity", "Deadline", "Opened", "In time", "Breached", "Not yet due", "Compliance"]
    return Chart("chart-sla", "SLA compliance per severity", [Picture(svg)], caption, [Table(head, rows)])


def recurring_chart(stats: Stats) -> Chart:
    pairs = stats.recurring
    svg = charts.bars(
        "Recurring (code, target) pairs: incidents in the window",
        [f"{p.code} · {p.target}" for p in pairs],
        [Series("incidents", [p.incidents for p in pairs])],
        x_title="incidents opened",
    )
    caption = [
        "The (code, target) pairs opened most often in the window (at least twice): where a fix "
        "does not hold, or the cause is elsewhere."
    ]
    if not pairs:
        caption.append("No pair opened more than once in this window.")
    table = Table(
        ["Code", "Target", "Incidents"],
        [
            [
                Cell(p.code, _incidents_link(code=p.code)),
                Cell(p.target, _incidents_link(code=p.code, target=p.target)),
                Cell(f"{p.incidents:,}", number=True),
            ]
            for p in pairs
        ],
    )
    return Chart("chart-recurring", "Top recurring (code, target) pairs", [Picture(svg)], caption, [table])


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _incidents_link(**filters: str) -> str:
    return "/incidents?" + urlencode(filters)


# ------------------------------------------------------------------ facts


@dataclass(frozen=True)
class Facts:
    stats: Stats
    per_day: list[DayCount]
    resolve_times: list[DayResolveTimes]


def board(since: datetime, until: datetime, facts: Facts, deadlines: Mapping[str, timedelta | None]) -> Board:
    slots = buckets(since, until)
    return Board(
        since,
        until,
        facts.stats,
        [
            incidents_chart(facts.per_day, slots),
            resolve_chart(facts.resolve_times, slots, deadlines),
            automation_chart(facts.stats),
            sla_chart(facts.stats, deadlines),
            recurring_chart(facts.stats),
        ],
    )


@dataclass(frozen=True)
class _Kept:
    made_at: datetime
    board: Board


class Boards:
    """The boards of the windows asked for lately. A board older than `fresh_for` is still shown at
    once while it is counted anew in the background (a month of a large store takes seconds to
    count; the page says as of when); only a window never counted yet is counted while the viewer
    waits. One count of a window at a time: a second viewer waits for the first's count."""

    def __init__(
        self,
        make: Callable[[str, datetime], Board],
        clock: Callable[[], datetime],
        fresh_for: timedelta = FRESH_FOR,
        worth_keeping: Callable[[Board], bool] = lambda _board: True,
    ) -> None:
        self._make = make
        self._clock = clock
        self._fresh_for = fresh_for
        #: A board not worth keeping (an empty window: cheap to count, and the first incident
        #: must show at once, not a minute later) is counted again for every viewer.
        self._worth_keeping = worth_keeping
        self._kept: dict[str, _Kept] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, since: str, now: datetime) -> Board:
        with self._guard:
            kept = self._kept.get(since)
            lock = self._locks.setdefault(since, threading.Lock())
        if kept is not None:
            if now - kept.made_at >= self._fresh_for and not lock.locked():
                threading.Thread(target=self._background, args=(since, lock), daemon=True).start()
            return kept.board
        return self._count(since, lock)

    def warm(self, *windows: str) -> None:
        """Count these windows in the background now, one after the other, so that their first
        viewers need not wait."""
        with self._guard:
            locks = [(since, self._locks.setdefault(since, threading.Lock())) for since in windows]

        def count_all() -> None:
            for since, lock in locks:
                self._background(since, lock)

        threading.Thread(target=count_all, daemon=True).start()

    def _background(self, since: str, lock: threading.Lock) -> None:
        try:
            self._count(since, lock)
        except Exception as exc:  # noqa: BLE001 - a failed count leaves the last board shown
            log.warning("dashboard_count_failed", since=since, error=str(exc))

    def _count(self, since: str, lock: threading.Lock) -> Board:
        with lock:
            now = self._clock()
            kept = self._kept.get(since)
            if kept is not None and now - kept.made_at < self._fresh_for:
                return kept.board  # counted while this one waited for the lock
            made = self._make(since, now)
            if not self._worth_keeping(made):
                return made
            with self._guard:
                self._kept.pop(since, None)
                self._kept[since] = _Kept(now, made)
                while len(self._kept) > KEPT:
                    oldest = next(iter(self._kept))
                    self._kept.pop(oldest)
                    self._locks.pop(oldest, None)
            return made


def window(since: str, now: datetime) -> datetime:
    """The window's start; InvalidArgument for a start that is not in the past."""
    start = parse_since(since, now)
    if start is None or start >= now:
        raise InvalidArgument(f"since: {since!r} is not in the past")
    return start


# ------------------------------------------------------------------ route


def router(context: ConsoleContext) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    services: Any = context.services
    history = History(services.store.db)
    trends = Trends(services.store.db)
    deadlines: dict[str, timedelta | None] = dict(services.config.escalation.resolve_within)

    def make(since: str, now: datetime) -> Board:
        start = window(since, now)
        codes = {entry.code.code: entry.code for entry in services.intake.view.catalog.codes}
        per_day, resolve_times = trends.per_day(start, now, catalog_windows(codes), DEFAULT_WINDOWS)
        facts = Facts(read_stats(history, codes, start, now), per_day, resolve_times)
        return board(start, now, facts, deadlines)

    boards = Boards(make, context.now, worth_keeping=lambda board: board.stats.incidents.opened > 0)
    # The default window first: it is what the page opens on.
    boards.warm(DEFAULT_SINCE, *(since for since in PRESETS if since != DEFAULT_SINCE))

    @routes.get("/dashboard")
    def dashboard(request: Request, since: str = DEFAULT_SINCE) -> Response:
        viewer = context.viewer(request)
        since = since.strip() or DEFAULT_SINCE
        now = context.now()
        try:
            window(since, now)  # a bad window is refused before anything is counted or kept
            shown = boards.get(since, now)
        except InvalidArgument as exc:
            return context.problem(request, 400, str(exc))
        return context.page(
            viewer, "dashboard.html", since=since, board=shown, presets=PRESETS, fresh_for=FRESH_FOR
        )

    return routes
