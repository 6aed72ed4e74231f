"""`suture status` and GET /api/v1/status show the last catalog reload and the last poll per source."""

from __future__ import annotations

import signal
from typing import Any

from tests.conftest import free_port, run_cli, wait_for
from tests.support.httpserver import TestHttpServer, respond


def _polls(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {poll["source"]: poll for poll in status["polls"]}


def _both_polled(status: dict[str, Any]) -> bool:
    polls = _polls(status)
    return (
        polls.get("am-ok", {}).get("last_success") is not None
        and polls.get("am-down", {}).get("last_failure") is not None
    )


def _when(status: dict[str, Any], ready: Any) -> dict[str, Any] | None:
    """The status if it is `ready`: what wait_for returns once true."""
    return status if ready(status) else None


def test_status_shows_failed_and_succeeded_polls_and_a_refused_reload(
    daemon_factory: Any, http_server: TestHttpServer, db_url: str
) -> None:
    """One source answers `[]`, one points at a closed port; then SIGHUP with a broken code file."""
    http_server.default = respond(200, json=[])
    closed = f"http://127.0.0.1:{free_port()}"
    daemon = daemon_factory(
        db_url,
        pull=[
            {"name": "am-ok", "kind": "alertmanager", "url": http_server.url, "interval": "300ms"},
            {"name": "am-down", "kind": "alertmanager", "url": closed, "interval": "300ms"},
        ],
    )
    status = wait_for(lambda: _when(daemon.cli("status"), _both_polled), timeout=15)

    # Start-up recorded its catalog load as ok.
    assert status["catalog_reload"]["outcome"] == "ok"
    assert status["catalog_reload"]["problems"] == 0
    assert status["catalog_reload"]["error"] is None
    assert status["catalog_reload"]["at"].endswith("Z")

    polls = _polls(status)
    assert polls["am-ok"]["last_failure"] is None
    assert polls["am-ok"]["error"] is None
    assert polls["am-down"]["last_success"] is None
    assert polls["am-down"]["error"]  # the error line, e.g. connection refused
    assert "\n" not in polls["am-down"]["error"]
    assert all(r.path.startswith("/api/v2/alerts") for r in http_server.requests)

    # Later successful polls within the minute do not rewrite the recorded success.
    first_success = polls["am-ok"]["last_success"]
    seen = len(http_server.requests)
    wait_for(lambda: len(http_server.requests) >= seen + 3, timeout=15)
    assert _polls(daemon.cli("status"))["am-ok"]["last_success"] == first_success

    # A broken code file on SIGHUP: the reload is refused, counted and explained.
    broken = daemon.config_path.parent / "codes" / "zz-broken.yaml"
    broken.write_text("- code: BROKEN\n  severity: nonsense\n")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    status = wait_for(
        lambda: _when(daemon.cli("status"), lambda s: s["catalog_reload"]["outcome"] == "refused"), timeout=15
    )
    reload = status["catalog_reload"]
    assert reload["problems"] >= 1
    assert "zz-broken.yaml" in reload["error"]

    api = daemon.get("/api/v1/status")
    assert api["catalog_reload"]["outcome"] == "refused"
    assert api["catalog_reload"]["problems"] == reload["problems"]
    api_polls = _polls(api)
    assert api_polls["am-ok"]["last_success"] is not None and api_polls["am-ok"]["last_failure"] is None
    assert api_polls["am-down"]["last_success"] is None and api_polls["am-down"]["error"]

    text = run_cli("status", config=daemon.config_path).stdout
    assert "catalog reload:" in text and "REFUSED" in text and "zz-broken.yaml" in text
    down = next(line for line in text.splitlines() if line.startswith("poll am-down:"))
    assert "FAILING" in down and "last success never" in down
    ok = next(line for line in text.splitlines() if line.startswith("poll am-ok:"))
    assert ok.split()[2].startswith("ok") and "last failure never" in ok
