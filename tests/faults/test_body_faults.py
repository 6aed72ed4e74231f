"""Malformed, oversized, deeply nested and wrongly encoded bodies against the daemon's real limits.

One daemon with the shipped defaults (`server.max_body_bytes` 1 MiB, `max_alerts_per_body` 1000)
serves the module. Each hostile body gets its 4xx naming the field (or 413), the database does
not change, the next good body still gets 202, and the daemon log never shows a traceback.
The backend does not matter here (parsing happens before any write), so SQLite only; NUL in a
label value, which PostgreSQL cannot store, is covered on both backends by
tests/e2e/test_bad_input.py::test_invalid_body_is_refused_and_nothing_stored[nul-in-label].

Already covered with lowered limits by tests/e2e/test_ingest_fuzz.py (not repeated): a UTF-8 BOM,
a lone high surrogate in a label, nesting just past the parser's depth, bodies one byte over
the size limit, random invalid UTF-8 and truncated JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from engine.store.tables import alerts, events
from tests.conftest import DaemonProcess, free_port, write_config
from tests.support.faultkit import counts

GOOD_ALERT = '{"status":"firing","labels":{"alertname":"BodyFault","instance":"web-9"}}'


def _am(alerts_json: str, extra: str = "") -> bytes:
    return ('{"version":"4","alerts":[' + alerts_json + "]" + extra + "}").encode()


def _deep(open_: bytes, close: bytes, depth: int, leaf: bytes = b"") -> bytes:
    return open_ * depth + leaf + close * depth


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    folder = tmp_path_factory.mktemp("body-faults")
    db_url = f"sqlite:///{folder / 'suture.db'}"
    port = free_port()
    daemon = DaemonProcess(write_config(folder, db_url, port=port), port).start()
    try:
        yield daemon, db_url
    finally:
        daemon.stop()


def _post(daemon: DaemonProcess, content: Any, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(
        f"{daemon.url}/api/v1/alerts/alertmanager",
        content=content,
        headers={"content-type": content_type},
        timeout=60,
    )


BAD_BODIES = [
    pytest.param(
        _am(GOOD_ALERT, ',"deep":' + _deep(b"[", b"]", 100_000).decode()),
        400,
        "body",
        id="100k-nested-arrays",
    ),
    pytest.param(
        _am(GOOD_ALERT, ',"deep":' + _deep(b'{"a":', b"}", 100_000, b"1").decode()),
        400,
        "body",
        id="100k-nested-objects",
    ),
    pytest.param(
        b'{"version":"4","alerts":[{"status":"firing","labels":{"alertname":'
        + _deep(b"[", b"]", 100_000)
        + b"}}]}",
        400,
        "body",
        id="100k-nested-in-a-label",
    ),
    pytest.param(_am(GOOD_ALERT).decode().encode("utf-16"), 400, "body", id="utf-16-with-bom"),
    pytest.param(_am(GOOD_ALERT).decode().encode("utf-16-le"), 400, "body", id="utf-16-le-without-bom"),
    pytest.param(_am(GOOD_ALERT).decode().encode("utf-32"), 400, "body", id="utf-32"),
    pytest.param(
        _am(GOOD_ALERT).decode().encode("latin-1").replace(b"BodyFault", b"B\xf6dy"),
        400,
        "body",
        id="latin-1-byte",
    ),
    pytest.param(
        _am('{"status":"firing","labels":{"alertname":"X","\\udc00":"v"}}'),
        400,
        "body",
        id="lone-low-surrogate-in-key",
    ),
    pytest.param(
        _am('{"status":"firing","fingerprint":"\\ud800x","labels":{"alertname":"X"}}'),
        400,
        "body",
        id="lone-high-surrogate-in-fingerprint",
    ),
    pytest.param(
        _am(GOOD_ALERT, ',"truncatedAlerts":123456789012345678901234567890'),
        422,
        "truncatedAlerts",
        id="integer-past-64-bits",
    ),
    pytest.param(
        _am('{"status":"firing","labels":{"alertname":"X","n":123456789012345678901234567890}}'),
        422,
        "alerts.0.labels.n",
        id="huge-number-as-label",
    ),
    pytest.param(_am(GOOD_ALERT, ',"truncatedAlerts":1e400'), 400, "body", id="float-overflows-to-infinity"),
    pytest.param(
        b'{"version":4e999999999,"alerts":[' + GOOD_ALERT.encode() + b"]}", 400, "body", id="huge-exponent"
    ),
    pytest.param(
        _am('{"status":"firing","labels":{"alertname":"X"},"annotations":{"d":"a\\u0000b"}}'),
        422,
        "alerts.0.annotations.d",
        id="nul-escape-in-annotation",
    ),
    pytest.param(
        _am('{"status":"firing","fingerprint":"a\\u0000b","labels":{"alertname":"X"}}'),
        422,
        "alerts.0.fingerprint",
        id="nul-escape-in-fingerprint",
    ),
    pytest.param(_am('{"status":"firing","labels":{"alertname":"X\x00"}}'), 400, "body", id="raw-nul-byte"),
    pytest.param(
        _am(",".join([GOOD_ALERT] * 10_000)), 422, "alerts", id="10k-alerts-over-max-alerts-per-body"
    ),
    pytest.param(_am(",".join([GOOD_ALERT] * 1001)), 422, "alerts", id="1001-alerts"),
    pytest.param(
        b'{"version":"4","alerts":[' + b" " * (1024 * 1024) + GOOD_ALERT.encode() + b"]}",
        413,
        None,
        id="whitespace-past-max-body-bytes",
    ),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
def test_hostile_body_is_refused_naming_the_field_and_stores_nothing(
    site: tuple[DaemonProcess, str], body: bytes, status: int, field: str | None
) -> None:
    """The body gets its 4xx naming the field (or 413), nothing is stored, the next good body gets 202,
    and the daemon logs no traceback or error for it."""
    daemon, db_url = site
    before = counts(db_url)
    log_from = len(daemon.log())
    response = _post(daemon, body)
    assert response.status_code == status, response.text[:300]
    answer = response.json()
    assert isinstance(answer["error"], str) and answer["error"]
    if field is not None:
        assert answer["field"] == field, answer
        assert answer["error"].startswith(field), answer
    else:
        assert "max_body_bytes" in answer["error"], answer
    assert counts(db_url) == before
    good = _post(daemon, _am(GOOD_ALERT))
    assert good.status_code == 202, good.text
    assert counts(db_url).events == before.events + 1
    assert _log_problems(daemon.log()[log_from:]) == []


def _log_problems(log: str) -> list[str]:
    """Log lines that are not structured records, or that report an error: a traceback shows as both."""
    return [
        line
        for line in log.splitlines()
        if not line.startswith("{") or json.loads(line).get("level") in ("error", "critical")
    ]


def test_chunked_body_past_the_limit_gets_413(site: tuple[DaemonProcess, str]) -> None:
    """A body streamed without Content-Length is cut at max_body_bytes: 413, nothing stored."""
    daemon, db_url = site
    before = counts(db_url)

    def stream() -> Iterator[bytes]:
        yield b'{"version":"4","alerts":[' + GOOD_ALERT.encode() + b'],"pad":"'
        for _ in range(64):
            yield b"a" * 32 * 1024  # 2 MiB in all
        yield b'"}'

    response = _post(daemon, stream())
    assert response.status_code == 413, response.text[:300]
    assert "max_body_bytes" in response.json()["error"]
    assert counts(db_url) == before
    assert _post(daemon, _am(GOOD_ALERT)).status_code == 202


def _stored(db_url: str, event_id: int) -> tuple[str, list[dict[str, Any]]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            body = conn.execute(select(events.c.body).where(events.c.id == event_id)).scalar_one()
            rows = conn.execute(select(alerts.c.status, alerts.c.labels).where(alerts.c.event_id == event_id))
            return body, [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def test_duplicate_keys_take_the_last_value_and_keep_the_raw_body(site: tuple[DaemonProcess, str]) -> None:
    """Duplicate JSON keys are legal: the last one wins (as every later re-parse of the stored body
    would agree), and the event keeps the bytes exactly as sent."""
    daemon, db_url = site
    body = _am(
        '{"status":"resolved","status":"firing",'
        '"labels":{"alertname":"DupKeys","instance":"web-9","k":"first","k":"second"}}'
    )
    response = _post(daemon, body)
    assert response.status_code == 202, response.text
    raw, [row] = _stored(db_url, response.json()["event_id"])
    assert raw == body.decode()
    assert row["status"] == "firing" and row["labels"]["k"] == "second"
    assert len(response.json()["incidents_opened"]) == 1


def test_escaped_surrogate_pair_is_one_character(site: tuple[DaemonProcess, str]) -> None:
    """A valid surrogate pair escape (an emoji) is accepted and stored as that one character."""
    daemon, db_url = site
    response = _post(
        daemon, _am('{"status":"firing","labels":{"alertname":"Pair\\ud83d\\ude00","instance":"w"}}')
    )
    assert response.status_code == 202, response.text
    _, [row] = _stored(db_url, response.json()["event_id"])
    assert row["labels"]["alertname"] == "Pair\U0001f600"
