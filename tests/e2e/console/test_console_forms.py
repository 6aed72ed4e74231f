"""The console's actions clicked in a real Chromium: approve and reject a waiting run, ack, note
and resolve an incident, add and expire a silence, pause and resume, reset a breaker. Each is
checked on the page and at the source (the API) under the signed-in name; a post without the
CSRF token, or by a read-only user, is refused and changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import wait_for
from tests.e2e.console.conftest import OPERATOR, RESTART_OUTPUT, Console, Visit, pw

expect = pw.expect


def _click(visit: Visit, selector: Any) -> None:
    """Press a form's button and wait for the page the action leads to (a 303 back to a page)."""
    locator = visit.page.locator(selector) if isinstance(selector, str) else selector
    with visit.page.expect_navigation():
        locator.click()


def _timeline(console: Console, incident: int, kind: str) -> list[dict[str, Any]]:
    return [e for e in console.api(f"/api/v1/incidents/{incident}")["timeline"] if e["kind"] == kind]


def _csrf(visit: Visit) -> str:
    """The signed-in session's CSRF token, as every form of the page carries it."""
    token = visit.page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    return token


def test_a_form_post_without_the_csrf_token_is_refused(operator: Visit, console: Console) -> None:
    """With the session cookie but no (or a wrong) token, ack and approve answer 403 and change nothing."""
    incident = console.open_incident("PacketLoss", "net-csrf", "sw-8")
    operator.go(f"/incidents/{incident}")
    ack = operator.base + (operator.page.locator("form#ack").get_attribute("action") or "")
    assert ack.endswith(f"/incidents/{incident}/ack")
    assert operator.page.locator("form#ack input[type=hidden][name=csrf]").count() == 1

    for fields in ({}, {"csrf": "0" * 64}):
        refused = operator.page.request.post(ack, form=fields, max_redirects=0)
        assert refused.status == 403, (fields, refused.status)
        assert "CSRF" in refused.text()
    approve = f"{operator.base}/runs/{console.runs['reject']}/approve"
    assert operator.page.request.post(approve, form={}, max_redirects=0).status == 403

    assert console.api(f"/api/v1/incidents/{incident}")["acknowledged_at"] is None
    assert console.api(f"/api/v1/runs/{console.runs['reject']}")["status"] == "awaiting_approval"
    # The same post with the page's token goes through: the token, nothing else, was missing.
    accepted = operator.page.request.post(ack, form={"csrf": _csrf(operator)}, max_redirects=0)
    assert accepted.status == 303
    assert console.api(f"/api/v1/incidents/{incident}")["acknowledged_by"] == OPERATOR.name


def test_a_read_user_sees_no_approve_button_and_cannot_post_one(reader: Visit, console: Console) -> None:
    """A signed-in reader has a valid token but not the role: no buttons, and the post is refused."""
    reader.go("/approvals")
    row = reader.page.locator(f"table#approvals tr[data-run='{console.runs['reject']}']")
    expect(row).to_be_visible()
    expect(row.locator("form.approve, form.reject")).to_have_count(0)
    token = _csrf(reader)  # the sign-out form's
    refused = reader.page.request.post(
        f"{reader.base}/runs/{console.runs['reject']}/approve", form={"csrf": token}, max_redirects=0
    )
    assert refused.status == 403 and "operate" in refused.text()
    assert console.api(f"/api/v1/runs/{console.runs['reject']}")["status"] == "awaiting_approval"


def test_approve_a_waiting_run_and_see_it_execute_under_the_users_name(
    operator: Visit, console: Console
) -> None:
    """Approve on /approvals: the run executes (its output on the run page) and the incident's
    timeline records the approval under the signed-in name."""
    run = console.runs["approve"]
    operator.go("/approvals")
    row = operator.page.locator(f"table#approvals tr[data-run='{run}']")
    expect(row).to_contain_text("restart-service@2")
    operator.shoot("approvals")
    _click(operator, row.locator("form.approve button"))
    expect(operator.page).to_have_url(re.compile(rf"/runs/{run}(\?|$)"))
    expect(operator.page.locator("#flash")).to_contain_text("approved")

    wait_for(lambda: console.api(f"/api/v1/runs/{run}")["finished_at"], timeout=10, interval=0.1)
    operator.page.reload()
    expect(operator.page.locator("main .badge.succeeded").first).to_be_visible()
    expect(operator.page.locator("section#steps div.step pre.output")).to_contain_text(RESTART_OUTPUT)
    expect(operator.page.locator("form.approve")).to_have_count(0)

    incident = console.incidents["APPR-001/app-1"]
    _click(operator, operator.page.locator(f"main a[href='/incidents/{incident}']").first)
    approved = operator.page.locator("section#timeline tr.event.approved")
    expect(approved).to_contain_text(OPERATOR.name)
    assert [e["actor"] for e in _timeline(console, incident, "approved")] == [OPERATOR.name]
    operator.go("/approvals")
    expect(operator.page.locator(f"table#approvals tr[data-run='{run}']")).to_have_count(0)


def test_reject_a_waiting_run_with_a_reason(operator: Visit, console: Console) -> None:
    """Reject with a reason: the run never executes, and the rejection is recorded under the name."""
    run = console.runs["reject"]
    operator.go("/approvals")
    row = operator.page.locator(f"table#approvals tr[data-run='{run}']")
    row.locator("form.reject input[name=reason]").fill("restarting now would drop live sessions")
    _click(operator, row.locator("form.reject button"))
    expect(operator.page.locator("#flash")).to_contain_text("rejected")
    expect(operator.page.locator("main .badge.rejected").first).to_be_visible()
    assert console.api(f"/api/v1/runs/{run}")["status"] == "rejected"
    [rejected] = _timeline(console, console.incidents["APPR-001/app-2"], "rejected")
    assert rejected["actor"] == OPERATOR.name


def test_ack_note_and_resolve_an_incident(operator: Visit, console: Console) -> None:
    """The three buttons of an incident page, each seen on the page and recorded under the name."""
    incident = console.open_incident("PacketLoss", "net-ack", "sw-9")
    operator.go(f"/incidents/{incident}")
    _click(operator, "form#ack button")
    expect(operator.page.locator("#flash")).to_contain_text("acknowledged")
    expect(operator.page.locator("form#ack")).to_have_count(0)
    expect(operator.page.locator("main")).to_contain_text(f"by {OPERATOR.name}")

    operator.page.locator("form#note textarea[name=text]").fill(
        "uplink flaps since the switch firmware update"
    )
    _click(operator, "form#note button")
    expect(operator.page.locator("main")).to_contain_text("uplink flaps since the switch firmware update")

    _click(operator, "form#resolve button")
    expect(operator.page.locator("#flash")).to_contain_text("resolved")
    expect(operator.page.locator("form#resolve")).to_have_count(0)

    found = console.api(f"/api/v1/incidents/{incident}")
    assert found["status"] == "resolved" and found["acknowledged_by"] == OPERATOR.name
    assert [note["by"] for note in found["notes"]] == [OPERATOR.name]


def test_add_and_expire_a_silence(operator: Visit, console: Console) -> None:
    """A silence added with the form shows in the table under the name; expiring it ends it."""
    operator.go("/silences")
    form = operator.page.locator("form#add-silence")
    form.locator("[name=code]").fill("NET-001")
    form.locator("[name=target]").fill("sw-1")
    form.locator("[name=alertname]").fill("PacketLoss")
    form.locator("[name=duration]").fill("2h")
    form.locator("[name=comment]").fill("uplink maintenance by the carrier")
    _click(operator, form.locator("button[type=submit]"))
    expect(operator.page.locator("#flash")).to_contain_text("silence added")

    row = operator.page.locator("table#silences tr.silence", has_text="uplink maintenance by the carrier")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(OPERATOR.name)
    expect(row).to_contain_text("NET-001")
    [made] = [s for s in console.api("/api/v1/silences")["items"] if s["comment"].startswith("uplink")]
    assert made["created_by"] == OPERATOR.name and made["active"] is True
    assert made["matchers"] == {"code": "NET-001", "target": "sw-1", "alertname": "PacketLoss"}
    operator.shoot("silences")

    _click(operator, row.locator("form.expire button"))
    expect(operator.page.locator("#flash")).to_contain_text("silence expired")
    expect(operator.page.locator("table#silences tr.silence", has_text="uplink maintenance")).to_have_count(0)
    assert made["id"] not in [s["id"] for s in console.api("/api/v1/silences")["items"]]
    [ended] = [s for s in console.api("/api/v1/silences?all=true")["items"] if s["id"] == made["id"]]
    assert ended["active"] is False and ended["expired_by"] == OPERATOR.name


def test_pause_and_resume_automation(operator: Visit, console: Console) -> None:
    """The pause switch on /status: the page says paused and the daemon is; resume undoes both."""
    operator.go("/status")
    expect(operator.page.locator("form#resume")).to_have_count(0)
    operator.page.locator("form#pause [name=reason]").fill("database failover in progress")
    _click(operator, "form#pause button")
    try:
        expect(operator.page.locator("main")).to_contain_text("paused")
        expect(operator.page.locator("#paused")).to_be_visible()
        assert console.api("/api/v1/status")["paused"] is True
        expect(operator.page.locator("form#pause")).to_have_count(0)
    finally:
        _click(operator, "form#resume button")
    expect(operator.page.locator("#flash")).to_contain_text("resumed")
    expect(operator.page.locator("#paused")).to_have_count(0)
    expect(operator.page.locator("form#pause")).to_be_visible()
    assert console.api("/api/v1/status")["paused"] is False


def test_reset_an_open_breaker(operator: Visit, console: Console) -> None:
    """The breaker the failed run opened has a reset button; pressing it closes the breaker."""
    operator.go("/status")
    breaker = operator.page.locator("section#breakers tr", has_text="broken-fix@1")
    expect(breaker.locator("form.reset")).to_have_count(1)
    operator.shoot("status")
    _click(operator, breaker.locator("form.reset button"))
    expect(operator.page.locator("#flash")).to_contain_text("breaker reset")
    expect(operator.page.locator("section#breakers form.reset")).to_have_count(0)
    expect(operator.page.locator("section#breakers")).to_contain_text(f"reset by {OPERATOR.name}")
    [reset] = [b for b in console.api("/api/v1/breakers")["items"] if b["playbook"] == "broken-fix"]
    assert reset["status"] != "open" and reset["reset_by"] == OPERATOR.name
