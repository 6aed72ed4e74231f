"""Through the real daemon: a maintenance window of config.yaml active now shows in `suture status`
and GET /api/v1/status; an open breaker shows in GET /api/v1/breakers and `breakers list`, and is
reset by an operate token (recorded under its name) but not by a read token, or by hand twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from engine.store import open_database
from engine.store.breakers import Breakers
from tests.conftest import run_cli

OPS_TOKEN = "chatops-token-" + "0123456789abcdef"
READ_TOKEN = "grafana-token-" + "0123456789abcdef"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_status_windows_and_breaker_reset(daemon_factory: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    db_url = f"sqlite:///{tmp_path / 'breakers.db'}"
    daemon = daemon_factory(
        db_url,
        env={"SUTURE_API_OPS": OPS_TOKEN, "SUTURE_API_READ": READ_TOKEN},
        access={
            "tokens": [
                {"name": "chatops", "token_env": "SUTURE_API_OPS", "role": "operate"},
                {"name": "grafana-ro", "token_env": "SUTURE_API_READ", "role": "read"},
            ]
        },
        maintenance=[
            {
                "name": "migration",
                "match": {"code": "DISK-.*"},
                "from": _iso(now - timedelta(hours=1)),
                "until": _iso(now + timedelta(hours=1)),
            },
            {"name": "new-year", "match": {"target": "db-.*"}, "cron": "0 0 1 1 *", "duration": "1h"},
        ],
    )
    ops = {"Authorization": f"Bearer {OPS_TOKEN}"}
    read = {"Authorization": f"Bearer {READ_TOKEN}"}

    # A breaker opened by three failed runs, counted as finish_run counts them.
    db = open_database(db_url)
    try:
        breakers = Breakers(db)
        for _ in range(3):
            with db.write() as conn:
                opened = breakers.record(conn, "disk-cleanup", 3, True, 3, now)
    finally:
        db.dispose()
    assert opened == "3 consecutive failed or ineffective runs"

    status = daemon.cli("status")
    active, later = status["maintenance"]
    assert active == {
        "name": "migration",
        "match": {"code": "DISK-.*"},
        "active": True,
        "ends_at": _iso(now + timedelta(hours=1)),
        "next_start": None,
    }
    assert (later["name"], later["active"], later["ends_at"]) == ("new-year", False, None)
    assert later["next_start"] == f"{now.year + 1}-01-01T00:00:00Z"
    [breaker] = status["open_breakers"]
    assert (breaker["playbook"], breaker["version"], breaker["status"]) == ("disk-cleanup", 3, "open")
    api_status = daemon.get("/api/v1/status", read)
    assert api_status["maintenance"] == status["maintenance"]
    assert api_status["open_breakers"] == status["open_breakers"]
    text = run_cli("status", config=daemon.config_path).stdout
    assert "disk-cleanup@3 (3 consecutive failed or ineffective runs)" in text
    assert "migration ACTIVE until" in text

    listed = daemon.get("/api/v1/breakers", read)
    assert listed["next"] is None
    assert listed["items"] == daemon.cli("breakers", "list") == [breaker]
    assert breaker["failures"] == 3 and breaker["reason"] == "3 consecutive failed or ineffective runs"

    url = f"{daemon.url}/api/v1/breakers/disk-cleanup/3/reset"
    refused = httpx.post(url, headers=read, timeout=10)
    assert refused.status_code == 403, refused.text
    assert daemon.get("/api/v1/breakers", read)["items"][0]["status"] == "open"

    reset = httpx.post(url, headers=ops, timeout=10)
    assert reset.status_code == 200, reset.text
    assert reset.json()["status"] == "closed" and reset.json()["reset_by"] == "chatops"
    [after] = daemon.cli("breakers", "list")
    assert (after["status"], after["failures"], after["reset_by"]) == ("closed", 0, "chatops")
    assert daemon.get("/api/v1/status", read)["open_breakers"] == []

    again = httpx.post(url, headers=ops, timeout=10)
    assert again.status_code == 409 and "is not open" in again.json()["error"]
    missing = httpx.post(f"{daemon.url}/api/v1/breakers/disk-cleanup/9/reset", headers=ops, timeout=10)
    assert missing.status_code == 404
    by_hand = run_cli("breakers", "reset", "disk-cleanup@3", config=daemon.config_path, check=False)
    assert by_hand.returncode == 1
    assert by_hand.stderr.strip() == "error: the breaker of disk-cleanup@3 is not open: nothing to reset"
