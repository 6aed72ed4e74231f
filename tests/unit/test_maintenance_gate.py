"""Maintenance windows: one-off and cron (in a time zone, across DST), boundaries, matchers, the
gate's hold, and the `maintenance:` config that declares them. Pure: a fixed `now`, no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.models import Mode
from engine.policy.decisions import ALLOW, Hold
from engine.policy.maintenance import (
    MaintenanceWindow,
    configured_windows,
    in_maintenance,
    maintenance,
    status_entries,
)
from engine.policy.matchers import Subject, compile_matchers
from engine.policy.request import RunHistory, RunRequest

DB = Subject("DISK-001", "db-1", "high", "alertmanager", "NodeFilesystemAlmostOutOfSpace")
WEB = Subject("DISK-001", "web-1", "high", "alertmanager", "NodeFilesystemAlmostOutOfSpace")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _one_off(name: str = "migration", match: dict[str, str] | None = None) -> MaintenanceWindow:
    return MaintenanceWindow(
        name,
        compile_matchers(match or {"code": "DISK-.*"}),
        starts=_utc("2026-12-24T20:00:00"),
        until=_utc("2026-12-25T02:00:00"),
    )


SUNDAY_DB = MaintenanceWindow(
    "sunday-db",
    compile_matchers({"target": "db-.*"}),
    cron="0 2 * * 0",
    duration=timedelta(hours=2),
    timezone="Europe/Berlin",
)


def _request(subject: Subject) -> RunRequest:
    return RunRequest(
        subject.code,
        subject.target,
        "disk-cleanup",
        3,
        Mode.auto,
        severity=subject.severity,
        source=subject.source,
        alertname=subject.alertname,
    )


def test_one_off_window_includes_its_start_and_excludes_its_end() -> None:
    window = _one_off()
    until = _utc("2026-12-25T02:00:00")
    assert window.ends_at(_utc("2026-12-24T19:59:59")) is None
    assert window.ends_at(_utc("2026-12-24T20:00:00")) == until
    assert window.ends_at(_utc("2026-12-25T01:59:59.999999")) == until
    assert window.ends_at(until) is None
    assert window.next_start(_utc("2026-12-01T00:00:00")) == _utc("2026-12-24T20:00:00")
    assert window.next_start(until) is None


def test_cron_window_stays_at_local_time_across_daylight_saving() -> None:
    """`0 2 * * 0` in Europe/Berlin for 2h: 01:00-03:00 UTC in winter, 00:00-02:00 UTC in summer."""
    winter = "2026-03-22T"  # CET, UTC+1
    assert SUNDAY_DB.ends_at(_utc(winter + "00:59:59")) is None
    assert SUNDAY_DB.ends_at(_utc(winter + "01:00:00")) == _utc(winter + "03:00:00")
    assert SUNDAY_DB.ends_at(_utc(winter + "02:59:59")) == _utc(winter + "03:00:00")
    assert SUNDAY_DB.ends_at(_utc(winter + "03:00:00")) is None
    summer = "2026-04-05T"  # CEST, UTC+2
    assert SUNDAY_DB.ends_at(_utc(summer + "00:00:00")) == _utc(summer + "02:00:00")
    assert SUNDAY_DB.ends_at(_utc(summer + "02:00:00")) is None
    assert SUNDAY_DB.next_start(_utc(winter + "12:00:00")) == _utc("2026-03-29T01:00:00")


def test_cron_window_on_the_nights_the_clocks_change() -> None:
    """Spring forward: 02:00 does not exist, the window starts at 03:00 CEST (01:00 UTC) for 2 real
    hours. Fall back: 02:00 comes twice, and the window covers both (00:00-03:00 UTC)."""
    assert SUNDAY_DB.ends_at(_utc("2026-03-29T00:59:00")) is None
    assert SUNDAY_DB.ends_at(_utc("2026-03-29T01:00:00")) == _utc("2026-03-29T03:00:00")
    assert SUNDAY_DB.ends_at(_utc("2026-03-29T03:00:00")) is None
    for inside in ("00:00:00", "00:59:00", "01:30:00", "02:59:59"):
        assert SUNDAY_DB.ends_at(_utc("2026-10-25T" + inside)) == _utc("2026-10-25T03:00:00"), inside
    assert SUNDAY_DB.ends_at(_utc("2026-10-25T03:00:00")) is None


def test_a_window_answers_the_same_whatever_order_it_is_asked_in() -> None:
    """The cached span between firings never leaks into another week."""
    fresh = SUNDAY_DB.ends_at
    times = [_utc("2026-04-05T01:00:00"), _utc("2026-03-22T01:30:00"), _utc("2026-04-05T03:00:00")]
    answers = [fresh(t) for t in times]
    window = MaintenanceWindow(
        "again", SUNDAY_DB.matchers, cron="0 2 * * 0", duration=timedelta(hours=2), timezone="Europe/Berlin"
    )
    assert [window.ends_at(t) for t in reversed(times)] == list(reversed(answers))
    assert answers == [_utc("2026-04-05T02:00:00"), _utc("2026-03-22T03:00:00"), None]


def test_in_maintenance_needs_matching_matchers_and_picks_the_window_ending_last() -> None:
    now = _utc("2026-12-24T21:00:00")
    late = MaintenanceWindow(
        "late", compile_matchers({"target": "db-.*"}), starts=now, until=_utc("2026-12-26T00:00:00")
    )
    assert in_maintenance([_one_off(match={"target": "db-.*"})], WEB, now) is None
    assert in_maintenance([_one_off(), late], DB, now) == (late, _utc("2026-12-26T00:00:00"))
    assert in_maintenance([_one_off(), late], WEB, now) == (_one_off(), _utc("2026-12-25T02:00:00"))
    assert in_maintenance([late], DB, _utc("2027-01-01T00:00:00")) is None


def test_gate_holds_with_the_window_and_its_end() -> None:
    history = RunHistory(windows=(SUNDAY_DB,))
    hold = maintenance(_request(DB), history, _utc("2026-03-22T01:30:00"))
    assert hold == Hold(
        reason="maintenance sunday-db until 2026-03-22T03:00:00Z",
        gate="maintenance",
        silenced_by="maintenance sunday-db",
    )
    assert maintenance(_request(WEB), history, _utc("2026-03-22T01:30:00")) == ALLOW
    assert maintenance(_request(DB), history, _utc("2026-03-22T03:00:00")) == ALLOW
    assert maintenance(_request(DB), RunHistory(), _utc("2026-03-22T01:30:00")) == ALLOW


def test_status_lists_active_windows_first() -> None:
    entries = status_entries([SUNDAY_DB, _one_off()], _utc("2026-12-24T21:00:00"))
    assert [(e.name, e.active, e.ends_at, e.next_start) for e in entries] == [
        ("migration", True, _utc("2026-12-25T02:00:00"), None),
        ("sunday-db", False, None, _utc("2026-12-27T01:00:00")),
    ]
    assert entries[0].match == {"code": "DISK-.*"}


# ------------------------------------------------------------------ config


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(body)
    return path


def test_config_windows_as_design_md_writes_them(tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path,
            "maintenance:\n"
            '  - {name: sunday-db, match: {target: "db-.*"}, cron: "0 2 * * 0", duration: 2h,'
            " timezone: Europe/Berlin}\n"
            '  - {name: migration, match: {code: "DISK-.*"}, from: "2026-12-24T20:00:00Z",'
            ' until: "2026-12-25T02:00:00Z"}\n'
            '  - {name: local, match: {labels.team: db}, from: "2026-12-24T20:00:00",'
            ' until: "2026-12-24T22:00:00", timezone: Europe/Berlin}\n',
        )
    )
    sunday, migration, local = configured_windows(config.maintenance)
    assert sunday == SUNDAY_DB
    assert migration == _one_off()
    assert (local.starts, local.until) == (_utc("2026-12-24T19:00:00"), _utc("2026-12-24T21:00:00"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            '{name: a, match: {target: x}, cron: "0 2 * * 0", duration: 1h, from: "2026-01-01T00:00:00Z"}',
            "maintenance.0: give either from and until (one-off) or cron and duration (recurring), not both",
        ),
        ("{name: a, match: {target: x}}", "maintenance.0: give either from and until"),
        ('{name: a, match: {target: x}, cron: "0 2 * * 0"}', "(duration is missing)"),
        ('{name: a, match: {target: x}, from: "2026-01-01T00:00:00Z"}', "(until is missing)"),
        (
            '{name: a, match: {target: x}, from: "2026-01-02T00:00:00Z", until: "2026-01-01T00:00:00Z"}',
            "maintenance.0: until must be later than from",
        ),
        (
            '{name: a, match: {target: x}, cron: "every sunday", duration: 1h}',
            "maintenance.0.cron: not a cron",
        ),
        (
            '{name: a, match: {target: x}, cron: "0 2 * * 0", duration: 1h, timezone: Mars/Olympus}',
            "maintenance.0.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            '{name: a, match: {host: x}, cron: "0 2 * * 0", duration: 1h}',
            "maintenance.0.match: 'host' is not",
        ),
        ('{name: a, match: {target: "db-("}, cron: "0 2 * * 0", duration: 1h}', "target: not a regular"),
        ('{name: a, match: {}, cron: "0 2 * * 0", duration: 1h}', "maintenance.0.match: at least one"),
        (
            '{name: a, match: {target: x}, cron: "0 2 * * 0", duration: 0s}',
            "maintenance.0.duration: expected",
        ),
        ('{name: a, match: {target: x}, start: "2026-01-01T00:00:00Z"}', "maintenance.0.start: unknown key"),
    ],
)
def test_config_mistakes_are_one_line_naming_the_key(tmp_path: Path, entry: str, message: str) -> None:
    path = _config(tmp_path, f"maintenance:\n  - {entry}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert text.startswith(f"{path}:2: ") and "\n" not in text
    assert message in text


def test_config_window_names_are_unique(tmp_path: Path) -> None:
    window = '{name: twice, match: {target: x}, cron: "0 2 * * 0", duration: 1h}'
    path = _config(tmp_path, f"maintenance:\n  - {window}\n  - {window}\n")
    with pytest.raises(
        ConfigError, match=rf"^{path}:3: maintenance.1.name: window 'twice' is defined twice$"
    ):
        load_config(path)


def test_config_accepts_exactly_the_matcher_keys_policy_compiles() -> None:
    """engine.config cannot import engine.policy (layers), so it names the keys itself: kept in step here."""
    from engine.config import MATCHER_KEYS
    from engine.policy.matchers import FACT_KEYS

    assert MATCHER_KEYS == FACT_KEYS
