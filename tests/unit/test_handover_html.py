"""The HTML handover: the contract's sections as <h2> in order, the same facts as the Markdown, and
nothing an alert or a person wrote ever becomes markup."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from html.parser import HTMLParser

from engine.analytics.handover import HEADINGS, HandoverFacts
from engine.analytics.handover_html import TITLES, render_handover_html
from engine.analytics.stats import build_stats
from engine.store.history import AwaitingRun, CatalogChange, NoteFacts, Window
from tests.unit.test_handover import CODES, FAILED_RUN, GOOD_RUN, NOW, OPEN, RESOLVED, SINCE

SCRIPT = "<script>alert('pwned')</script>"


class Page(HTMLParser):
    """What a browser would build: headings by level, script elements, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.scripts = 0
        self.external: list[str] = []
        self._open: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.external.append(value)
        if tag in {"h1", "h2", "h3"}:
            self._open, self._text = tag, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self.headings.append((tag, self._text.strip()))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text += data


def facts(**changed: object) -> HandoverFacts:
    hostile = dataclasses.replace(OPEN, title=f"Disk full {SCRIPT}", target=f"db-1{SCRIPT}")
    window = Window(SINCE, NOW, [hostile, RESOLVED], [FAILED_RUN, GOOD_RUN], [], [], [])
    before = Window(SINCE - timedelta(days=7), SINCE, [], [], [], [], [])
    waiting = dataclasses.replace(
        FAILED_RUN, id=9, incident_id=44, status="awaiting_approval", started_at=None, finished_at=None
    )
    values: dict[str, object] = {
        "now": NOW,
        "since": SINCE,
        "open_incidents": [hostile],
        "open_runs": [FAILED_RUN],
        "awaiting": [AwaitingRun(waiting, "APPR-001", "Needs approval", "db-9")],
        "stats": build_stats(window, CODES, NOW),
        "previous": build_stats(before, CODES, SINCE),
        "changes": [
            CatalogChange(
                "playbook",
                "disk-cleanup",
                3,
                "ab" * 32,
                NOW - timedelta(days=1),
                "name: disk-cleanup\nversion: 3\ntimeout: 600s\n",
                "name: disk-cleanup\nversion: 2\ntimeout: 300s\n",
            )
        ],
        "notes": [
            NoteFacts(NOW - timedelta(hours=1), "alice", f"WAL files {SCRIPT}", 42, "DISK-001", "db-1")
        ],
    }
    values.update(changed)
    return HandoverFacts(**values)  # type: ignore[arg-type]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_sections_are_the_contracts_headings_as_h2_in_order() -> None:
    page = parse(render_handover_html(facts(), CODES))
    assert [text for tag, text in page.headings if tag == "h2"] == [h.removeprefix("## ") for h in HEADINGS]
    assert TITLES[0] == "Open incidents" and TITLES[-1] == "Numbers"
    assert page.headings[0][0] == "h1" and page.headings[0][1].startswith("Handover ")


def test_alert_and_note_values_are_escaped_never_markup() -> None:
    html = render_handover_html(facts(), CODES)
    page = parse(html)
    assert page.scripts == 0  # no <script> element, even from the incident title, target and note
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert f"#42 DISK-001: Disk full {SCRIPT}" in [text for _, text in page.headings]  # shown as text


def test_a_newcomer_finds_what_to_do_and_nothing_is_loaded_from_elsewhere() -> None:
    html = render_handover_html(facts(), CODES)
    assert "Find the largest files: du -xh / | sort -h | tail" in html  # manual steps, as <ol>
    assert "<ol>" in html and "<strong>Owner:</strong> infra" in html
    assert "disk-cleanup@3 failed at" in html  # what automation tried
    assert "suture approve 9" in html
    assert "-timeout: 300s" in html and "+timeout: 600s" in html  # the catalog diff, in <pre>
    # ... and whether its review replayed it, as in the Markdown report, without Markdown marks
    assert "no replay was run for it (suture validate --replay 7d in review records one)" in html
    assert "(needs attention)" in html
    assert parse(html).external == []  # no CDN, no stylesheet or script from elsewhere


def test_empty_sections_say_nothing() -> None:
    empty = facts(open_incidents=[], open_runs=[], awaiting=[], changes=[], notes=[])
    html = render_handover_html(empty, CODES)
    after_open = html.split("<h2", 2)[1]
    assert "Nothing." in after_open
    assert [t for tag, t in parse(html).headings if tag == "h2"] == list(TITLES)


def test_an_incident_without_runs_says_so() -> None:
    lonely = facts(open_runs=[])
    assert "nothing: no run for this incident" in render_handover_html(lonely, CODES)
