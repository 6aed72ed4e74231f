"""Escalation and notification rules as pure logic: when an incident escalates, which channels hear
of an event, how retries back off, what a wrong `notifications:` entry says, and that deadlines
reach intake's classified alerts and cross the helper socket (the store side:
tests/integration/test_outbox_store.py; sending: tests/integration/test_notifier.py)."""

from __future__ import annotations

import marshal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.catalog.loader import load_catalog
from engine.config import ChannelConfig, Config, EscalationConfig, load_config
from engine.errors import ConfigError
from engine.intake.classify import CatalogView
from engine.intake.fastpath.codec import FRAME, Unwire, frame_values, wire
from engine.models import (
    Alert,
    AlertStatus,
    ClassifiedAlert,
    Deadlines,
    Mode,
    Policy,
    Severity,
    Submission,
)
from engine.notify.deadlines import approval_expired, escalation_due
from engine.notify.routing import Facts, Router
from engine.notify.sender import backoff
from engine.records import Incident

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
RESPOND_BY = T0 + timedelta(minutes=30)
DUE_AT = T0 + timedelta(hours=4)
REPEAT = timedelta(hours=1)


def incident(**changes: Any) -> Incident:
    """A critical incident opened at T0: respond by 03:30, resolve by 07:00, nobody acknowledged."""
    fields: dict[str, Any] = {
        "id": 42,
        "code": "DISK-001",
        "title": "Filesystem almost full",
        "status": "open",
        "severity": "critical",
        "target": "db-1",
        "source": "alertmanager",
        "fingerprint": "3f2a9c0d1e4b5a67",
        "alertname": "NodeFilesystemAlmostOutOfSpace",
        "occurrences": 1,
        "opened_at": T0,
        "last_seen": T0,
        "resolved_at": None,
        "resolution": None,
        "due_at": DUE_AT,
        "remediated_at": None,
        "respond_by": RESPOND_BY,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "escalated_at": None,
    }
    return Incident.model_validate({**fields, **changes})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# ------------------------------------------------------------- escalation_due


def test_nothing_escalates_before_a_deadline_passes() -> None:
    assert escalation_due(incident(), None, at(29), REPEAT) is None


def test_late_unacknowledged_response_escalates_once_with_its_deadline_in_the_reason() -> None:
    due = escalation_due(incident(), None, at(31), REPEAT)

    assert due is not None
    assert due.deadline == "respond"
    assert due.reason == (
        "DISK-001 on db-1 not acknowledged by its first-response deadline (2026-12-01 03:30Z)"
    )


def test_the_response_deadline_is_met_at_its_exact_time() -> None:
    """`respond_by` itself is already late: a deadline is the last moment, not after it."""
    due = escalation_due(incident(), None, RESPOND_BY, REPEAT)
    assert due is not None and due.deadline == "respond"


def test_acknowledged_incident_has_no_response_escalation() -> None:
    acked = incident(acknowledged_at=at(10), acknowledged_by="alice")
    assert escalation_due(acked, None, at(31), REPEAT) is None
    assert escalation_due(acked, None, at(200), REPEAT) is None


def test_late_resolve_outranks_late_response() -> None:
    due = escalation_due(incident(), None, at(241), REPEAT)

    assert due is not None
    assert due.deadline == "resolve"
    assert due.reason == "DISK-001 on db-1 still open past its resolve deadline (2026-12-01 07:00Z)"


def test_response_escalation_repeats_only_after_repeat_while_unacknowledged() -> None:
    escalated = incident(escalated_at=at(31))

    assert escalation_due(escalated, "respond", at(31), REPEAT) is None
    assert escalation_due(escalated, "respond", at(31 + 59), REPEAT) is None
    again = escalation_due(escalated, "respond", at(31 + 60), REPEAT)
    assert again is not None and again.deadline == "respond"
    assert again.reason == (
        "DISK-001 on db-1 not acknowledged by its first-response deadline (2026-12-01 03:30Z);"
        " open for 1h 31m, nobody has acknowledged it"
    )

    acked = incident(escalated_at=at(31), acknowledged_at=at(40), acknowledged_by="alice")
    assert escalation_due(acked, "respond", at(31 + 60), REPEAT) is None
    assert escalation_due(acked, "respond", at(31 + 180), REPEAT) is None  # still before due_at


def test_resolve_escalation_repeats_while_unacknowledged_and_stops_once_acknowledged() -> None:
    escalated = incident(escalated_at=at(241))

    assert escalation_due(escalated, "resolve", at(241 + 30), REPEAT) is None
    again = escalation_due(escalated, "resolve", at(241 + 60), REPEAT)
    assert again is not None and again.deadline == "resolve"

    acked = incident(escalated_at=at(241), acknowledged_at=at(250), acknowledged_by="alice")
    assert escalation_due(acked, "resolve", at(241 + 60), REPEAT) is None
    assert escalation_due(acked, "resolve", at(241 + 600), REPEAT) is None


def test_acknowledged_incident_escalates_once_more_when_its_resolve_deadline_passes() -> None:
    """Escalated for its response, then acknowledged: the resolve deadline still escalates, once."""
    acked = incident(escalated_at=at(31), acknowledged_at=at(45), acknowledged_by="alice")

    assert escalation_due(acked, "respond", at(239), REPEAT) is None
    due = escalation_due(acked, "respond", at(241), REPEAT)
    assert due is not None and due.deadline == "resolve"

    after = incident(escalated_at=at(241), acknowledged_at=at(45), acknowledged_by="alice")
    assert escalation_due(after, "resolve", at(241 + 60), REPEAT) is None
    assert escalation_due(after, "resolve", at(241 + 24 * 60), REPEAT) is None


def test_resolved_incident_never_escalates() -> None:
    closed = incident(status="resolved", resolved_at=at(20), resolution="manual")
    assert escalation_due(closed, None, at(31), REPEAT) is None
    assert escalation_due(closed, None, at(10_000), REPEAT) is None
    assert (
        escalation_due(incident(status="resolved", escalated_at=at(31)), "respond", at(500), REPEAT) is None
    )


def test_incident_without_deadlines_never_escalates() -> None:
    low = incident(severity="low", respond_by=None, due_at=None)
    assert escalation_due(low, None, at(100_000), REPEAT) is None


def test_reason_names_an_unknown_target_as_such() -> None:
    due = escalation_due(incident(target=""), None, at(31), REPEAT)
    assert due is not None and due.reason.startswith("DISK-001 on unknown target not acknowledged")


# ------------------------------------------------------------ approval_expired


def test_approval_expires_at_its_timeout_and_never_without_one() -> None:
    queued = at(0)
    assert not approval_expired(queued, timedelta(hours=1), at(59))
    assert approval_expired(queued, timedelta(hours=1), at(60))
    assert approval_expired(queued, timedelta(hours=1), at(600))
    assert not approval_expired(queued, None, at(100_000))


# --------------------------------------------------------------------- Router


def channel(name: str, events: list[str], **match: str) -> ChannelConfig:
    return ChannelConfig.model_validate(
        {"name": name, "kind": "webhook", "url": "http://127.0.0.1:9/hook", "events": events, "match": match}
    )


FACTS = Facts(severity="critical", code="DISK-001", owner="team-storage", target="db-1")


def test_an_event_goes_to_every_channel_that_lists_it_or_all() -> None:
    router = Router(
        [
            channel("chat", ["escalation", "run_failed"]),
            channel("hook", ["all"]),
            channel("pager", ["escalation"]),
            channel("digest", ["resolved"]),
        ]
    )

    assert router.channels_for("escalation", FACTS) == ["chat", "hook", "pager"]
    assert router.channels_for("run_failed", FACTS) == ["chat", "hook"]
    assert router.channels_for("resolved", FACTS) == ["hook", "digest"]
    assert router.channels_for("approval_needed", FACTS) == ["hook"]
    assert Router([]).channels_for("escalation", FACTS) == []


def test_match_regexes_are_matched_in_full() -> None:
    """`crit` does not match `critical`, `db` does not match `db-1`; an alternation must match whole."""
    router = Router(
        [
            channel("prefix", ["all"], severity="crit"),
            channel("whole", ["all"], severity="critical|high"),
            channel("target-prefix", ["all"], target="db"),
            channel("target-glob", ["all"], target="db-.*"),
        ]
    )

    assert router.channels_for("escalation", FACTS) == ["whole", "target-glob"]
    medium = Facts(severity="medium", code="DISK-001", owner="team-storage", target="db-1")
    assert router.channels_for("escalation", medium) == ["target-glob"]
    subcritical = Facts(severity="critical-ish", code="X", owner="", target="db-10")
    assert router.channels_for("escalation", subcritical) == ["target-glob"]


def test_match_on_owner_and_code_and_every_key_must_fit() -> None:
    router = Router(
        [
            channel("storage", ["escalation"], owner="team-storage"),
            channel("disk-codes", ["escalation"], code="DISK-.*"),
            channel("both", ["escalation"], code="DISK-.*", owner="team-web"),
            channel("ownerless", ["escalation"], owner=""),
        ]
    )

    assert router.channels_for("escalation", FACTS) == ["storage", "disk-codes"]
    web = Facts(severity="high", code="DISK-002", owner="team-web", target="web-1")
    assert router.channels_for("escalation", web) == ["disk-codes", "both"]
    unowned = Facts(severity="high", code="UNCLASSIFIED", owner="", target="")
    assert router.channels_for("escalation", unowned) == ["ownerless"]
    assert router.channels_for("run_failed", web) == []  # match fits, event does not


# -------------------------------------------------------------------- backoff


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    first, most = timedelta(seconds=2), timedelta(minutes=5)
    waits = [backoff(n, first, most) for n in range(1, 10)]

    assert waits[:8] == [timedelta(seconds=s) for s in (2, 4, 8, 16, 32, 64, 128, 256)]
    assert waits[8] == most  # 512 s would be more than 5 min
    assert backoff(0, first, most) == first
    assert backoff(1) == timedelta(seconds=2)
    assert backoff(3, timedelta(milliseconds=50), timedelta(seconds=1)) == timedelta(milliseconds=200)
    assert backoff(20, timedelta(milliseconds=50), timedelta(seconds=1)) == timedelta(seconds=1)


def test_backoff_stays_at_the_cap_however_many_attempts_failed() -> None:
    assert backoff(47) == timedelta(minutes=5)
    assert backoff(300) == timedelta(minutes=5)


# ------------------------------------------------------------- configuration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_bare_on_key_is_refused_with_a_hint_at_events(tmp_path: Path) -> None:
    """YAML reads `on:` as `true`: the error says to write `events:` instead, on the entry's line."""
    message = config_error(
        tmp_path,
        "notifications:\n"
        "  - name: chat\n"
        "    kind: slack\n"
        '    url: "http://127.0.0.1:9/x"\n'
        "    on: [escalation]\n",
    )
    assert message.startswith(f"{tmp_path / 'config.yaml'}:2: notifications.0: ")
    assert "use `events:`" in message


def test_an_undefined_secret_names_the_key_and_its_line(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        "secrets:\n"
        "  HOOK: {env: X_HOOK}\n"
        "notifications:\n"
        "  - name: chat\n"
        "    kind: slack\n"
        "    url_secret: CHAT_HOOK\n"
        "    events: [escalation]\n",
    )
    assert message == (
        f"{tmp_path / 'config.yaml'}:6: notifications.0.url_secret: secret 'CHAT_HOOK' is not defined"
        " under secrets: (HOOK)"
    )


def test_an_undefined_smtp_password_secret_names_its_nested_key(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        "notifications:\n"
        "  - name: mail\n"
        "    kind: email\n"
        "    smtp: {host: 127.0.0.1, user: suture, password_secret: SMTP_PASS}\n"
        "    from: suture@example.org\n"
        "    to: [oncall@example.org]\n"
        "    events: [escalation]\n",
    )
    assert "notifications.0.smtp.password_secret: secret 'SMTP_PASS' is not defined" in message
    assert "(none defined)" in message


def test_a_channel_name_used_twice_is_refused(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        "notifications:\n"
        '  - {name: chat, kind: slack, url: "http://127.0.0.1:9/x", events: [escalation]}\n'
        '  - {name: chat, kind: webhook, url: "http://127.0.0.1:9/y", events: [all]}\n',
    )
    assert message == f"{tmp_path / 'config.yaml'}:3: notifications.1.name: channel 'chat' is defined twice"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{name: chat, kind: slack, events: [escalation]}",
            "a slack channel needs exactly one of url or url_secret",
        ),
        (
            "{name: mail, kind: email, from: a@example.org, to: [b@example.org], events: [escalation]}",
            "an email channel needs smtp, from and to",
        ),
        ("{name: pd, kind: pagerduty, events: [escalation]}", "a pagerduty channel needs routing_key_secret"),
        (
            '{name: chat, kind: slack, url: "http://127.0.0.1:9/x", signing_secret: S, events: [all]}',
            "signing_secret is for webhook channels only",
        ),
    ],
)
def test_a_channel_missing_what_its_kind_needs_is_refused(tmp_path: Path, entry: str, expected: str) -> None:
    message = config_error(tmp_path, f"secrets: {{S: {{env: X_S}}}}\nnotifications:\n  - {entry}\n")
    assert message == f"{tmp_path / 'config.yaml'}:3: notifications.0: {expected}"


def test_an_unknown_event_name_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        "notifications:\n"
        '  - {name: chat, kind: slack, url: "http://127.0.0.1:9/x", events: [escalation, incident_closed]}\n',
    )
    assert message.startswith(f"{tmp_path / 'config.yaml'}:2: notifications.0.events.1: ")
    assert "'incident_opened'" in message and "'all'" in message
    assert message.endswith("(got 'incident_closed')")


def test_heard_events_are_what_some_channel_lists(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "notifications:\n"
            '  - {name: chat, kind: slack, url: "http://127.0.0.1:9/x", events: [escalation, run_failed]}\n'
            '  - {name: hook, kind: webhook, url: "http://127.0.0.1:9/y", events: [resolved]}\n',
        )
    )
    assert config.heard_events() == {"escalation", "run_failed", "resolved"}
    assert Config().heard_events() == frozenset()
    every = Config.model_validate({"notifications": [channel("hook", ["all"]).model_dump(by_alias=True)]})
    assert "all" not in every.heard_events()
    assert {"incident_opened", "escalation", "approval_expired", "resolved"} <= every.heard_events()


def test_escalation_config_parses_durations_and_keeps_the_other_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "escalation: {respond_within: {critical: 15m}, repeat: 30m}\n"))

    assert config.escalation.respond_within["critical"] == timedelta(minutes=15)
    assert config.escalation.repeat == timedelta(minutes=30)
    assert config.escalation.check_every == timedelta(seconds=15)
    assert config.escalation.resolve_within == {
        "critical": timedelta(hours=4),
        "high": timedelta(hours=24),
        "medium": timedelta(days=7),
    }
    assert EscalationConfig().respond_within == {
        "critical": timedelta(minutes=30),
        "high": timedelta(hours=2),
        "medium": timedelta(days=1),
    }


def test_a_partial_respond_within_keeps_the_other_severities_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "escalation: {respond_within: {critical: 15m}}\n"))
    assert config.escalation.respond_within == {
        "critical": timedelta(minutes=15),
        "high": timedelta(hours=2),
        "medium": timedelta(days=1),
    }


def test_a_wrong_escalation_duration_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, "escalation:\n  repeat: soon\n")
    assert message.startswith(f"{tmp_path / 'config.yaml'}:2: escalation.repeat: expected a duration")


# ------------------------------------------------ deadlines per code (intake)


def test_a_codes_escalation_override_reaches_its_deadlines(tmp_path: Path) -> None:
    """The config's deadlines per severity, replaced by a code's own `escalation:` where it sets one."""
    (tmp_path / "codes").mkdir()
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "codes" / "c.yaml").write_text(
        "- {code: FAST-001, title: f, severity: critical, match: {alertname: Fast},"
        " escalation: {respond_within: 5m, resolve_within: 1h}}\n"
        "- {code: HALF-001, title: h, severity: high, match: {alertname: Half},"
        " escalation: {respond_within: 10m}}\n"
        "- {code: PLAIN-001, title: p, severity: critical, match: {alertname: Plain}}\n"
        "- {code: LOW-001, title: l, severity: low, match: {alertname: Low}}\n"
    )
    catalog = load_catalog(tmp_path / "codes", tmp_path / "playbooks")
    escalation = EscalationConfig.model_validate(
        {"respond_within": {"critical": "15m", "high": "1h", "medium": "1d"}}
    )

    view = CatalogView.of(catalog, escalation)

    assert view.deadlines["FAST-001"] == Deadlines(timedelta(minutes=5), timedelta(hours=1))
    assert view.deadlines["HALF-001"] == Deadlines(timedelta(minutes=10), timedelta(hours=24))
    assert view.deadlines["PLAIN-001"] == Deadlines(timedelta(minutes=15), timedelta(hours=4))
    assert view.deadlines["LOW-001"] == Deadlines(None, None)
    assert view.unclassified[Severity.medium] == Deadlines(timedelta(days=1), timedelta(days=7))
    assert CatalogView.of(catalog).deadlines["PLAIN-001"] == Deadlines(
        timedelta(minutes=30), timedelta(hours=4)
    )
    opened = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert view.deadlines["FAST-001"].respond_by(opened) == datetime(2026, 12, 1, 12, 5, tzinfo=UTC)
    assert view.deadlines["FAST-001"].due_at(opened) == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    assert view.deadlines["LOW-001"].due_at(opened) is None


def test_deadlines_and_approval_timeout_cross_the_helper_socket() -> None:
    alert = Alert.model_validate(
        {
            "source": "alertmanager",
            "name": "DiskFull",
            "fingerprint": "0af3c1d2e4b5a697",
            "status": AlertStatus.firing,
            "labels": {"alertname": "DiskFull"},
            "starts_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        }
    )
    policy = Policy(cooldown=timedelta(minutes=10), approval_timeout=timedelta(minutes=90))

    def item(deadlines: Deadlines | None, with_policy: Policy | None) -> ClassifiedAlert:
        return ClassifiedAlert(
            alert,
            "DISK-001",
            "Disk full",
            Severity.high,
            "db-1",
            Mode.approval,
            ("disk-cleanup", 3),
            policy=with_policy,
            deadlines=deadlines,
        )

    submission = Submission(
        "alertmanager",
        "{}",
        [
            item(Deadlines(timedelta(minutes=15), timedelta(hours=2, microseconds=7)), policy),
            item(Deadlines(None, timedelta(days=7)), Policy()),
            item(None, None),
        ],
    )

    data = frame_values((3, wire(submission)))
    _, wired = marshal.loads(data[FRAME.size :])
    back = Unwire()(wired)

    assert back == submission
    assert back.alerts[0].deadlines == Deadlines(timedelta(minutes=15), timedelta(hours=2, microseconds=7))
    assert back.alerts[0].policy is not None
    assert back.alerts[0].policy.approval_timeout == timedelta(minutes=90)
    assert back.alerts[1].deadlines == Deadlines(None, timedelta(days=7))
    assert back.alerts[1].policy is not None and back.alerts[1].policy.approval_timeout is None
    assert back.alerts[2].deadlines is None and back.alerts[2].policy is None
