"""The four channel kinds against real servers on 127.0.0.1: what a receiver gets, and what a failure means.

Slack, webhook and PagerDuty post to the loopback HTTP server (tests/support/httpserver.py);
email goes to a real SMTP server (aiosmtpd). Bodies are compared whole with the fields the
vendors document; signatures are recomputed here from the bytes received.
"""

from __future__ import annotations

import email
import hashlib
import hmac
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from engine.config import Config, load_config
from engine.errors import ConfigError, PermanentFailure, TemporaryFailure
from engine.notify.channels import build_channel
from engine.notify.channels.base import Channel
from engine.notify.notice import TEST_EVENT, Notice
from tests.conftest import free_port
from tests.support.httpserver import TestHttpServer, redirect, respond, slow

SLACK_PATH = "/services/T0001/B0002/hooksecretXYZ123"
ROUTING_KEY = "pd-routing-key-0f3a9c1e"
SIGNING_KEY = "webhook-signing-key-77ab"
SMTP_PASSWORD = "smtp-password-5d2e"
SENT = datetime(2026, 12, 1, 12, 45, 30, tzinfo=UTC)
LINK = "https://suture.example.org/incidents/42"
INCIDENT: dict[str, Any] = {
    "id": 42,
    "code": "DISK-001",
    "title": "Filesystem almost full",
    "status": "open",
    "severity": "high",
    "target": "db-1",
    "source": "alertmanager",
    "fingerprint": "3f2a9c0d1e4b5a67",
    "alertname": "NodeFilesystemAlmostOutOfSpace",
    "occurrences": 3,
    "opened_at": "2026-12-01T10:40:00Z",
    "last_seen": "2026-12-01T12:40:00Z",
    "resolved_at": None,
    "resolution": None,
    "due_at": "2026-12-02T10:40:00Z",
    "respond_by": "2026-12-01T12:40:00Z",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "remediated_at": None,
}
RUN = {"id": 7, "incident_id": 42, "playbook": "disk-cleanup", "playbook_version": 3, "status": "failed"}


def notice(event: str = "escalation", **changes: Any) -> Notice:
    values: dict[str, Any] = {
        "event": event,
        "incident": INCIDENT,
        "run": None,
        "reason": "not acknowledged within 2h (respond by 2026-12-01 12:40 UTC)",
        "automation": "disk-cleanup@3 failed: step 'vacuum' exit 1",
        "first_step": "ssh db-1; du -xh /var | sort -h | tail",
        "owner": "team-storage",
        "link": LINK,
        "sent_at": SENT,
    }
    values.update(changes)
    return Notice(**values)


@pytest.fixture(autouse=True)
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where `secrets:` points; a test changes one with monkeypatch before it configures."""
    monkeypatch.setenv("T_PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("T_SIGNING", SIGNING_KEY)
    monkeypatch.setenv("T_SMTP_PASS", SMTP_PASSWORD)


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *channels: dict[str, Any]) -> Config:
    """A real config.yaml with these channels; every secret comes from an environment variable."""
    document = {
        "database": {"url": "sqlite:///x.db"},
        "secrets": {
            "CHAT_HOOK": {"env": "T_CHAT_HOOK"},
            "PD_KEY": {"env": "T_PD_KEY"},
            "SIGNING": {"env": "T_SIGNING"},
            "SMTP_PASS": {"env": "T_SMTP_PASS"},
        },
        "notifications": [{"events": ["all"], "timeout": "2s", **entry} for entry in channels],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path)


def channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: dict[str, Any]) -> Channel:
    config = configure(tmp_path, monkeypatch, entry)
    return build_channel(config, config.notifications[0])


def assert_no_secret(text: str) -> None:
    for secret in (SLACK_PATH, "hooksecretXYZ123", ROUTING_KEY, SIGNING_KEY, SMTP_PASSWORD):
        assert secret not in text


def closed_url(path: str = "/x") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


# ------------------------------------------------------------------- slack


@pytest.fixture
def slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server: TestHttpServer) -> Channel:
    monkeypatch.setenv("T_CHAT_HOOK", http_server.url + SLACK_PATH)
    return channel(tmp_path, monkeypatch, {"name": "ops-chat", "kind": "slack", "url_secret": "CHAT_HOOK"})


def test_slack_posts_text_and_blocks_slack_documents(slack: Channel, http_server: TestHttpServer) -> None:
    http_server.script(SLACK_PATH, [respond(200, body="ok")])

    assert slack.send(notice()) == "HTTP 200: ok"

    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", SLACK_PATH)
    assert request.header("Content-Type") == "application/json"
    title = "[HIGH] DISK-001 escalated: Filesystem almost full on db-1"
    assert request.json() == {
        "text": f"{title}\nWhy now: not acknowledged within 2h (respond by 2026-12-01 12:40 UTC)\n"
        "First step: ssh db-1; du -xh /var | sort -h | tail\nOwner: team-storage\n" + LINK,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": False}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Why now:* not acknowledged within 2h (respond by 2026-12-01 12:40 UTC)\n"
                    "*Automation:* disk-cleanup@3 failed: step 'vacuum' exit 1\n"
                    "*First step:* ssh db-1; du -xh /var | sort -h | tail",
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*What*\nDISK-001: Filesystem almost full (incident 42)"},
                    {"type": "mrkdwn", "text": "*Where*\ndb-1"},
                    {"type": "mrkdwn", "text": "*Severity*\nhigh"},
                    {"type": "mrkdwn", "text": "*Since*\n2026-12-01 10:40 UTC (2h 5m ago)"},
                    {"type": "mrkdwn", "text": "*Respond by*\n2026-12-01 12:40 UTC (overdue by 5m)"},
                    {"type": "mrkdwn", "text": "*Resolve by*\n2026-12-02 10:40 UTC (in 21h 54m)"},
                    {"type": "mrkdwn", "text": "*Owner*\nteam-storage"},
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{LINK}|Incident 42 in Suture>"}]},
        ],
    }


def test_slack_url_from_secrets_never_appears_in_a_failure(
    slack: Channel, http_server: TestHttpServer
) -> None:
    http_server.script(SLACK_PATH, [respond(404, body=f"no_service for {SLACK_PATH}"), respond(503)])

    with pytest.raises(PermanentFailure) as refused:
        slack.send(notice())
    assert "HTTP 404" in str(refused.value) and "secret CHAT_HOOK" in str(refused.value)
    assert_no_secret(str(refused.value))

    with pytest.raises(TemporaryFailure) as later:
        slack.send(notice())
    assert "HTTP 503" in str(later.value)
    assert_no_secret(str(later.value))


def test_slack_unreachable_is_temporary_and_names_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_CHAT_HOOK", closed_url(SLACK_PATH))
    hook = channel(tmp_path, monkeypatch, {"name": "ops-chat", "kind": "slack", "url_secret": "CHAT_HOOK"})

    with pytest.raises(TemporaryFailure) as failure:
        hook.send(notice())
    assert "cannot connect" in str(failure.value)
    assert_no_secret(str(failure.value))


# ----------------------------------------------------------------- webhook


@pytest.fixture
def webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server: TestHttpServer) -> Channel:
    entry = {
        "name": "hook",
        "kind": "webhook",
        "url": http_server.url + "/suture",
        "signing_secret": "SIGNING",
    }
    return channel(tmp_path, monkeypatch, entry)


def test_webhook_sends_the_documented_json_signed_over_the_exact_bytes(
    webhook: Channel, http_server: TestHttpServer
) -> None:
    http_server.script("/suture", [respond(200, json={"received": True})])

    assert webhook.send(notice("run_failed", run=RUN)) == 'HTTP 200: {"received": true}'

    [request] = http_server.requests
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {
        "event": "run_failed",
        "incident": INCIDENT,
        "run": RUN,
        "sent_at": "2026-12-01T12:45:30Z",
    }
    expected = hmac.new(SIGNING_KEY.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header("X-Suture-Signature") == f"sha256={expected}"


def test_webhook_without_signing_secret_sends_no_signature_and_no_run_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server: TestHttpServer
) -> None:
    hook = channel(
        tmp_path, monkeypatch, {"name": "hook", "kind": "webhook", "url": http_server.url + "/plain"}
    )

    assert hook.send(notice("incident_opened")) == 'HTTP 200: {"ok": true}'

    [request] = http_server.requests
    assert request.header("X-Suture-Signature") is None
    assert list(request.json()) == ["event", "incident", "sent_at"]


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (respond(429, body="slow down"), TemporaryFailure),
        (respond(503, body="maintenance"), TemporaryFailure),
        (respond(408), TemporaryFailure),
        (respond(400, body=f"bad signature, expected key {SIGNING_KEY}"), PermanentFailure),
        (respond(410), PermanentFailure),
        (redirect("https://elsewhere.example/new"), PermanentFailure),
    ],
)
def test_webhook_answers_are_classified(
    webhook: Channel, http_server: TestHttpServer, answer: Any, failure: type[Exception]
) -> None:
    http_server.script("/suture", [answer])

    with pytest.raises(failure) as raised:
        webhook.send(notice())
    message = str(raised.value)
    assert message.startswith(f"channel hook: POST {http_server.url}/suture answered HTTP {answer.status}")
    assert_no_secret(message)


def test_webhook_that_does_not_answer_in_time_is_temporary(
    webhook: Channel, http_server: TestHttpServer
) -> None:
    http_server.script("/suture", [slow(5)])

    with pytest.raises(TemporaryFailure, match="timed out after 2s"):
        webhook.send(notice())


def test_webhook_refused_connection_is_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"name": "hook", "kind": "webhook", "url": closed_url("/suture"), "signing_secret": "SIGNING"}
    hook = channel(tmp_path, monkeypatch, entry)

    with pytest.raises(TemporaryFailure, match="cannot connect") as failure:
        hook.send(notice())
    assert_no_secret(str(failure.value))


def test_unset_secret_is_a_config_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_CHAT_HOOK", raising=False)
    config = configure(
        tmp_path, monkeypatch, {"name": "ops-chat", "kind": "slack", "url_secret": "CHAT_HOOK"}
    )

    with pytest.raises(ConfigError, match=r"notifications\.0\.url_secret: environment variable T_CHAT_HOOK"):
        build_channel(config, config.notifications[0])


# --------------------------------------------------------------- pagerduty

PD_ANSWER = {"status": "success", "message": "Event processed", "dedup_key": "suture-42"}


@pytest.fixture
def pager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server: TestHttpServer) -> Channel:
    entry = {
        "name": "pager",
        "kind": "pagerduty",
        "routing_key_secret": "PD_KEY",
        "url": http_server.url + "/v2/enqueue",
    }
    return channel(tmp_path, monkeypatch, entry)


def test_pagerduty_trigger_then_resolve_share_the_dedup_key(
    pager: Channel, http_server: TestHttpServer
) -> None:
    http_server.script("/v2/enqueue", [respond(202, json=PD_ANSWER), respond(202, json=PD_ANSWER)])

    answer = pager.send(notice())
    pager.send(notice("resolved", incident={**INCIDENT, "status": "resolved"}))

    assert answer == 'HTTP 202: {"status": "success", "message": "Event processed", "dedup_key": "suture-42"}'
    trigger, resolve = (request.json() for request in http_server.requests)
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "suture-42",
        "payload": {
            "summary": "[HIGH] DISK-001 escalated: Filesystem almost full on db-1",
            "source": "db-1",
            "severity": "error",
            "timestamp": "2026-12-01T10:40:00Z",
            "component": "DISK-001",
            "class": "escalation",
            "custom_details": {
                "code": "DISK-001",
                "title": "Filesystem almost full",
                "target": "db-1",
                "severity": "high",
                "event": "escalation",
                "reason": "not acknowledged within 2h (respond by 2026-12-01 12:40 UTC)",
                "automation": "disk-cleanup@3 failed: step 'vacuum' exit 1",
                "first_step": "ssh db-1; du -xh /var | sort -h | tail",
                "owner": "team-storage",
                "respond_by": "2026-12-01T12:40:00Z",
                "due_at": "2026-12-02T10:40:00Z",
                "link": LINK,
            },
            "group": "team-storage",
        },
        "client": "Suture",
        "links": [{"href": LINK, "text": "Incident 42 in Suture"}],
        "client_url": LINK,
    }
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "suture-42"}


def test_pagerduty_test_message_is_a_trigger_of_its_own(pager: Channel, http_server: TestHttpServer) -> None:
    http_server.script("/v2/enqueue", [respond(202, json={**PD_ANSWER, "dedup_key": "suture-test-x"})])

    pager.send(notice(TEST_EVENT, incident={}, reason="suture notify test pager", owner="", first_step=""))

    body = http_server.requests[0].json()
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "suture-test-20261201T124530Z"
    assert body["payload"]["summary"].startswith("[TEST] Suture test message: a test from Suture")
    assert (body["payload"]["source"], body["payload"]["severity"]) == ("suture", "info")
    assert body["payload"]["timestamp"] == "2026-12-01T12:45:30Z"


@pytest.mark.parametrize(
    ("status", "failure"), [(400, PermanentFailure), (429, TemporaryFailure), (500, TemporaryFailure)]
)
def test_pagerduty_errors_never_show_the_routing_key(
    pager: Channel, http_server: TestHttpServer, status: int, failure: type[Exception]
) -> None:
    echoed = {"status": "invalid event", "message": f"routing_key {ROUTING_KEY} rejected", "errors": ["x"]}
    http_server.script("/v2/enqueue", [respond(status, json=echoed)])

    with pytest.raises(failure) as raised:
        pager.send(notice())
    assert f"answered HTTP {status}" in str(raised.value)
    assert_no_secret(str(raised.value))


def test_pagerduty_unreachable_is_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {
        "name": "pager",
        "kind": "pagerduty",
        "routing_key_secret": "PD_KEY",
        "url": closed_url("/v2/enqueue"),
    }
    pager = channel(tmp_path, monkeypatch, entry)

    with pytest.raises(TemporaryFailure, match="cannot connect") as failure:
        pager.send(notice())
    assert_no_secret(str(failure.value))


# ------------------------------------------------------------------- email


@dataclass
class Mailbox:
    """What the SMTP server accepted, and how it answers RCPT."""

    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return f"250 2.0.0 Ok: queued as Q{len(self.envelopes)}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        # handled=False: aiosmtpd then answers the failure itself (535)
        return AuthResult(success=data.password.decode() == SMTP_PASSWORD, handled=False)

    def message(self, index: int = 0) -> EmailMessage:
        raw = self.envelopes[index].content
        assert isinstance(raw, bytes)
        parsed = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed


@contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()
    if "authenticator" in options:
        options["authenticator"] = box.authenticate
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


def mail_entry(port: int, **smtp: Any) -> dict[str, Any]:
    return {
        "name": "mail",
        "kind": "email",
        "smtp": {"host": "127.0.0.1", "port": port, "timeout": "2s", **smtp},
        "from": "suture@example.org",
        "to": ["oncall@example.org", "lead@example.org"],
    }


def test_email_sends_plain_text_and_html_to_every_recipient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (port, box):
        mail = channel(tmp_path, monkeypatch, mail_entry(port))
        answer = mail.send(notice())

    assert answer == "250 2.0.0 Ok: queued as Q1"
    [envelope] = box.envelopes
    assert envelope.mail_from == "suture@example.org"
    assert envelope.rcpt_tos == ["oncall@example.org", "lead@example.org"]
    message = box.message()
    assert message["Subject"] == "[HIGH] DISK-001 escalated: Filesystem almost full on db-1"
    assert message["From"] == "suture@example.org"
    assert message["To"] == "oncall@example.org, lead@example.org"
    plain, markup = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and markup is not None
    lines = plain.get_content().splitlines()
    assert lines[:2] == ["[HIGH] DISK-001 escalated: Filesystem almost full on db-1", ""]
    for line in (
        "What: DISK-001: Filesystem almost full (incident 42)",
        "Where: db-1",
        "Severity: high",
        "Since: 2026-12-01 10:40 UTC (2h 5m ago)",
        "Respond by: 2026-12-01 12:40 UTC (overdue by 5m)",
        "Automation: disk-cleanup@3 failed: step 'vacuum' exit 1",
        "First step: ssh db-1; du -xh /var | sort -h | tail",
        "Owner: team-storage",
        f"Link: {LINK}",
    ):
        assert line in lines
    html = markup.get_content()
    assert "<h2>[HIGH] DISK-001 escalated: Filesystem almost full on db-1</h2>" in html
    assert "<td>ssh db-1; du -xh /var | sort -h | tail</td>" in html
    assert f'<a href="{LINK}">Incident 42 in Suture</a>' in html


def _certificate(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (the CA file clients trust) and a server context."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


def test_email_starttls_and_login_with_the_password_from_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, context = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with smtp_server(tls_context=context, require_starttls=True, auth_required=True, authenticator=True) as (
        port,
        box,
    ):
        entry = mail_entry(port, starttls=True, user="suture", password_secret="SMTP_PASS")
        answer = channel(tmp_path, monkeypatch, entry).send(notice())

    assert answer.startswith("250 ")
    assert box.logins == [("suture", SMTP_PASSWORD)]
    assert box.message()["Subject"].startswith("[HIGH] DISK-001 escalated")


def test_email_over_implicit_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, context = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with smtp_server(ssl_context=context) as (port, box):
        answer = channel(tmp_path, monkeypatch, mail_entry(port, tls=True)).send(notice())

    assert answer.startswith("250 ")
    assert len(box.envelopes) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_login_without_tls_and_a_wrong_password_is_permanent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = mail_entry(0, user="suture", password_secret="SMTP_PASS")
    with smtp_server(auth_require_tls=False, auth_required=True, authenticator=True) as (port, box):
        entry["smtp"]["port"] = port
        right = channel(tmp_path, monkeypatch, entry)
        monkeypatch.setenv("T_SMTP_PASS", "not-the-password-91")
        (tmp_path / "wrong").mkdir()
        wrong = channel(tmp_path / "wrong", monkeypatch, entry)

        assert right.send(notice()).startswith("250 ")
        with pytest.raises(PermanentFailure, match="answered 535") as refused:
            wrong.send(notice())

    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN) before giving up
    assert box.logins[0] == ("suture", SMTP_PASSWORD)
    assert set(box.logins[1:]) == {("suture", "not-the-password-91")}
    assert "not-the-password-91" not in str(refused.value)
    assert len(box.envelopes) == 1


def test_email_recipients_refused_for_good_is_permanent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (port, box):
        box.refuse = {
            "oncall@example.org": "550 5.1.1 <oncall@example.org>: no such user",
            "lead@example.org": "550 5.1.1 <lead@example.org>: no such user",
        }
        with pytest.raises(PermanentFailure, match="refused every recipient: oncall@example.org: 550 5.1.1"):
            channel(tmp_path, monkeypatch, mail_entry(port)).send(notice())

    assert box.envelopes == []


def test_email_recipient_refused_for_now_is_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (port, box):
        box.refuse = {
            "oncall@example.org": "450 4.2.0 mailbox busy",
            "lead@example.org": "450 4.2.0 mailbox busy",
        }
        with pytest.raises(TemporaryFailure, match="450 4.2.0 mailbox busy"):
            channel(tmp_path, monkeypatch, mail_entry(port)).send(notice())


def test_email_one_refused_recipient_does_not_hold_back_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (port, box):
        box.refuse = {"lead@example.org": "550 5.1.1 no such user"}
        answer = channel(tmp_path, monkeypatch, mail_entry(port)).send(notice())

    assert answer == "250 2.0.0 Ok: queued as Q1 (refused: lead@example.org: 550 5.1.1 no such user)"
    assert box.envelopes[0].rcpt_tos == ["oncall@example.org"]


def test_email_closed_port_is_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    with pytest.raises(TemporaryFailure, match=f"smtp 127.0.0.1:{port} cannot connect"):
        channel(tmp_path, monkeypatch, mail_entry(port)).send(notice())


def test_email_server_that_never_greets_is_a_temporary_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the handshake completes in the backlog; nobody ever says 220
        port = listener.getsockname()[1]
        mail = channel(tmp_path, monkeypatch, mail_entry(port, timeout="0.5s"))
        with pytest.raises(TemporaryFailure, match="timed out after 0.5s"):
            mail.send(notice())
