"""The console read as on-call reads it, in a real Chromium against a real `suture serve`: sign in,
the incident list and its filters, an incident's knowledge and timeline, a run's output, the
catalog, the dashboard's charts, the handover; and nothing fetched from outside the daemon.
The actions (approve, silence, pause, ...) are in test_console_forms.py.
"""

from __future__ import annotations

import re

from tests.e2e.console.conftest import CLEAN_OUTPUT, OPERATOR, READER, Console, Visit, pw

expect = pw.expect

CHARTS = (
    "chart-incidents-per-day",
    "chart-time-to-resolve",
    "chart-automation",
    "chart-sla",
    "chart-recurring",
)


def _row_ids(visit: Visit) -> list[int]:
    return [
        int(value)
        for value in visit.page.locator("table#incidents tr.incident").evaluate_all(
            "rows => rows.map(row => row.dataset.id)"
        )
    ]


def _filter(visit: Visit, **fields: str) -> None:
    """Fill the filter form as a person would and submit it (a GET: the URL carries the filter)."""
    form = visit.page.locator("form#filters")
    for name, value in fields.items():
        field = form.locator(f"[name={name}]")
        if field.evaluate("node => node.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    with visit.page.expect_navigation():
        form.locator("button[type=submit]").click()


def test_sign_in_with_name_and_password(visit: Visit) -> None:
    """A wrong password is refused with a message; the right one signs in and the header says who."""
    visit.go("/login")
    visit.shoot("login")
    visit.page.fill("#name", OPERATOR.name)
    visit.page.fill("#password", "not-the-password")
    with visit.page.expect_navigation() as refused:
        visit.page.click("form[action='/login'] button[type=submit]")
    assert refused.value is not None and refused.value.status == 401
    expect(visit.page.get_by_role("alert")).to_contain_text("wrong name or password")
    expect(visit.page.locator("#signed-in-as")).to_have_count(0)

    visit.sign_in(OPERATOR)
    expect(visit.page).to_have_url(re.compile(r"/incidents$"))
    cookies = visit.page.context.cookies()
    assert cookies and all(cookie["httpOnly"] for cookie in cookies), cookies

    with visit.page.expect_navigation():
        visit.page.get_by_role("button", name="Sign out").click()
    expect(visit.page.locator("#signed-in-as")).to_have_count(0)
    visit.go("/incidents")
    expect(visit.page).to_have_url(re.compile(r"/login\?next="))


def test_a_page_asked_for_before_sign_in_opens_after_it(visit: Visit, console: Console) -> None:
    """Reads are not open: an incident's link leads to the sign-in page and back to the incident."""
    incident = console.incidents["DISK-001/web-1"]
    visit.go(f"/incidents/{incident}")
    expect(visit.page).to_have_url(re.compile(r"/login\?next="))
    visit.page.fill("#name", READER.name)
    visit.page.fill("#password", READER.password)
    with visit.page.expect_navigation():
        visit.page.click("form[action='/login'] button[type=submit]")
    expect(visit.page).to_have_url(f"{console.url}/incidents/{incident}")
    expect(visit.page.locator("#signed-in-as")).to_have_text(READER.name)


def test_incident_list_shows_the_open_incidents_and_refreshes_itself(reader: Visit, console: Console) -> None:
    """Every open incident of the seeded history is a row linking to its page; the page reloads itself."""
    reader.go("/incidents")
    rows = _row_ids(reader)
    seeded_open = {number for key, number in console.incidents.items() if not key.endswith("/resolved")}
    assert seeded_open <= set(rows), rows
    assert console.incidents["DISK-001/web-1/resolved"] not in rows
    for number in seeded_open:
        row = reader.page.locator(f"table#incidents tr.incident[data-id='{number}']")
        expect(row.locator("a.incident-link")).to_have_attribute("href", f"/incidents/{number}")
    refresh = reader.page.locator("meta[http-equiv=refresh]").get_attribute("content")
    assert refresh is not None and 0 < int(refresh.split(";")[0]) <= 300
    disk = reader.page.locator(f"tr.incident[data-id='{console.incidents['DISK-001/web-2']}']")
    expect(disk).to_contain_text("clean-disk@1")
    expect(disk).to_contain_text("not acknowledged")
    reader.shoot("incidents")


def test_filters_narrow_the_list(reader: Visit, console: Console) -> None:
    """Code, severity, status and target filters each leave only the matching incidents."""
    reader.go("/incidents")
    ids = console.incidents

    _filter(reader, code="DISK-001")
    expect(reader.page).to_have_url(re.compile(r"[?&]code=DISK-001"))
    assert set(_row_ids(reader)) == {ids["DISK-001/web-1"], ids["DISK-001/web-2"]}

    _filter(reader, code="", severity="medium")
    assert set(_row_ids(reader)) == {ids["APPR-001/app-1"], ids["APPR-001/app-2"]}

    _filter(reader, severity="", status="resolved")
    assert ids["DISK-001/web-1/resolved"] in _row_ids(reader)
    assert ids["DISK-001/web-2"] not in _row_ids(reader)

    _filter(reader, status="open", target="sw-1")
    assert _row_ids(reader) == [ids["NET-001/sw-1"]]
    # The form shows the filter in force, so a reload or a shared link keeps it.
    expect(reader.page.locator("form#filters [name=target]")).to_have_value("sw-1")

    _filter(reader, target="", owner="team-web")
    assert set(_row_ids(reader)) == {ids["APPR-001/app-1"], ids["APPR-001/app-2"]}


def test_open_an_incident_and_read_its_knowledge_first(reader: Visit, console: Console) -> None:
    """From the list to the page: knowledge (summary, diagnosis, manual steps, owner) comes before
    the timeline, and the earlier incident on the same target is linked."""
    reader.go("/incidents?code=DISK-001")
    incident = console.incidents["DISK-001/web-1"]
    with reader.page.expect_navigation():
        reader.page.locator(f"tr.incident[data-id='{incident}'] a.incident-link").click()
    expect(reader.page).to_have_url(f"{console.url}/incidents/{incident}")

    knowledge = reader.page.locator("section#knowledge")
    expect(knowledge).to_contain_text("The root filesystem fills up with old journal files.")
    expect(knowledge).to_contain_text("Look for large files under /var/log")
    expect(knowledge).to_contain_text("journalctl --vacuum-size=500M")
    expect(knowledge).to_contain_text("team-storage")
    first = reader.page.evaluate(
        "() => Boolean(document.querySelector('#knowledge').compareDocumentPosition("
        "document.querySelector('#timeline')) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    assert first, "the knowledge must come before the timeline"

    timeline = reader.page.locator("section#timeline")
    expect(timeline).to_contain_text("opened")
    expect(timeline).to_contain_text("alertmanager")
    previous = reader.page.locator("section#previous")
    earlier = console.incidents["DISK-001/web-1/resolved"]
    expect(previous.locator(f"a[href='/incidents/{earlier}']")).to_be_visible()
    # A reader sees the page, not the buttons that change it.
    expect(reader.page.locator("form#ack, form#note, form#resolve")).to_have_count(0)
    reader.shoot("incident")


def test_open_a_run_and_read_its_output(reader: Visit, console: Console) -> None:
    """From the incident to its run: the step's rendered parameters, HTTP status and output."""
    run = console.runs["finished"]
    reader.go(f"/incidents/{console.incidents['DISK-001/web-2']}")
    with reader.page.expect_navigation():
        reader.page.locator(f"section#runs a[href='/runs/{run}']").click()
    expect(reader.page).to_have_url(f"{console.url}/runs/{run}")

    steps = reader.page.locator("section#steps div.step")
    expect(steps).to_have_count(1)
    step = steps.first
    expect(step).to_contain_text("vacuum journal")
    expect(step).to_contain_text("succeeded")
    expect(step).to_contain_text(f"{console.hook.url}/clean")
    expect(step.locator("dt", has_text="HTTP status")).to_be_visible()
    expect(step.locator("dd", has_text=re.compile(r"^\s*200\s*$"))).to_have_count(1)
    output = step.locator("pre.output")
    expect(output).to_contain_text(CLEAN_OUTPUT)
    family = output.evaluate("node => getComputedStyle(node).fontFamily")
    assert "mono" in family.lower() or "courier" in family.lower(), family
    expect(reader.page.locator(".badge.dry-run")).to_have_count(0)
    reader.shoot("run")


def test_a_dry_run_is_marked_as_such(reader: Visit, console: Console) -> None:
    """A dry run's page carries the dry-run badge and says nothing was executed."""
    reader.go(f"/runs/{console.runs['dry']}")
    expect(reader.page.locator(".badge.dry-run").first).to_be_visible()
    expect(reader.page.locator("main")).to_contain_text("nothing was executed")


def test_catalog_lists_codes_and_playbooks(reader: Visit) -> None:
    """The catalog page names every code in force and every playbook version."""
    reader.go("/catalog")
    codes = reader.page.locator("table#codes")
    for code in ("DISK-001", "APPR-001", "NET-001", "DRY-001", "FAIL-001"):
        expect(codes).to_contain_text(code)
    playbooks = reader.page.locator("table#playbooks")
    for playbook in ("clean-disk@1", "restart-service@1", "restart-service@2", "broken-fix@1"):
        expect(playbooks).to_contain_text(playbook)
    reader.shoot("catalog")


def test_a_playbook_versions_yaml_and_its_diff(reader: Visit) -> None:
    """From the catalog to a version's stored YAML, then to the diff against the version before."""
    reader.go("/catalog")
    with reader.page.expect_navigation():
        reader.page.locator("table#playbooks a[href='/catalog/playbooks/restart-service/2']").click()
    expect(reader.page.locator("#playbook-yaml")).to_contain_text("graceful: true")
    expect(reader.page.locator("#playbook-sha256")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    with reader.page.expect_navigation():
        reader.page.locator("#diff-previous").click()
    diff = reader.page.locator("pre#diff")
    expect(diff.locator(".del", has_text="description: Restart nginx through the host agent.")).to_have_count(
        1
    )
    expect(diff.locator(".ins", has_text="graceful")).not_to_have_count(0)


def test_dashboard_draws_its_charts(reader: Visit) -> None:
    """Each of the five charts is an SVG drawn on the server with something in it."""
    reader.go("/dashboard")
    expect(reader.page.locator("h1")).to_have_text("Dashboard")
    # The seeded history, not the empty board of the daemon's start.
    opened = reader.page.locator("dt:text-is('Opened') + dd")
    assert int(opened.inner_text().replace(",", "")) > 0
    empty = reader.page.locator("figure.chart#chart-incidents-per-day", has_text="nothing in this window")
    expect(empty).to_have_count(0)
    for chart in CHARTS:
        # One SVG, or one per severity (time to resolve): each drawn at a readable size, with marks.
        svgs = reader.page.locator(f"figure.chart#{chart} > svg, figure.chart#{chart} :not(svg) > svg")
        expect(svgs.first).to_be_visible()
        for svg in svgs.all():
            box = svg.bounding_box()
            assert box is not None and box["width"] > 50 and box["height"] > 30, (chart, box)
            marks = svg.locator("rect, path, circle, line, polyline, polygon").count()
            assert marks > 0, f"{chart} draws nothing"
    reader.shoot("dashboard")


def test_handover_is_a_printable_page(reader: Visit) -> None:
    """The handover report renders as a page; printed, the navigation is left out."""
    response = reader.go("/handover")
    assert response.status == 200
    expect(reader.page.locator("h1")).to_be_visible()
    reader.shoot("handover")
    reader.page.emulate_media(media="print")
    expect(reader.page.locator("header nav")).to_be_hidden()


def test_every_page_loads_nothing_from_outside_the_daemon(operator: Visit, console: Console) -> None:
    """Every page, signed in as an operator (who sees the most forms), asks only the daemon itself."""
    pages = [
        "/login",
        "/incidents",
        f"/incidents/{console.incidents['DISK-001/web-1']}",
        f"/runs/{console.runs['finished']}",
        "/approvals",
        "/silences",
        "/status",
        "/catalog",
        "/dashboard",
        "/handover",
    ]
    for path in pages:
        response = operator.go(path)
        operator.page.wait_for_load_state("load")
        assert response.status == 200, (path, response.status)
    assert f"{console.url}/console/static/console.css" in operator.requested
    assert operator.outside() == []


def test_pages_are_labelled_keyboard_usable_and_fit_a_phone(operator: Visit, console: Console) -> None:
    """Every visible field is labelled, the first Tab reaches "skip to content", and on a phone-sized
    screen no page scrolls sideways (wide tables scroll inside their own box)."""
    operator.go("/incidents")
    operator.page.keyboard.press("Tab")
    focused = operator.page.evaluate("() => document.activeElement.getAttribute('href')")
    assert focused == "#main", focused

    operator.page.set_viewport_size({"width": 390, "height": 844})
    problems = []
    for path in (
        "/incidents",
        f"/incidents/{console.incidents['NET-001/sw-1']}",
        f"/runs/{console.runs['finished']}",
        "/approvals",
        "/silences",
        "/status",
        "/catalog",
        "/dashboard",
        "/handover",
    ):
        operator.go(path)
        if path.startswith("/incidents"):
            operator.shoot("phone-incidents" if path == "/incidents" else "phone-incident")
        unlabelled = operator.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(f => f.type !== 'hidden')
                .filter(f => !f.getAttribute('aria-label') && !f.closest('label')
                             && !(f.id && document.querySelector(`label[for="${f.id}"]`)))
                .map(f => f.outerHTML)"""
        )
        if unlabelled:
            problems.append(f"{path}: fields without a label: {unlabelled}")
        overflow = operator.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 1:
            wider = operator.page.evaluate(
                """() => [...document.querySelectorAll('main *')]
                    .filter(node => node.getBoundingClientRect().right > window.innerWidth + 1)
                    .filter(node => !node.closest('.table-wrap, pre'))
                    .map(node => node.tagName.toLowerCase() + (node.id ? '#' + node.id : ''))
                    .slice(0, 4)"""
            )
            problems.append(f"{path}: scrolls sideways by {overflow}px on a phone ({wider})")
    assert problems == [], "\n".join(problems)
