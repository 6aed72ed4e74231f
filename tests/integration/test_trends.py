"""The dashboard's time series (engine.store.trends) on SQLite and PostgreSQL, over incidents inserted
with known times: counts per UTC day and code, times to resolve per UTC day and severity to the
microsecond, the window's edges, and the dashboard page that draws them through the real app."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from engine.catalog.loader import load_catalog
from engine.config import load_config
from engine.intake.classify import CatalogView, Intake
from engine.store import Store, open_database
from engine.store.db import Database
from engine.store.tables import incidents
from engine.store.tallies import windows_key
from engine.store.trends import DayCount, Trends
from engine.web.api import Services, create_app
from tests.conftest import write_config

#: The window: [W0, W0 + 3 days), W0 a UTC midnight.
W0 = datetime(2026, 11, 2, tzinfo=UTC)
UNTIL = W0 + timedelta(days=3)
M, H, US = timedelta(minutes=1), timedelta(hours=1), timedelta(microseconds=1)
D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)


def opened(
    db: Database,
    at: datetime,
    code: str = "DISK-001",
    severity: str = "high",
    resolved: timedelta | None = None,
    target: str = "db-1",
) -> None:
    with db.write() as conn:
        conn.execute(
            insert(incidents).values(
                code=code,
                title=f"{code} on {target}",
                status="open" if resolved is None else "resolved",
                severity=severity,
                target=target,
                source="alertmanager",
                fingerprint=uuid.uuid4().hex,
                alertname="A",
                labels={},
                annotations={},
                occurrences=1,
                opened_at=at,
                last_seen=at,
                resolved_at=at + resolved if resolved is not None else None,
                resolution="alert_resolved" if resolved is not None else None,
            )
        )


def test_opened_per_day_counts_each_utc_day_and_code_within_the_window(db: Database) -> None:
    """Incidents count on the UTC day they opened, per code; the window's start is in, its end out."""
    opened(db, W0 - US)  # before the window
    opened(db, W0)  # its first instant
    opened(db, W0 + 23 * H + 59 * M + 59 * timedelta(seconds=1) + 999_999 * US)  # last instant of day 1
    opened(db, W0 + 24 * H)  # first instant of day 2
    opened(db, W0 + 25 * H, code="NET-002")
    opened(db, W0 + 26 * H, code="NET-002")
    opened(db, W0 + 49 * H, code="APPR-001")
    opened(db, UNTIL - US, code="APPR-001")
    opened(db, UNTIL)  # after the window
    found = sorted(Trends(db).opened_per_day(W0, UNTIL), key=lambda r: (r.day, r.code))
    assert found == [
        DayCount(D1, "DISK-001", 2),
        DayCount(D2, "DISK-001", 1),
        DayCount(D2, "NET-002", 2),
        DayCount(D3, "APPR-001", 2),
    ]


def test_opened_per_day_of_an_empty_window_is_empty(db: Database) -> None:
    """A window with no incident in it reads nothing, even with incidents around it."""
    opened(db, W0 - H)
    assert Trends(db).opened_per_day(W0, UNTIL) == []


def test_resolve_times_per_day_are_exact_per_utc_day_of_opening_and_severity(db: Database) -> None:
    """Each resolved incident's resolved_at - opened_at, to the microsecond, under the day it opened
    and its severity; open incidents and those outside the window are in no list."""
    opened(db, W0 + 1 * H, severity="critical", resolved=12 * M + 1 * US)
    opened(db, W0 + 2 * H, severity="critical", resolved=3 * H + 7 * US)
    opened(db, W0 + 3 * H, severity="high", resolved=30 * M)
    opened(db, W0 + 4 * H, severity="high")  # still open
    opened(db, W0 + 23 * H, severity="critical", resolved=2 * H)  # resolved the next day: day 1 still
    opened(db, W0 + 30 * H, severity="critical", resolved=45 * timedelta(seconds=1) + 999_999 * US)
    opened(db, W0 - M, severity="critical", resolved=M)  # before the window
    found = {(r.day, r.severity): sorted(r.ttr_us) for r in Trends(db).resolve_times_per_day(W0, UNTIL)}
    micros = timedelta(microseconds=1)
    assert found == {
        (D1, "critical"): sorted([(12 * M + US) // micros, (3 * H + 7 * US) // micros, (2 * H) // micros]),
        (D1, "high"): [(30 * M) // micros],
        (D2, "critical"): [45_999_999],
    }


def test_the_dashboard_draws_the_window_through_the_real_app(tmp_path: Path) -> None:
    """GET /dashboard answers a page with the five charts, each an SVG with a title, the counts of
    the seeded incidents in its tables, and nothing it would load from outside the daemon."""
    config = load_config(str(write_config(tmp_path, f"sqlite:///{tmp_path / 'suture.db'}")))
    database = open_database(config.database_url, upgrade=True)
    try:
        store = Store(database, config.heard_events())
        catalog = load_catalog(config.codes_dir, config.playbooks_dir)
        intake = Intake(store, CatalogView.of(catalog, config.escalation))
        now = datetime.now(UTC)
        for hours_ago in (30, 20, 5):
            opened(database, now - hours_ago * H, code="DISK-001", target="db-<1>", resolved=20 * M)
        opened(database, now - 2 * H, code="NET-002", severity="critical")
        client = TestClient(create_app(Services(config, store, intake, ready=lambda: True)))
        page = client.get("/dashboard?since=7d")
        bad = client.get("/dashboard?since=nonsense")
    finally:
        database.dispose()
    assert page.status_code == 200, page.text
    text = page.text
    assert "<h1>Dashboard</h1>" in text
    for chart in ("incidents-per-day", "time-to-resolve", "automation", "sla", "recurring"):
        figure = re.search(rf'<figure class="chart[^"]*" id="chart-{chart}".*?</figure>', text, re.S)
        assert figure is not None, chart
        assert re.search(r'<svg [^>]*role="img"', figure.group(0)), chart
        assert "<figcaption>" in figure.group(0), chart
    recurring = re.search(r'id="chart-recurring".*?</figure>', text, re.S)
    assert recurring is not None
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(?:<a [^>]*>)?([^<]*)", recurring.group(0))]
    assert cells[:3] == ["DISK-001", "db-<1>", "3"]
    assert "db-<1>" not in text  # a target is text, never markup
    assert re.findall(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]*"', "", text)) == []
    assert "<script" not in text
    assert bad.status_code == 400 and "nonsense" in html.unescape(bad.text)


def test_the_counted_days_and_hours_give_the_same_series(db: Database) -> None:
    """per_day reads the hours and days engine.store.buckets counted whole, and counts only the
    rest (the window's ragged ends, what was still open): the same series as counting it all."""
    from engine.analytics.effectiveness import DEFAULT_WINDOWS

    for n in range(60):
        at = W0 + n * 73 * M + n * US
        resolved = None if n % 7 == 0 else (n + 1) * 9 * M + n * US
        opened(
            db,
            at,
            code=("DISK-001", "NET-002")[n % 2],
            severity=("high", "low")[n % 3 % 2],
            resolved=resolved,
        )
    trends = Trends(db)
    assert trends.buckets.refresh(UNTIL + H, {}, DEFAULT_WINDOWS, horizon=UNTIL + H - W0) > 0
    since, until = W0 + 90 * M, UNTIL - 30 * M  # ragged ends: parts of hours and days

    per_day, resolve_times = trends.per_day(since, until, {}, DEFAULT_WINDOWS)

    with db.read() as conn:
        counted = trends.buckets.usable(conn, since, until, windows_key({}, DEFAULT_WINDOWS), H)
    assert {hours for _, hours in counted} == {1, 24}, "whole days and hours are read as counted"
    assert per_day == sorted(trends.opened_per_day(since, until), key=lambda r: (r.day, r.code))
    straight = {(r.day, r.severity): sorted(r.ttr_us) for r in trends.resolve_times_per_day(since, until)}
    assert {(r.day, r.severity): sorted(r.ttr_us) for r in resolve_times} == straight
    assert sum(r.incidents for r in per_day) == 57  # 60 less the 2 before `since` and the 1 after `until`
