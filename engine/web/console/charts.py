"""Server-side SVG charts for the console (pygal), ready to inline in a page.

pygal draws; this module makes what it draws fit a page that loads nothing from outside the daemon
and runs no inline script: no tooltip script (`js=[]`) and no inline config script either (the
page's CSP would refuse it), no comments (they name pygal's web site), no XML declaration. Each
chart is an accessible image (`role="img"` named by its `<title>`), and each bar or point carries
its value in its own `<title>`, which a browser shows on hover without any script.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

if TYPE_CHECKING:
    from pygal.style import Style

#: Colours a reader tells apart, also with a colour vision deficiency (Okabe and Ito), then greys.
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#8c6d1f",
    "#332288",
    "#117733",
    "#882255",
)
OTHER_COLOUR = "#9aa3ad"
GOOD, BAD, PENDING = "#1a7f37", "#b42318", "#9aa3ad"
#: Drawing sizes (the SVG's viewBox; the page's CSS scales it to its column): a chart as wide as
#: the page, one of several side by side, one in a column of three. Near the size it is shown at, so
#: that its text keeps about the page's size.
WIDE, SMALL, NARROW = (1000, 360), (420, 300), (480, 300)
_SERIE = re.compile(r"\bserie-(\d+)\b")
_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'


@dataclass(frozen=True)
class Series:
    """One named line or set of bars; `None` is a gap (no value that day)."""

    name: str
    values: Sequence[float | None]
    colour: str | None = None
    dashed: bool = False
    dots: bool = True


Formatter = Callable[[float], str]


def count(value: float) -> str:
    return f"{value:,.0f}"


def hours(value: float) -> str:
    return f"{value:.2f} h" if value < 10 else f"{value:.1f} h"


def percent(value: float) -> str:
    return f"{value:.0f} %"


def stacked_columns(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_title: str,
    label_every: int = 1,
    size: tuple[int, int] = WIDE,
) -> Markup:
    """Vertical bars stacked per label (a day): how a total splits."""
    options = _config(series, y_title=y_title, formatter=count, labels=labels, size=size)
    return _render(_pygal().StackedBar, {**options, **_labels_every(labels, label_every)}, title, series)


def lines(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_title: str,
    formatter: Formatter = hours,
    label_every: int = 1,
    size: tuple[int, int] = WIDE,
) -> Markup:
    """Lines over labels (days); a dashed series reads as a threshold."""
    options = _config(series, y_title=y_title, formatter=formatter, labels=labels, size=size)
    options.update(allow_interruptions=True, **_labels_every(labels, label_every))
    return _render(_pygal().Line, options, title, series)


def bars(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    x_title: str,
    formatter: Formatter = count,
    stacked: bool = False,
    maximum: float | None = None,
    width: int = NARROW[0],
) -> Markup:
    """Horizontal bars, one row per label (a playbook version, a severity, a pair), top row first;
    as high as its rows need."""
    kind = _pygal().HorizontalStackedBar if stacked else _pygal().HorizontalBar
    # pygal draws the first label at the bottom: give it the rows bottom up, so the page reads down.
    rows = list(reversed(labels))
    upward = [Series(s.name, list(reversed(s.values)), s.colour, s.dashed, s.dots) for s in series]
    per_row = 1 if stacked else max(1, len(series))
    height = max(NARROW[1] // 2, 90 + len(rows) * (8 + 16 * per_row))
    options = _config(upward, y_title="", formatter=formatter, labels=rows, size=(width, height))
    options.update(x_title=x_title, truncate_label=48)
    if maximum is not None:
        options["range"] = (0, maximum)
    return _render(kind, options, title, upward)


# ------------------------------------------------------------------ pygal


def _pygal() -> Any:
    """pygal, imported when the first chart is drawn, not while the daemon starts."""
    import pygal

    return pygal


def _style(series: Sequence[Series]) -> Style:
    from pygal.style import Style

    colours = tuple(s.colour or PALETTE[n % len(PALETTE)] for n, s in enumerate(series))
    return Style(
        font_family=_FONT,
        background="transparent",
        plot_background="transparent",
        foreground="#1b1f24",
        foreground_strong="#1b1f24",
        foreground_subtle="#5b6570",
        guide_stroke_color="#d6dbe0",
        major_guide_stroke_color="#aab3bd",
        opacity=".9",
        opacity_hover="1",
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=13,
        title_font_size=14,
        value_font_size=12,
        no_data_font_size=20,
        colors=colours or PALETTE,
        transition="0ms",
    )


def _config(
    series: Sequence[Series],
    *,
    y_title: str,
    formatter: Formatter,
    labels: Sequence[str],
    size: tuple[int, int],
) -> dict[str, Any]:
    return {
        "js": [],  # pygal's tooltips script lives on an outside host
        "disable_xml_declaration": True,
        "style": _style(series),
        "width": size[0],
        "height": size[1],
        "legend_at_bottom": True,
        # pygal makes room for `len // columns` legend rows: one row of up to five, else its own
        # square layout (ceil(sqrt(len)) columns), for which it makes room enough.
        "legend_at_bottom_columns": len(series) if 0 < len(series) <= 5 else None,
        "show_legend": len(series) > 1,
        "y_title": y_title,
        "formatter": formatter,
        "x_labels": list(labels),
        "no_data_text": "nothing in this window",
        "print_values": False,
        "margin": 10,
        "truncate_label": -1,
        "truncate_legend": -1,
    }


def _labels_every(labels: Sequence[str], every: int) -> dict[str, Any]:
    """Many days: a label every `every` of them, the others unwritten."""
    if every <= 1:
        return {}
    return {"x_labels_major": list(labels[::every]), "show_minor_x_labels": False}


def _render(kind: Any, options: dict[str, Any], title: str, series: Sequence[Series]) -> Markup:
    names = [s.name for s in series]
    chart = kind(**options)
    chart.add_xml_filter(lambda root: _clean(root, title, names))
    for one in series:
        style: dict[str, Any] = {"width": 2}
        if one.dashed:
            style["dasharray"] = "7,5"
        chart.add(one.name, list(one.values), stroke_style=style, show_dots=one.dots and not one.dashed)
    # pygal escapes every text and attribute it writes (ElementTree), names and labels included.
    return Markup(chart.render())


def _local(tag: Any) -> str | None:
    """An element's name without its namespace; None for a comment or processing instruction."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else None


def _clean(root: Any, title: str, names: Sequence[str]) -> Any:
    """No script, no comment; the chart named by its title; each value's description as a title."""
    _drop(root, lambda element: _local(element.tag) in (None, "script"))
    chart_id = root.get("id") or "chart"
    root.set("role", "img")
    root.set("aria-labelledby", f"{chart_id}-title")
    for child in root:
        if _local(child.tag) == "title":
            child.text = title
            child.set("id", f"{chart_id}-title")
    for group in root.iter():
        found = _SERIE.search(group.get("class") or "")
        if _local(group.tag) != "g" or found is None or "series" not in (group.get("class") or ""):
            continue
        index = int(found.group(1))
        name = names[index] if index < len(names) else ""
        for element in group.iter():
            _value_title(element, name)
    _drop(root, lambda element: _local(element.tag) == "desc")
    return root


def _value_title(element: Any, name: str) -> None:
    """`<desc class="value">` (what pygal's script would show) as a `<title>` the browser shows."""
    descs = {d.get("class", "").split(" ")[0]: d.text or "" for d in element if _local(d.tag) == "desc"}
    if "value" not in descs:
        return
    label = descs.get("x_label", "")
    text = " · ".join(part for part in (name, label) if part) + f": {descs['value']}"
    tip = element.makeelement("title", {})
    tip.text = text
    element.insert(0, tip)


def _drop(root: Any, unwanted: Callable[[Any], bool]) -> None:
    for parent in list(root.iter()):
        for child in list(parent):
            if unwanted(child):
                parent.remove(child)
