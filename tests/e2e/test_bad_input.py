"""Bad input gets a clear 4xx naming the field, and leaves no row behind (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from engine.store.tables import alerts, events, incidents
from tests.conftest import DaemonProcess, free_port, throwaway_database, write_config
from tests.payloads import am_alert, am_body


def _row_counts(db_url: str) -> tuple[int, int, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (events, alerts, incidents)
            )
    finally:
        engine.dispose()


BAD_BODIES = [
    pytest.param(b'{"version": "4", "alerts": [', 400, "body", id="malformed-json"),
    pytest.param(b"[]", 422, None, id="not-an-object"),
    pytest.param({"version": "4", "status": "firing"}, 422, "alerts", id="missing-alerts"),
    pytest.param({**am_body(am_alert()), "alerts": []}, 422, "alerts", id="empty-alerts"),
    pytest.param({**am_body(am_alert()), "alerts": "nope"}, 422, "alerts", id="alerts-not-a-list"),
    pytest.param(am_body({**am_alert(), "status": "burning"}), 422, "alerts.0.status", id="bad-status"),
    pytest.param(
        am_body({**am_alert(), "labels": {"alertname": "X", "severity": 5}}),
        422,
        "alerts.0.labels",
        id="label-not-string",
    ),
    pytest.param(am_body({**am_alert(), "startsAt": "yesterday"}), 422, "alerts.0.startsAt", id="bad-time"),
    pytest.param({**am_body(am_alert()), "version": "3"}, 422, "version", id="wrong-version"),
    pytest.param(am_body(am_alert(note="x\u0000y")), 422, "alerts.0.labels.note", id="nul-in-label"),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def refusing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProcess, str]]:
    """One daemon per backend for the bodies that must be refused: nothing they send is stored, so
    its database stays empty from one test to the next (each checks it still is)."""
    folder = tmp_path_factory.mktemp(f"bad-input-{request.param}")
    for db_url in throwaway_database(request.param, folder):
        port = free_port()
        daemon = DaemonProcess(write_config(folder / "site", db_url, port=port), port).start()
        try:
            yield daemon, db_url
        finally:
            daemon.stop()


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_invalid_body_is_refused_and_nothing_stored(
    refusing: tuple[DaemonProcess, str], body: object, status: int, field: str | None
) -> None:
    """Each invalid body gets its 4xx naming the bad field, and no event, alert or incident is stored."""
    daemon, db_url = refusing
    response = daemon.post("alertmanager", body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert "error" in answer
    if field is not None:
        assert answer["field"].startswith(field), answer
        assert field.split(".")[0] in answer["error"]
    assert _row_counts(db_url) == (0, 0, 0)


def test_ten_mebibyte_body_gets_413(refusing: tuple[DaemonProcess, str]) -> None:
    """A 10 MiB body is refused with 413 naming the limit, and nothing is stored."""
    daemon, db_url = refusing
    big = b'{"version":"4","alerts":[{"labels":{"x":"' + b"a" * (10 * 1024 * 1024) + b'"}}]}'
    response = daemon.post("alertmanager", big)
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]
    assert _row_counts(db_url) == (0, 0, 0)


def test_valid_body_after_bad_ones_still_works(daemon: DaemonProcess, db_url: str) -> None:
    """A refused body leaves the daemon healthy: the next valid body is committed."""
    assert daemon.post("alertmanager", b"{").status_code == 400
    assert daemon.post("alertmanager", am_body(am_alert())).status_code == 202
    assert _row_counts(db_url) == (1, 1, 1)


def test_long_identifiers_are_stored_whole(daemon: DaemonProcess, db_url: str) -> None:
    """A 300-character fingerprint and alertname are legal: stored whole on every backend, not 5xx."""
    alert = am_alert("A" * 300, fingerprint="f" * 300)
    response = daemon.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    [incident] = daemon.cli("incidents", "list")
    assert incident["fingerprint"] == "f" * 300 and incident["code"] == "UNCLASSIFIED"
    assert _row_counts(db_url) == (1, 1, 1)


def test_database_unavailable_answers_503_and_stores_nothing(daemon_factory: object, tmp_path: Path) -> None:
    """While another process holds SQLite's write lock: 503 and nothing stored; afterwards 202."""
    db_file = tmp_path / "locked.db"
    daemon = daemon_factory(f"sqlite:///{db_file}")  # type: ignore[operator]
    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = daemon.post("alertmanager", am_body(am_alert()))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503
    assert response.json() == {"error": "alerts not stored: the database is unavailable, retry later"}
    assert _row_counts(f"sqlite:///{db_file}") == (0, 0, 0)
    assert daemon.post("alertmanager", am_body(am_alert())).status_code == 202
    assert _row_counts(f"sqlite:///{db_file}") == (1, 1, 1)
