"""What a paged person reads: titles, fields and the escaping every channel kind does (pure, fast)."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest

from engine.notify.channels import email as email_kind
from engine.notify.channels import pagerduty, slack, text, webhook
from engine.notify.notice import TEST_EVENT, Notice

SENT = datetime(2026, 12, 1, 12, 45, tzinfo=UTC)
INCIDENT: dict[str, Any] = {
    "id": 42,
    "code": "DISK-001",
    "title": "Filesystem almost full",
    "status": "open",
    "severity": "critical",
    "target": "db-1",
    "source": "alertmanager",
    "opened_at": "2026-12-01T10:40:00Z",
    "respond_by": "2026-12-01T11:10:00Z",
    "due_at": "2026-12-01T14:40:00Z",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "resolved_at": None,
    "resolution": None,
}


def make(event: str = "escalation", **changes: Any) -> Notice:
    values: dict[str, Any] = {
        "event": event,
        "incident": INCIDENT,
        "run": None,
        "reason": "not acknowledged within 30m (respond by 2026-12-01 11:10 UTC)",
        "automation": "disk-cleanup@3 failed: step 'vacuum' exit 1",
        "first_step": "ssh db-1 and run `du -xh /var | sort -h | tail`",
        "owner": "team-storage",
        "link": "https://suture.example.org/incidents/42",
        "sent_at": SENT,
    }
    values.update(changes)
    return Notice(**values)


def incident(**changes: Any) -> dict[str, Any]:
    return {**INCIDENT, **changes}


# ------------------------------------------------------------------ titles


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ("incident_opened", "opened"),
        ("escalation", "escalated"),
        ("run_failed", "run failed"),
        ("approval_needed", "needs approval"),
        ("approval_expired", "approval expired"),
        ("resolved", "resolved"),
        ("flapping", "is flapping"),
        ("breaker_open", "breaker open"),
        ("storm", "alert storm"),
    ],
)
def test_title_says_severity_code_event_what_and_where(event: str, words: str) -> None:
    assert text.title(make(event)) == f"[CRITICAL] DISK-001 {words}: Filesystem almost full on db-1"


def test_title_without_target_or_with_newlines_stays_one_line() -> None:
    notice = make(incident=incident(target="", title="Disk\nalmost   full", severity="medium"))
    assert text.title(notice) == "[MEDIUM] DISK-001 escalated: Disk almost full"


def test_test_message_title_needs_no_incident() -> None:
    notice = make(TEST_EVENT, incident={}, reason="suture notify test by alice", owner="", link="")
    assert text.title(notice) == "[TEST] Suture test message"
    assert [row.label for row in text.fields(notice)] == ["Automation", "Why now", "First step"]


def test_unknown_event_still_reads_as_words() -> None:
    assert text.event_words("something_new") == "something new"


# ------------------------------------------------------------------ fields


def test_fields_answer_what_where_how_bad_since_when_deadlines_and_next_step() -> None:
    rows = [(row.label, row.value) for row in text.fields(make())]
    assert rows == [
        ("What", "DISK-001: Filesystem almost full (incident 42)"),
        ("Where", "db-1"),
        ("Severity", "critical"),
        ("Since", "2026-12-01 10:40 UTC (2h 5m ago)"),
        ("Respond by", "2026-12-01 11:10 UTC (overdue by 1h 35m)"),
        ("Resolve by", "2026-12-01 14:40 UTC (in 1h 55m)"),
        ("Automation", "disk-cleanup@3 failed: step 'vacuum' exit 1"),
        ("Why now", "not acknowledged within 30m (respond by 2026-12-01 11:10 UTC)"),
        ("First step", "ssh db-1 and run `du -xh /var | sort -h | tail`"),
        ("Owner", "team-storage"),
        ("Link", "https://suture.example.org/incidents/42"),
    ]


def test_acknowledged_incident_shows_who_and_drops_the_response_deadline() -> None:
    notice = make(incident=incident(acknowledged_at="2026-12-01T10:50:00Z", acknowledged_by="alice"))
    rows = {row.label: row.value for row in text.fields(notice)}
    assert rows["Acknowledged"] == "2026-12-01 10:50 UTC by alice"
    assert "Respond by" not in rows
    assert rows["Resolve by"] == "2026-12-01 14:40 UTC (in 1h 55m)"


def test_resolved_incident_shows_how_and_no_deadlines_left() -> None:
    notice = make(
        "resolved",
        incident=incident(
            resolved_at="2026-12-01T12:40:00Z",
            resolution="manual",
            acknowledged_at="2026-12-01T10:50:00Z",
            acknowledged_by="alice",
        ),
    )
    rows = {row.label: row.value for row in text.fields(notice)}
    assert rows["Resolved"] == "2026-12-01 12:40 UTC (manual)"
    assert "Respond by" not in rows and "Resolve by" not in rows


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (60, "1m"), (7500, "2h 5m"), (7200, "2h"), (90000, "1d 1h"), (86700, "1d")],
)
def test_spans_are_short(seconds: int, shown: str) -> None:
    from datetime import timedelta

    assert text.span(timedelta(seconds=seconds)) == shown


def test_plain_body_is_title_then_label_lines() -> None:
    body = text.plain(make())
    assert body.startswith("[CRITICAL] DISK-001 escalated: Filesystem almost full on db-1\n\nWhat: DISK-001")
    assert "\nFirst step: ssh db-1 and run `du -xh /var | sort -h | tail`\n" in body


# ---------------------------------------------------------------- escaping

HOSTILE = incident(title="<!channel> & <https://evil.example|click>", target="db-1 <b>")


def test_slack_escapes_alert_text_so_it_cannot_mention_or_link() -> None:
    message = slack.message(make(incident=HOSTILE, automation="a > b"))
    # the header is plain_text, which Slack never parses: shown as written
    assert message["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": text.title(make(incident=HOSTILE)),
        "emoji": False,
    }
    parsed = json.dumps([message["text"], message["blocks"][1:]])
    assert "<!channel>" not in parsed and "<https://evil" not in parsed
    first_line, *_, last_line = message["text"].splitlines()
    assert first_line == (
        "[CRITICAL] DISK-001 escalated: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
        " on db-1 &lt;b&gt;"
    )
    assert last_line == "https://suture.example.org/incidents/42"
    fields = message["blocks"][2]["fields"]
    assert fields[1] == {"type": "mrkdwn", "text": "*Where*\ndb-1 &lt;b&gt;"}
    assert "*Automation:* a &gt; b" in message["blocks"][1]["text"]["text"]
    # the one link Slack renders is Suture's own
    assert message["blocks"][-1] == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "<https://suture.example.org/incidents/42|Incident 42 in Suture>"}
        ],
    }


def test_slack_clips_to_its_limits() -> None:
    message = slack.message(make(incident=incident(title="x" * 5000), reason="y" * 5000))
    assert len(message["blocks"][0]["text"]["text"]) == 150
    assert len(message["blocks"][1]["text"]["text"]) <= 3000
    assert all(len(field["text"]) <= 2000 for field in message["blocks"][2]["fields"])
    assert len(message["blocks"][2]["fields"]) <= 10


def test_email_html_escapes_every_value_and_plain_part_keeps_them() -> None:
    built = email_kind.build_message(make(incident=HOSTILE), "suture@example.org", ["oncall@example.org"])
    parsed = email.message_from_bytes(built.as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == text.title(make(incident=HOSTILE))
    plain_part = parsed.get_body(("plain",))
    html_part = parsed.get_body(("html",))
    assert plain_part is not None and html_part is not None
    assert (
        "What: DISK-001: <!channel> & <https://evil.example|click> (incident 42)" in plain_part.get_content()
    )
    markup = html_part.get_content()
    assert "<!channel>" not in markup and "db-1 <b>" not in markup
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in markup
    assert '<a href="https://suture.example.org/incidents/42">Incident 42 in Suture</a>' in markup


def test_email_subject_cannot_carry_a_header_injection() -> None:
    notice = make(incident=incident(title="full\r\nBcc: victim@example.org"))
    built = email_kind.build_message(notice, "suture@example.org", ["oncall@example.org"])
    assert built["Bcc"] is None
    assert built["Subject"] == "[CRITICAL] DISK-001 escalated: full Bcc: victim@example.org on db-1"


# ------------------------------------------------------ the other two bodies


def test_webhook_body_has_run_only_when_there_is_one_and_sent_at_in_utc() -> None:
    plain_body = json.loads(webhook.body(make()))
    assert list(plain_body) == ["event", "incident", "sent_at"]
    assert plain_body["sent_at"] == "2026-12-01T12:45:00Z"
    run = {"id": 7, "status": "failed"}
    assert json.loads(webhook.body(make("run_failed", run=run)))["run"] == run


def test_pagerduty_maps_severity_and_keeps_summary_within_limit() -> None:
    for ours, theirs in (("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info")):
        body = pagerduty.event(make(incident=incident(severity=ours)), "key")
        assert body["payload"]["severity"] == theirs
    long = pagerduty.event(make(incident=incident(title="z" * 3000)), "key")
    assert len(long["payload"]["summary"]) == 1024


def test_pagerduty_test_event_has_its_own_key_and_says_it_is_a_test() -> None:
    body = pagerduty.event(make(TEST_EVENT, incident={}, owner="", link=""), "key")
    assert body["dedup_key"] == "suture-test-20261201T124500Z"
    assert body["event_action"] == "trigger"
    assert "test" in body["payload"]["summary"].lower()
    assert body["payload"]["source"] == "suture"
    assert "links" not in body and "group" not in body["payload"]
