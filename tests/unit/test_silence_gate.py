"""The silence gate and the rules it reads: which silence holds a run, from when until when, and what
the held run says. Pure: fixed times, no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from engine.errors import InvalidArgument
from engine.models import Mode
from engine.policy.decisions import ALLOW, Decision, Hold
from engine.policy.matchers import Subject, compile_matchers
from engine.policy.request import NO_HISTORY, RunHistory, RunRequest
from engine.policy.silences import (
    SilenceRule,
    ends_after,
    parse_time,
    rules_of,
    silence,
    silencing,
)
from engine.records import Silence

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _rule(
    rule_id: int = 1,
    starts: timedelta = -HOUR,
    ends: timedelta = HOUR,
    by: str = "alice",
    comment: str = "new disk in db-1",
    **match: str,
) -> SilenceRule:
    return SilenceRule(
        id=rule_id,
        matchers=compile_matchers(match or {"target": "db-1"}),
        starts_at=NOW + starts,
        ends_at=NOW + ends,
        created_by=by,
        comment=comment,
    )


def _request(
    code: str = "DISK-001",
    target: str = "db-1",
    severity: str = "high",
    source: str = "alertmanager",
    alertname: str = "NodeFilesystemAlmostOutOfSpace",
    **labels: str,
) -> RunRequest:
    return RunRequest(
        code,
        target,
        "disk-cleanup",
        3,
        Mode.auto,
        severity=severity,
        source=source,
        alertname=alertname,
        labels=labels or {"mountpoint": "/var", "team": "db"},
    )


def _silenced(*rules: SilenceRule) -> RunHistory:
    return RunHistory(silences=rules)


def _held_by(decision: Decision) -> str | None:
    assert isinstance(decision, Hold), decision
    return decision.silenced_by


def test_a_matching_active_silence_holds_the_run_and_says_whose_until_when_and_why() -> None:
    decision = silence(_request(), _silenced(_rule(4)), NOW)
    assert decision == Hold(
        reason="silence 4 by alice until 2026-12-01T13:00:00Z: new disk in db-1",
        gate="silence",
        silenced_by="silence 4",
    )


def test_no_silence_or_none_matching_allows() -> None:
    assert silence(_request(), NO_HISTORY, NOW) == ALLOW
    assert silence(_request(target="db-2"), _silenced(_rule()), NOW) == ALLOW


def test_a_silence_holds_from_its_start_up_to_but_not_at_its_end() -> None:
    """starts_at <= now < ends_at: on the start it holds, on the end it has let go."""
    rule = _rule(starts=timedelta(0), ends=HOUR)
    history = _silenced(rule)
    assert not rule.active(NOW - timedelta(microseconds=1))
    assert silence(_request(), history, NOW - timedelta(microseconds=1)) == ALLOW
    assert rule.active(NOW) and isinstance(silence(_request(), history, NOW), Hold)
    assert isinstance(silence(_request(), history, NOW + HOUR - timedelta(microseconds=1)), Hold)
    assert not rule.active(NOW + HOUR)
    assert silence(_request(), history, NOW + HOUR) == ALLOW


def test_a_silence_still_to_start_or_already_ended_holds_nothing() -> None:
    later = _rule(1, starts=HOUR, ends=2 * HOUR)
    ended = _rule(2, starts=-2 * HOUR, ends=-HOUR)
    assert silence(_request(), _silenced(later, ended), NOW) == ALLOW
    assert _held_by(silence(_request(), _silenced(later, ended), NOW + HOUR)) == "silence 1"


@pytest.mark.parametrize(
    ("match", "held"),
    [
        ({"code": "DISK-001"}, True),
        ({"code": "DISK-.*"}, True),
        ({"code": "DISK"}, False),  # matched in full, not searched
        ({"code": "ISK-001"}, False),
        ({"target": "db-[0-9]+"}, True),
        ({"target": "DB-1"}, False),  # case matters
        ({"severity": "high|critical"}, True),
        ({"severity": "low"}, False),
        ({"source": "alertmanager"}, True),
        ({"source": "grafana"}, False),
        ({"alertname": "NodeFilesystem.*"}, True),
        ({"alertname": "NodeDown"}, False),
        ({"labels.team": "db"}, True),
        ({"labels.mountpoint": "/var|/srv"}, True),
        ({"labels.team": "web"}, False),
        ({"labels.missing": ".*"}, False),  # a label the alert lacks never matches, even `.*`
        ({"code": "DISK-.*", "target": "db-1"}, True),
        ({"code": "DISK-.*", "target": "db-2"}, False),  # every matcher must match
        ({"code": ".*", "target": ".*", "labels.team": "db", "severity": "high"}, True),
    ],
)
def test_each_matcher_key_is_matched_in_full_and_all_must_match(match: dict[str, str], held: bool) -> None:
    rule = SilenceRule(1, compile_matchers(match), NOW - HOUR, NOW + HOUR, "alice", "why")
    decision = silence(_request(), _silenced(rule), NOW)
    assert isinstance(decision, Hold) is held


def test_the_lowest_id_wins_whatever_order_the_rules_come_in() -> None:
    """The intake and the runner must name the same silence; inactive and non-matching ones are skipped."""
    rules = [
        _rule(7, by="carol"),
        _rule(3, by="bob"),
        _rule(1, starts=HOUR, ends=2 * HOUR),  # lower id, not started
        _rule(2, code="NET-.*"),  # lower id, does not match
        _rule(9, by="dave"),
    ]
    for order in permutations(rules):
        found = silencing(order, _request().subject(), NOW)
        assert found is not None and found.id == 3 and found.created_by == "bob"
        assert _held_by(silence(_request(), _silenced(*order), NOW)) == "silence 3"


def test_silencing_is_none_when_nothing_applies() -> None:
    subject = Subject("DISK-001", "db-1", "high", "alertmanager", "DiskFull", {})
    assert silencing((), subject, NOW) is None
    assert silencing([_rule(target="db-2"), _rule(2, ends=timedelta(0))], subject, NOW) is None


def test_the_reason_shows_the_end_in_utc_whatever_zone_it_came_in() -> None:
    from zoneinfo import ZoneInfo

    paris = (NOW + HOUR).astimezone(ZoneInfo("Europe/Paris"))
    rule = SilenceRule(1, compile_matchers({"target": "db-1"}), NOW - HOUR, paris, "ops bot", "patching")
    assert rule.reason() == "silence 1 by ops bot until 2026-12-01T13:00:00Z: patching"


def test_rules_of_stored_silences_compile_their_matchers_lowest_id_first() -> None:
    stored = [_stored(5, {"code": "DISK-.*"}), _stored(2, {"labels.team": "db", "target": "db-1"})]
    rules = rules_of(stored)
    assert [rule.id for rule in rules] == [2, 5]
    assert rules[0].matchers.as_dict() == {"labels.team": "db", "target": "db-1"}
    assert rules[0].starts_at == NOW - HOUR and rules[0].ends_at == NOW + HOUR
    assert (rules[0].created_by, rules[0].comment) == ("alice", "why")
    assert _held_by(silence(_request(), _silenced(*rules), NOW)) == "silence 2"
    with pytest.raises(InvalidArgument, match=r"silence 8\.code: not a regular expression"):
        rules_of([_stored(8, {"code": "DISK-("})])


def _stored(silence_id: int, matchers: dict[str, str]) -> Silence:
    return Silence(
        id=silence_id,
        matchers=matchers,
        starts_at=NOW - HOUR,
        ends_at=NOW + HOUR,
        created_by="alice",
        comment="why",
        created_at=NOW - HOUR,
        expired_by=None,
        active=True,
    )


# ------------------------------------------------------------ what people type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T14:00:00Z", datetime(2026, 12, 1, 14, 0, tzinfo=UTC)),
        ("2026-12-01T14:00:00", datetime(2026, 12, 1, 14, 0, tzinfo=UTC)),  # no zone: UTC
        ("2026-12-01 15:30+01:00", datetime(2026, 12, 1, 14, 30, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_and_utc_without_a_zone(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "--until")
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["tomorrow", "14:00", "", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:00-14:00"],
)
def test_a_time_that_is_not_iso_8601_names_the_option(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^--until: expected an ISO 8601 time"):
        parse_time(text, "--until")


def test_a_duration_ends_that_long_after_the_start() -> None:
    assert ends_after(NOW, "2h", "--for") == NOW + 2 * HOUR
    assert ends_after(NOW, "90m", "for") == NOW + timedelta(minutes=90)
    assert ends_after(NOW, "7d", "for") == NOW + timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("soon", r"^--for: expected a duration like 30s"),
        ("0s", r"^--for: a silence must last longer than 0s"),
        ("-2h", r"^--for: expected a duration"),
        ("99999999999999999999d", r"^--for: '99999999999999999999d' ends after the last date there is"),
        ("3000000d", r"^--for: '3000000d' ends after the last date there is"),
    ],
)
def test_a_bad_duration_names_the_option(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        ends_after(NOW, text, "--for")
