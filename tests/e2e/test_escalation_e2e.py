"""Escalation through the real daemon: deadlines pass, every kind of channel hears of it, people
acknowledge, note and resolve, and the outbox keeps its promises across a kill -9."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import DaemonProcess, free_port, run_cli, wait_for
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond

SIGNING = "whsec-0123456789abcdef"
PD_KEY = "R0UT1NGKEY0123456789abcdefabcdef"
OPS_TOKEN = "ops-token-0123456789abcdef"

CODE = """
- code: CRIT-001
  title: Payments API down
  severity: critical
  match: {alertname: PaymentsDown}
  target: "{{ labels.instance }}"
  mode: manual
  escalation: {respond_within: 2s, resolve_within: 1h}
  knowledge:
    summary: The payments API answers 5xx.
    manual_steps: ["Check the API pods: kubectl -n pay get pods", "Roll back the last deploy"]
    owner: payments
"""


class _Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def mailbox() -> Iterator[tuple[_Mailbox, int]]:
    handler = _Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _channels(hook: TestHttpServer, smtp_port: int) -> list[dict[str, Any]]:
    return [
        {"name": "chat", "kind": "slack", "url": hook.url_for("/slack"), "events": ["escalation"]},
        {
            "name": "hook",
            "kind": "webhook",
            "url": hook.url_for("/hook"),
            "signing_secret": "SIGNING",
            "events": ["all"],
        },
        {
            "name": "pager",
            "kind": "pagerduty",
            "url": hook.url_for("/pd"),
            "routing_key_secret": "PD_KEY",
            "events": ["escalation", "resolved"],
            "match": {"severity": "critical|high"},
        },
        {
            "name": "mail",
            "kind": "email",
            "smtp": {"host": "127.0.0.1", "port": smtp_port},
            "from": "suture@example.org",
            "to": ["oncall@example.org"],
            "events": ["escalation"],
        },
    ]


def _start(
    daemon_factory: Any, db_url: str, hook: TestHttpServer, smtp_port: int, **extra: Any
) -> DaemonProcess:
    hook.script("/pd", [respond(202, json={"status": "success", "message": "Event processed"})] * 20)
    sections: dict[str, Any] = {
        "secrets": {"SIGNING": {"env": "T_SIGNING"}, "PD_KEY": {"env": "T_PD_KEY"}},
        "notifications": _channels(hook, smtp_port),
        "escalation": {"repeat": "1h", "check_every": "1s"},
        "server": {"public_url": "https://suture.example.org"},
        "access": {
            "tokens": [{"name": "chatops", "token_env": "T_OPS", "role": "operate"}],
            "open_reads": True,
        },
        **extra,
    }
    env = {"T_SIGNING": SIGNING, "T_PD_KEY": PD_KEY, "T_OPS": OPS_TOKEN}
    return daemon_factory(db_url, env=env, files={"codes/zz-crit.yaml": CODE}, **sections)  # type: ignore[no-any-return]


def _fire(daemon: DaemonProcess, fingerprint: str, status: str = "firing") -> int:
    ends = "2026-11-23T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    alert = am_alert("PaymentsDown", fingerprint=fingerprint, status=status, ends_at=ends, instance="pay-1")
    answer = daemon.post("alertmanager", am_body(alert, status=status))
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    ids = receipt["incidents_opened"] or receipt["incidents_resolved"] or receipt["incidents_updated"]
    return int(ids[0])


def _posts(hook: TestHttpServer, path: str) -> list[Any]:
    return [r for r in hook.requests if r.path == path]


def test_an_unacknowledged_critical_incident_reaches_all_four_channels(
    daemon_factory: Any, db_url: str, hook: TestHttpServer, mailbox: tuple[_Mailbox, int]
) -> None:
    box, smtp_port = mailbox
    daemon = _start(daemon_factory, db_url, hook, smtp_port)
    incident_id = _fire(daemon, "pay-down-1")

    # The webhook hears of the opening at once; the deadline has not passed yet.
    opened = wait_for(lambda: [r for r in _posts(hook, "/hook") if r.json()["event"] == "incident_opened"])
    assert opened[0].json()["incident"]["id"] == incident_id
    shown = daemon.get(f"/api/v1/incidents/{incident_id}")
    assert shown["respond_by"] is not None and shown["escalated_at"] is None

    # Each channel is sent apart: wait for all four, in whatever order they arrive.
    wait_for(
        lambda: (
            len(box.messages) == 1
            and _posts(hook, "/slack")
            and _posts(hook, "/pd")
            and any(r.json()["event"] == "escalation" for r in _posts(hook, "/hook"))
        ),
        timeout=20,
    )

    slack = _posts(hook, "/slack")[0].json()
    assert "CRIT-001" in slack["text"] and "pay-1" in slack["text"]
    assert isinstance(slack["blocks"], list) and slack["blocks"]
    slack_words = json.dumps(slack["blocks"])
    assert "kubectl -n pay get pods" in slack_words and "payments" in slack_words
    assert f"https://suture.example.org/api/v1/incidents/{incident_id}" in slack_words

    escalation = next(r for r in _posts(hook, "/hook") if r.json()["event"] == "escalation")
    body = escalation.json()
    assert set(body) == {"event", "incident", "sent_at"}
    assert body["incident"]["id"] == incident_id and body["incident"]["severity"] == "critical"
    expected = hmac.new(SIGNING.encode(), escalation.body, hashlib.sha256).hexdigest()
    assert escalation.header("X-Suture-Signature") == f"sha256={expected}"

    trigger = _posts(hook, "/pd")[0].json()
    assert trigger["routing_key"] == PD_KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == f"suture-{incident_id}"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "pay-1"
    assert "CRIT-001" in trigger["payload"]["summary"]

    rcpt, mail = box.messages[0]
    assert rcpt == ["oncall@example.org"]
    assert "CRIT-001" in str(mail["Subject"])
    kinds = sorted(part.get_content_type() for part in mail.walk() if not part.is_multipart())
    assert kinds == ["text/html", "text/plain"]

    shown = daemon.get(f"/api/v1/incidents/{incident_id}")
    assert shown["escalated_at"] is not None
    kinds_on_timeline = [entry["kind"] for entry in shown["timeline"]]
    assert "escalated" in kinds_on_timeline and kinds_on_timeline.count("notified") >= 5

    sent = daemon.get("/api/v1/notifications?status=sent")["items"]
    assert sorted({item["channel"] for item in sent}) == ["chat", "hook", "mail", "pager"]
    # Escalation fires once per deadline: a few more checks add nothing (repeat is 1h).
    time.sleep(2.5)
    assert len(box.messages) == 1 and len(_posts(hook, "/slack")) == 1

    # The resolution reaches PagerDuty with the same dedup key.
    _fire(daemon, "pay-down-1", status="resolved")
    resolve = wait_for(
        lambda: [r.json() for r in _posts(hook, "/pd") if r.json()["event_action"] == "resolve"]
    )
    assert resolve[0] == {
        "routing_key": PD_KEY,
        "event_action": "resolve",
        "dedup_key": f"suture-{incident_id}",
    }
    metrics = httpx.get(f"{daemon.url}/metrics", timeout=5).text
    assert 'suture_notifications_total{channel="pager",event="escalation",outcome="sent"} 1.0' in metrics


def test_acknowledging_stops_response_escalation(
    daemon_factory: Any, db_url: str, hook: TestHttpServer, mailbox: tuple[_Mailbox, int]
) -> None:
    box, smtp_port = mailbox
    daemon = _start(daemon_factory, db_url, hook, smtp_port)
    incident_id = _fire(daemon, "pay-down-ack")
    denied = httpx.post(f"{daemon.url}/api/v1/incidents/{incident_id}/ack", json={}, timeout=5)
    assert denied.status_code == 401
    acked = httpx.post(
        f"{daemon.url}/api/v1/incidents/{incident_id}/ack",
        headers={"Authorization": f"Bearer {OPS_TOKEN}"},
        timeout=5,
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "chatops"
    again = httpx.post(
        f"{daemon.url}/api/v1/incidents/{incident_id}/ack",
        headers={"Authorization": f"Bearer {OPS_TOKEN}"},
        timeout=5,
    )
    assert again.status_code == 409 and "chatops" in again.json()["error"]

    # Well past respond_by, with checks every second: nothing escalates.
    wait_for(lambda: [r for r in _posts(hook, "/hook") if r.json()["event"] == "incident_opened"])
    time.sleep(4)
    assert not box.messages and not _posts(hook, "/slack")
    shown = daemon.get(f"/api/v1/incidents/{incident_id}")
    assert shown["escalated_at"] is None
    assert [e["kind"] for e in shown["timeline"]].count("acknowledged") == 1


def test_notes_and_manual_resolve_from_the_cli_and_api(
    daemon_factory: Any, db_url: str, hook: TestHttpServer, mailbox: tuple[_Mailbox, int]
) -> None:
    _, smtp_port = mailbox
    daemon = _start(daemon_factory, db_url, hook, smtp_port)
    incident_id = _fire(daemon, "pay-down-note")
    note = httpx.post(
        f"{daemon.url}/api/v1/incidents/{incident_id}/notes",
        headers={"Authorization": f"Bearer {OPS_TOKEN}"},
        json={"text": "pods OOM-killed after the 14:00 deploy", "by": "mallory"},
        timeout=5,
    )
    assert note.status_code == 422 and note.json()["field"] == "by"  # the actor is never taken from the body
    note = httpx.post(
        f"{daemon.url}/api/v1/incidents/{incident_id}/notes",
        headers={"Authorization": f"Bearer {OPS_TOKEN}"},
        json={"text": "pods OOM-killed after the 14:00 deploy"},
        timeout=5,
    )
    assert note.status_code == 201 and note.json()["by"] == "chatops"

    resolved = daemon.cli("incidents", "resolve", str(incident_id), "--by", "bob", "--note", "rolled back")
    assert resolved["status"] == "resolved" and resolved["resolution"] == "manual"
    shown = daemon.cli("incidents", "show", str(incident_id))
    assert [(n["by"], n["text"]) for n in shown["notes"]] == [
        ("chatops", "pods OOM-killed after the 14:00 deploy"),
        ("bob", "rolled back"),
    ]
    assert ("resolved", "bob") in [(e["kind"], e["actor"]) for e in shown["timeline"]]
    twice = run_cli("incidents", "resolve", str(incident_id), config=daemon.config_path, check=False)
    assert twice.returncode == 1 and "is resolved" in twice.stderr and "Traceback" not in twice.stderr
    resolve = wait_for(
        lambda: [r.json() for r in _posts(hook, "/pd") if r.json()["event_action"] == "resolve"]
    )
    assert resolve[0]["dedup_key"] == f"suture-{incident_id}"


def _hook_only(url: str, events: list[str]) -> dict[str, Any]:
    return {"notifications": [{"name": "hook", "kind": "webhook", "url": url, "events": events}]}


def test_a_channel_down_across_a_kill_9_gets_each_notification_once(daemon_factory: Any, db_url: str) -> None:
    port = free_port()  # nothing listens yet: the channel refuses connections
    daemon = daemon_factory(
        db_url, **_hook_only(f"http://127.0.0.1:{port}/suture", ["incident_opened", "resolved"])
    )
    opened = daemon.post(
        "alertmanager", am_body(am_alert(fingerprint="down-1"), am_alert(fingerprint="down-2"))
    )
    assert opened.status_code == 202
    incidents = sorted(opened.json()["incidents_opened"])

    def failing() -> list[Any]:
        items = daemon.get("/api/v1/notifications")["items"]
        return [n for n in items if n["status"] == "pending" and n["attempts"] >= 2]

    refused = wait_for(failing, timeout=20)
    assert "refused" in (refused[0]["error"] or "").lower()
    daemon.kill()  # kill -9 between two attempts

    from tests.support.httpserver import running_http_server

    with running_http_server(port) as channel:
        daemon.start()
        delivered = wait_for(lambda: len(channel.requests) >= 2, timeout=30)
        assert delivered
        time.sleep(3)  # more notifier turns: nothing is sent twice
        bodies = [request.json() for request in channel.requests]
    assert sorted((b["event"], b["incident"]["id"]) for b in bodies) == [
        ("incident_opened", i) for i in incidents
    ]
    # In order: the older incident's notification went first.
    assert [b["incident"]["id"] for b in bodies] == incidents
    newer, older = daemon.get("/api/v1/notifications")["items"]
    assert (older["status"], newer["status"]) == ("sent", "sent")
    # The older one carried the retries; the newer waited behind it, then went on its first try.
    assert older["attempts"] >= 3 and newer["attempts"] == 1
    timeline = daemon.get(f"/api/v1/incidents/{incidents[0]}")["timeline"]
    kinds = [entry["kind"] for entry in timeline]
    assert kinds.count("notified") == 1 and kinds.count("notification_failed") >= 2


def test_a_channel_that_never_answers_does_not_hold_up_webhooks(
    daemon_factory: Any, db_url: str, hook: TestHttpServer
) -> None:
    from tests.support.httpserver import slow

    hook.script("/stuck", [slow(20)] * 5)
    daemon = daemon_factory(db_url, **_hook_only(hook.url_for("/stuck"), ["incident_opened"]))
    for n in range(5):
        answer = daemon.post("alertmanager", am_body(am_alert(fingerprint=f"stuck-{n}")))
        assert answer.status_code == 202 and len(answer.json()["incidents_opened"]) == 1
    # Every webhook was answered while the channel still held the first notification.
    wait_for(lambda: [r for r in hook.requests if r.path == "/stuck"])
    # The notifier expands outbox rows in turns: wait until all five are deliveries.
    items = wait_for(
        lambda: (found := daemon.get("/api/v1/notifications")["items"]) and len(found) == 5 and found
    )
    statuses = [n["status"] for n in items]
    assert "sent" not in statuses and "sending" in statuses
    assert daemon.get("/readyz") == {"status": "ready"}


def test_notify_test_reports_what_the_channel_answered(
    tmp_path: Any, db_url: str, hook: TestHttpServer
) -> None:
    from tests.conftest import write_config

    hook.script("/ok", [respond(200, body=b"ok")])
    dead = f"http://127.0.0.1:{free_port()}/gone"
    config = write_config(
        tmp_path / "site",
        db_url,
        notifications=[
            {"name": "chat", "kind": "slack", "url": hook.url_for("/ok"), "events": ["escalation"]},
            {"name": "gone", "kind": "webhook", "url": dead, "events": ["all"]},
            {"name": "pd", "kind": "pagerduty", "routing_key_secret": "PD", "events": ["all"]},
        ],
        secrets={"PD": {"env": "T_UNSET_PD_KEY"}},
    )
    good = run_cli("notify", "test", "chat", config=config)
    assert good.returncode == 0 and good.stdout.strip() == "chat: HTTP 200: ok"
    sent = [r.json() for r in hook.requests if r.path == "/ok"]
    assert len(sent) == 1 and "test" in sent[0]["text"].lower()
    down = run_cli("notify", "test", "gone", config=config, check=False)
    assert down.returncode == 1 and "refused" in down.stderr.lower() and "Traceback" not in down.stderr
    unknown = run_cli("notify", "test", "nope", config=config, check=False)
    assert unknown.returncode == 2 and "chat, gone, pd" in unknown.stderr
    unset = run_cli("notify", "test", "pd", config=config, check=False)
    assert unset.returncode == 2 and "notifications.2.routing_key_secret" in unset.stderr
    assert "T_UNSET_PD_KEY" in unset.stderr and len(unset.stderr.strip().splitlines()) == 1
