"""Hostile input against the real daemon: no body gets a 5xx, and no body is ever half stored.

One `suture serve` subprocess on a SQLite file serves the whole module. Every request is
checked against the database itself (sqlite3, read-only):

- 202: the answer names `event_id` and `alerts`; that event row exists with the raw body
  exactly as sent, and exactly as many alert rows as the body had alerts; the totals grew
  by one event, that many alerts and exactly the incidents the answer says it opened;
- 4xx: 400 only and always for a body that is not JSON, 413 only and always for a body
  over `server.max_body_bytes`, 422 otherwise with the `field` named at the start of the
  `error`; the number of events, alerts and incidents did not change.

The bodies come from four kinds of strategies: arbitrary JSON, raw bytes (invalid UTF-8,
truncated JSON, padding around the size limit), valid vendor bodies (Alertmanager, Grafana,
Zabbix, generic) with unicode, empty, null and near-limit values and odd but legal times,
and those valid bodies mutated at random places (wrong types, over-limit sizes, bad times,
bad Zabbix tags, missing or extra keys). A pinned list of edge bodies (each limit exactly
at and one over it, parser depth, time range ends, NULs, ids over 255 characters) runs
every time. The limits are lowered in the daemon's config so that bodies at and just over
every limit stay cheap to send.

At the end schemathesis runs every operation of `/openapi.json` against the same daemon
(not_a_server_error, response_schema_conformance), with the same database oracle for the
alert endpoints.
"""

from __future__ import annotations

import json
import sqlite3
import string
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import DaemonProcess, free_port, write_config

SOURCES = ("alertmanager", "grafana", "zabbix", "generic")

LIMITS = {
    "max_body_bytes": 128 * 1024,
    "max_alerts_per_body": 20,
    "max_label_bytes": 512,
    "max_annotation_bytes": 2048,
}
BODY_LIMIT = LIMITS["max_body_bytes"]
ALERTS_LIMIT = LIMITS["max_alerts_per_body"]
LABEL_LIMIT = LIMITS["max_label_bytes"]
ANNOTATION_LIMIT = LIMITS["max_annotation_bytes"]
KEY_LIMIT = 256  # characters, fixed in engine/api.py
ZABBIX_ZONE = "America/St_Johns"  # a negative, half-hour offset with DST gaps

ZERO_TIME = "0001-01-01T00:00:00Z"
CATALOG_NAMES = ("NodeFilesystemAlmostOutOfSpace", "NeedsApproval", "ManualOnly")

_BASE_SETTINGS = settings(
    deadline=None,
    # no "explain" phase: it replays failures many more times against the live daemon
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz_settings(max_examples: int) -> settings:
    return settings(_BASE_SETTINGS, max_examples=max_examples)


# ----------------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("ingest-fuzz")
    port = free_port()
    config = write_config(
        folder,
        f"sqlite:///{folder / 'suture.db'}",
        port=port,
        server={"host": "127.0.0.1", "port": port, **LIMITS},
        sources={"zabbix": {"timezone": ZABBIX_ZONE}},
        logging={"level": "warning", "format": "json"},
    )
    daemon = DaemonProcess(config, port).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def client(fuzz_daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_daemon.url, timeout=5) as http:
        yield http


@pytest.fixture(scope="module")
def db(fuzz_daemon: DaemonProcess) -> Iterator[sqlite3.Connection]:
    path = fuzz_daemon.config_path.parent / "suture.db"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=5)
    try:
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------------------- the oracle


def _totals(db: sqlite3.Connection) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM alerts),"
        " (SELECT count(*) FROM incidents)"
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _alerts_in(source: str, payload: Any) -> int:
    """How many alerts an accepted body had: Zabbix sends one per request, the others a list."""
    if source == "zabbix":
        return 1
    assert isinstance(payload, dict) and isinstance(payload.get("alerts"), list), payload
    return len(payload["alerts"])


def post_and_check(
    client: httpx.Client,
    db: sqlite3.Connection,
    source: str,
    content: bytes,
    content_type: str | None = "application/json",
    must_accept: bool = False,
) -> int:
    """POST `content`, check the answer and the database against each other (module docstring)."""
    headers = {"content-type": content_type} if content_type is not None else {}
    before = _totals(db)
    response = client.post(f"/api/v1/alerts/{source}", content=content, headers=headers)
    status, answer = response.status_code, response.content
    check_answer(db, source, content, status, answer, before, must_accept, content_type)
    return response.status_code


def check_answer(
    db: sqlite3.Connection,
    source: str,
    content: bytes,
    status: int,
    answer_bytes: bytes,
    before: tuple[int, int, int],
    must_accept: bool = False,
    content_type: str | None = "application/json",
) -> None:
    """The answer to one POSTed body agrees with the contract and with the rows in the database."""
    after = _totals(db)
    where = f"POST /api/v1/alerts/{source} with body {content!r}"
    said = answer_bytes.decode("utf-8", "replace")
    assert status < 500, f"{status} {said}\n{where}"
    answer = orjson.loads(answer_bytes)
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        assert status == 415 and answer["field"] == "content-type", f"{status} {said} for {content_type!r}"
        assert after == before, f"a refused body changed the row counts {before} -> {after}\n{where}"
        return
    if currently_in_test_context():  # for --hypothesis-show-statistics
        event(f"{source}: {status} {answer.get('field', '') if status == 422 else ''}".rstrip())

    try:
        payload: Any = orjson.loads(content)
        is_json = True
    except orjson.JSONDecodeError:
        payload, is_json = None, False

    if len(content) > BODY_LIMIT:
        assert status == 413, f"{status} {said} for a body of {len(content)} bytes\n{where}"
    elif not is_json:
        assert status == 400, f"{status} {said} for a body that is not JSON\n{where}"
    else:
        assert status in (202, 422), f"{status} {said}\n{where}"
        if must_accept and not (
            status == 422 and answer.get("error", "").endswith("contains a NUL character")
        ):
            assert status == 202, f"a valid body was refused: {status} {said}\n{where}"

    if status != 202:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
        if status == 422:
            assert answer["error"].startswith(f"{answer['field']}: "), answer
        assert after == before, f"a refused body changed the row counts {before} -> {after}\n{where}"
        return

    expected = _alerts_in(source, payload)
    assert isinstance(answer.get("event_id"), int), answer
    assert answer.get("alerts") == expected, f"{answer}\n{where}"
    row = db.execute(
        "SELECT source, alert_count, body FROM events WHERE id = ?", (answer["event_id"],)
    ).fetchone()
    assert row is not None, f"202 but no event row {answer['event_id']}\n{where}"
    assert row[0] == source and row[1] == expected, (row[:2], where)
    assert row[2] == content.decode("utf-8"), f"stored body differs from the one sent\n{where}"
    stored = db.execute(
        "SELECT count(*), count(DISTINCT source), min(source) FROM alerts WHERE event_id = ?",
        (answer["event_id"],),
    ).fetchone()
    assert stored[0] == expected, f"event {answer['event_id']} has {stored[0]} alert rows, not {expected}"
    assert stored[1] == 1 and stored[2] == source, stored
    opened = len(answer["incidents_opened"])
    assert after == (before[0] + 1, before[1] + expected, before[2] + opened), (before, after, answer, where)


# -------------------------------------------------------------------- value strategies


def _sized(size_bytes: int, char: str) -> str:
    """Text of exactly `size_bytes` UTF-8 bytes, built from `char` (1 to 4 bytes) and padded with 'a'."""
    width = len(char.encode())
    count = max(size_bytes, 0) // width
    return char * count + "a" * (max(size_bytes, 0) - count * width)


WIDE_CHARS = ("a", "é", "€", "😀", "\x00", "\u200b")


def near_bytes(limit: int, low: int, high: int) -> st.SearchStrategy[str]:
    """Text whose UTF-8 size is `limit + delta` bytes, delta in [low, high]."""
    return st.builds(_sized, st.integers(limit + low, limit + high), st.sampled_from(WIDE_CHARS))


def near_chars(limit: int, low: int, high: int) -> st.SearchStrategy[str]:
    """Text of `limit + delta` characters (label keys are limited in characters)."""
    return st.builds(
        lambda n, ch: ch * n, st.integers(limit + low, limit + high), st.sampled_from(WIDE_CHARS)
    )


def text_up_to(limit: int) -> st.SearchStrategy[str]:
    """Legal text for a field limited to `limit` bytes: short unicode, empty, or at the limit."""
    return st.one_of(st.text(max_size=24), st.just(""), near_bytes(limit, -3, 0))


def key_text() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=16), near_chars(KEY_LIMIT, -2, 0))


def str_map(value_limit: int, max_size: int = 4) -> st.SearchStrategy[Any]:
    return st.one_of(st.dictionaries(key_text(), text_up_to(value_limit), max_size=max_size), st.none())


OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def legal_time(draw: st.DrawFn) -> str | None:
    """An RFC 3339 / ISO 8601 time the connectors must accept, or a value meaning "no time"."""
    kind = draw(st.sampled_from(["iso", "iso", "iso", "zero", "empty", "null"]))
    if kind == "zero":
        return ZERO_TIME
    if kind == "empty":
        return draw(st.sampled_from(["", " "]))
    if kind == "null":
        return None
    moment = draw(
        st.datetimes(min_value=datetime(2, 1, 2), max_value=datetime(9998, 12, 30), timezones=OFFSETS)
    )
    text = moment.isoformat(sep=draw(st.sampled_from(["T", " "])))
    if moment.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text[: -len("+00:00")] + "Z"
    if draw(st.booleans()) and "." not in text:
        # Go's RFC 3339 with nanoseconds, as Alertmanager and Grafana send it
        digits = draw(st.integers(1, 9))
        cut = 19  # YYYY-MM-DDTHH:MM:SS
        text = text[:cut] + "." + draw(st.text("0123456789", min_size=digits, max_size=digits)) + text[cut:]
    return text


ODD_TIMES = st.sampled_from(
    [
        "0000-00-00T00:00:00Z",
        "0001-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00-23:59",
        "0001-12-31T23:59:59-23:59",
        "0002-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999-00:01",
        "9999-12-31T23:59:59-23:59",
        "2026-02-29T00:00:00Z",
        "2024-02-29T12:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:15:60Z",
        "2026-13-01T00:00:00Z",
        "2026-11-23T10:15:02+24:00",
        "2026-11-23T10:15:02.1234567890123456789Z",
        "2026-11-23t10:15:02z",
        "-0001-01-01T00:00:00Z",
        "+12026-01-01T00:00:00Z",
        "99999-01-01T00:00:00Z",
        "2026-W53-7",
        "2026-366",
        "1700000000",
        "1e9",
        "now",
        "T",
        "\x00",
        " 2026-11-23T10:15:02Z ",
        "2026-11-23T10:15:02Z\n",
        "２０２６-１１-２３T10:15:02Z",
        "2026.11.23 10:15:02",
        "2026.02.30 10:15:02",
        "2026.03.08 02:30:00",  # inside St. John's DST gap
        "2026.11.01 01:30:00",  # repeated hour in St. John's
        "{EVENT.DATE} {EVENT.TIME}",
        "*UNKNOWN* *UNKNOWN*",
        "{EVENT.DATE} 10:15:02",
    ]
)

SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)

BAD_ZABBIX_TAGS = st.sampled_from(
    [
        "[",
        "{}",
        "[1]",
        "[null]",
        '[{"tag": ""}]',
        '[{"tag": 1}]',
        '[{"value": "x"}]',
        '[{"tag": "a", "value": 1}]',
        '[{"tag": "a", "value": ["x"]}]',
        '[{"tag": "\\ud800"}]',
        "[" * 5000 + "]" * 5000,
        json.dumps([{"tag": "t" * (KEY_LIMIT + 1), "value": "v"}]),
        json.dumps([{"tag": "t", "value": "v" * (LABEL_LIMIT + 1)}]),
        # two values of one tag are joined with ",": each fits, together they do not
        json.dumps([{"tag": "t", "value": "v" * LABEL_LIMIT}, {"tag": "t", "value": "w" * LABEL_LIMIT}]),
        "NaN",
        "1e999",
    ]
)

HOSTILE = st.one_of(
    JSON_VALUES,
    BAD_ZABBIX_TAGS,
    st.sampled_from(["", " ", "\t\n", "null", "true", "0", "-1", "{}", "[]", "firing ", "FIRING", "4", "1"]),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308]),
    st.text(max_size=40),
    SURROGATES,
    near_bytes(LABEL_LIMIT, -1, 3),
    near_bytes(ANNOTATION_LIMIT, -1, 3),
    near_chars(KEY_LIMIT, -1, 3),
    ODD_TIMES,
    st.sampled_from(["{HOST.IP}", "{$USER.MACRO}", "*UNKNOWN*", "{EVENT.ID}", "{TRIGGER.NAME} {HOST.HOST}"]),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


def optional_fields(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """Each field present or absent; absent ones are simply not sent."""
    return {key: draw(strategy) for key, strategy in fields.items() if draw(st.booleans())}


def extras(draw: st.DrawFn, known: set[str]) -> dict[str, Any]:
    """Keys the vendor may add in a later version: kept in the event, never an error."""
    keys = st.text(max_size=12).filter(lambda k: k not in known)
    return draw(st.dictionaries(keys, JSON_VALUES, max_size=2))


# --------------------------------------------------------------- valid vendor bodies


AM_ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
GRAFANA_ALERT_KEYS = AM_ALERT_KEYS | {
    "values",
    "valueString",
    "silenceURL",
    "dashboardURL",
    "panelURL",
    "imageURL",
}
GROUP_KEYS = {
    "version",
    "alerts",
    "receiver",
    "status",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "groupKey",
    "truncatedAlerts",
}
GRAFANA_KEYS = GROUP_KEYS | {"orgId", "title", "state", "message"}
ZABBIX_KEYS = {
    "event_id",
    "event_value",
    "event_name",
    "trigger_name",
    "event_severity",
    "host",
    "host_ip",
    "trigger_id",
    "tags",
    "event_time",
    "recovery_time",
}
GENERIC_ALERT_KEYS = {
    "name",
    "status",
    "labels",
    "annotations",
    "fingerprint",
    "starts_at",
    "startsAt",
    "ends_at",
    "endsAt",
    "generator_url",
    "generatorURL",
}

STATUS = st.sampled_from(["firing", "resolved"])


@st.composite
def am_labels(draw: st.DrawFn) -> Any:
    """Labels as Alertmanager sends them, sometimes matching a code of the test catalog."""
    labels = draw(str_map(LABEL_LIMIT))
    if labels is not None and draw(st.booleans()):
        labels["alertname"] = draw(st.one_of(st.sampled_from(CATALOG_NAMES), text_up_to(LABEL_LIMIT)))
        if draw(st.booleans()):
            labels["mountpoint"] = draw(st.sampled_from(["/", "/var", "/home"]))
        if draw(st.booleans()):
            labels["instance"] = draw(st.one_of(st.just("web-1:9100"), text_up_to(LABEL_LIMIT)))
    return labels


@st.composite
def am_alert(draw: st.DrawFn, grafana: bool = False, small: bool = False) -> dict[str, Any]:
    alert: dict[str, Any] = {"status": draw(STATUS)}
    if small:
        alert["labels"] = {"alertname": draw(st.text(max_size=8)), "i": draw(st.text(max_size=4))}
        return alert
    fields: dict[str, st.SearchStrategy[Any]] = {
        "labels": am_labels(),
        "annotations": str_map(ANNOTATION_LIMIT, max_size=3),
        "startsAt": legal_time(),
        "endsAt": legal_time(),
        "generatorURL": st.one_of(st.none(), st.just("http://prometheus.local/graph?g0.expr=up"), st.text()),
        "fingerprint": st.one_of(st.none(), st.just(""), st.text(max_size=40), st.text("0123456789abcdef")),
    }
    if grafana:
        url = st.one_of(st.none(), st.text(max_size=30))
        fields |= {
            "values": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=3)),
            "valueString": url,
            "silenceURL": url,
            "dashboardURL": url,
            "panelURL": url,
            "imageURL": url,
        }
    alert |= optional_fields(draw, fields)
    alert |= extras(draw, GRAFANA_ALERT_KEYS)
    return alert


def alert_list(alert: Any, small_alert: Any, many: int) -> st.SearchStrategy[list[Any]]:
    """1 to 3 full alerts, or a body of many small ones up to `many` (at or over the limit)."""
    return st.one_of(
        st.lists(alert, min_size=1, max_size=3),
        st.lists(small_alert, min_size=ALERTS_LIMIT - 1, max_size=many),
    )


@st.composite
def alertmanager_body(draw: st.DrawFn, many: int = ALERTS_LIMIT) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "4",
        "alerts": draw(alert_list(am_alert(), am_alert(small=True), many)),
    }
    body |= optional_fields(draw, group_fields())
    body |= extras(draw, GROUP_KEYS)
    return body


def group_fields() -> dict[str, st.SearchStrategy[Any]]:
    name = st.one_of(st.none(), st.text(max_size=30))
    return {
        "receiver": name,
        "status": st.one_of(st.none(), STATUS),
        "groupLabels": str_map(LABEL_LIMIT),
        "commonLabels": str_map(LABEL_LIMIT),
        "commonAnnotations": str_map(ANNOTATION_LIMIT),
        "externalURL": name,
        "groupKey": name,
        "truncatedAlerts": st.integers(0, 2**63 - 1),
    }


@st.composite
def grafana_body(draw: st.DrawFn, many: int = ALERTS_LIMIT) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "1",
        "alerts": draw(alert_list(am_alert(grafana=True), am_alert(grafana=True, small=True), many)),
    }
    name = st.one_of(st.none(), st.text(max_size=30))
    org_id = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    body |= optional_fields(
        draw, group_fields() | {"orgId": org_id, "title": name, "state": name, "message": name}
    )
    body |= extras(draw, GRAFANA_KEYS)
    return body


def zabbix_local_time() -> st.SearchStrategy[str]:
    moment = st.datetimes(min_value=datetime(2, 1, 2), max_value=datetime(9998, 12, 30))
    return st.one_of(
        moment.map(lambda m: f"{m.year:04d}.{m.month:02d}.{m.day:02d} {m:%H:%M:%S}"),
        moment.map(lambda m: m.isoformat(sep=" ", timespec="seconds")),
        st.sampled_from(["", "{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}", "*UNKNOWN*"]),
    )


@st.composite
def zabbix_tags(draw: st.DrawFn) -> str:
    tag = st.one_of(
        st.sampled_from(["scope", "service", "host", "severity"]), st.text(min_size=1, max_size=12)
    )
    items = draw(
        st.lists(
            st.fixed_dictionaries(
                {"tag": tag}, optional={"value": st.one_of(st.none(), st.text(max_size=30))}
            ),
            max_size=4,
        )
    )
    return json.dumps(items, ensure_ascii=draw(st.booleans()))


@st.composite
def zabbix_body(draw: st.DrawFn, many: int = 1) -> dict[str, Any]:
    """One Zabbix event per request (`many` only keeps the signature of the other builders)."""
    event_id = st.one_of(
        st.integers(0, 2**53), st.integers(0, 2**63).map(str), st.text(string.digits, min_size=1)
    )
    absent = st.one_of(st.none(), st.sampled_from(["", "{HOST.IP}", "*UNKNOWN*", "{$USER.MACRO}"]))
    body: dict[str, Any] = {
        "event_id": draw(event_id),
        "event_value": draw(st.sampled_from(["0", "1", 0, 1, " 1 "])),
    }
    body |= optional_fields(
        draw,
        {
            "event_name": st.one_of(absent, text_up_to(LABEL_LIMIT)),
            "trigger_name": st.one_of(absent, st.sampled_from(CATALOG_NAMES), text_up_to(LABEL_LIMIT)),
            "event_severity": st.one_of(
                absent,
                st.sampled_from(["Not classified", "Information", "Warning", "Average", "High", "Disaster"]),
            ),
            "host": st.one_of(absent, text_up_to(LABEL_LIMIT)),
            "host_ip": st.one_of(absent, st.just("10.0.0.5"), text_up_to(LABEL_LIMIT)),
            "trigger_id": st.one_of(absent, st.integers(0, 2**53), st.text(string.digits, max_size=12)),
            "tags": st.one_of(absent, zabbix_tags(), st.just("[]")),
            "event_time": st.one_of(absent, zabbix_local_time()),
            "recovery_time": st.one_of(absent, zabbix_local_time()),
        },
    )
    # Extra media type parameters become annotations when they are strings.
    extra_key = st.text(max_size=12).filter(lambda k: k not in ZABBIX_KEYS)
    body |= draw(st.dictionaries(extra_key, st.one_of(text_up_to(ANNOTATION_LIMIT), JSON_VALUES), max_size=3))
    return body


@st.composite
def generic_alert(draw: st.DrawFn, small: bool = False) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "name": draw(
            st.one_of(
                st.sampled_from(CATALOG_NAMES),
                st.text(min_size=1, max_size=24),
                near_bytes(LABEL_LIMIT, -3, 0),
            )
        ),
        "status": draw(STATUS),
    }
    if small:
        return alert
    loose = st.one_of(
        text_up_to(LABEL_LIMIT),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    starts, ends, url = (draw(st.sampled_from(pair)) for pair in _GENERIC_ALIASES)
    alert |= optional_fields(
        draw,
        {
            "labels": st.one_of(st.none(), st.dictionaries(key_text(), loose, max_size=4)),
            "annotations": st.one_of(
                st.none(), st.dictionaries(key_text(), text_up_to(ANNOTATION_LIMIT), max_size=3)
            ),
            "fingerprint": st.one_of(st.none(), st.just(""), st.text(max_size=40)),
            starts: legal_time(),
            ends: legal_time(),
            url: st.one_of(st.none(), st.text(max_size=30)),
        },
    )
    alert |= extras(draw, GENERIC_ALERT_KEYS)
    return alert


_GENERIC_ALIASES = (("starts_at", "startsAt"), ("ends_at", "endsAt"), ("generator_url", "generatorURL"))


@st.composite
def generic_body(draw: st.DrawFn, many: int = ALERTS_LIMIT) -> dict[str, Any]:
    body: dict[str, Any] = {"alerts": draw(alert_list(generic_alert(), generic_alert(small=True), many))}
    body |= extras(draw, {"alerts"})
    return body


VALID_BODIES = {
    "alertmanager": alertmanager_body,
    "grafana": grafana_body,
    "zabbix": zabbix_body,
    "generic": generic_body,
}


def encode(payload: Any, ascii_only: bool) -> bytes:
    """JSON as a sender writes it. Lone surrogates become \\udXXXX escapes or, unescaped, invalid UTF-8."""
    if ascii_only:
        return json.dumps(payload, ensure_ascii=True).encode()
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------- hostile bodies


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a decoded body a value sits at (the root is the empty path)."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_body(draw: st.DrawFn, source: str) -> Any:
    """A valid body of `source` (allowed to go over the alert limit) with one to three hostile edits."""
    body = draw(VALID_BODIES[source](many=ALERTS_LIMIT + 2))
    vendor_keys = sorted(GRAFANA_KEYS | GRAFANA_ALERT_KEYS | ZABBIX_KEYS | GENERIC_ALERT_KEYS)
    for _ in range(draw(st.integers(1, 3))):
        # The root itself is only added to: non-object bodies are the arbitrary-JSON test's job.
        path = draw(st.sampled_from(list(_paths(body))))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"])) if path else "add"
        target = _at(body, path)
        if action == "add" and isinstance(target, dict):
            target[draw(st.one_of(st.sampled_from(vendor_keys), st.text(max_size=8)))] = draw(HOSTILE)
        elif action == "add" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(HOSTILE))
        elif action == "delete":
            del _at(body, path[:-1])[path[-1]]
        elif path:
            _at(body, path[:-1])[path[-1]] = draw(HOSTILE)
    return body


@st.composite
def raw_body(draw: st.DrawFn, source: str) -> bytes:
    """Bytes that are not JSON, or JSON framed badly, or valid JSON just around the size limit."""
    valid = encode(draw(VALID_BODIES[source]()), ascii_only=draw(st.booleans()))
    kind = draw(
        st.sampled_from(["binary", "truncated", "bad-utf8", "bom", "trailing", "two-docs", "deep", "padded"])
    )
    if kind == "binary":
        return draw(st.binary(max_size=256))
    if kind == "truncated":
        return valid[: draw(st.integers(0, max(len(valid) - 1, 0)))]
    if kind == "bad-utf8":
        bad = draw(
            st.sampled_from(
                [
                    b"\xff",
                    b"\xfe\xff",
                    b"\xc3",
                    b"\xc0\xaf",
                    b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80",
                    b"\xe2\x82",
                    b"\x80",
                ]
            )
        )
        cut = draw(st.integers(0, len(valid)))
        return valid[:cut] + bad + valid[cut:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + valid
    if kind == "trailing":
        return valid + draw(st.sampled_from([b",", b"}", b"]", b"\x00", b"garbage", b"\n\n"]))
    if kind == "two-docs":
        return valid + b" " + valid
    if kind == "deep":
        depth = draw(st.integers(1000, 1100))
        inner = b"[" * depth + b"]" * depth
        return valid[:-1] + b',"deep":' + inner + b"}" if valid.endswith(b"}") else inner
    # Whitespace padding to within a few bytes of server.max_body_bytes, either side.
    target = BODY_LIMIT + draw(st.integers(-2, 2))
    return valid + b" " * max(target - len(valid), 0)


# ---------------------------------------------------------------------------- tests


@fuzz_settings(90)
@given(
    source=st.sampled_from(SOURCES),
    payload=st.one_of(
        JSON_VALUES,
        st.dictionaries(st.sampled_from(sorted(GRAFANA_KEYS | ZABBIX_KEYS)), JSON_VALUES, max_size=6),
        st.fixed_dictionaries(
            {"alerts": st.lists(st.dictionaries(st.sampled_from(sorted(GENERIC_ALERT_KEYS)), JSON_VALUES))},
            optional={"version": st.sampled_from(["4", "1", 4, None])},
        ),
    ),
    ascii_only=st.booleans(),
)
def test_arbitrary_json_is_answered_without_5xx_and_never_half_stored(
    client: httpx.Client, db: sqlite3.Connection, source: str, payload: Any, ascii_only: bool
) -> None:
    """Any JSON document at all, also shaped loosely like the vendor envelopes."""
    post_and_check(client, db, source, encode(payload, ascii_only))


@fuzz_settings(80)
@given(
    source=st.sampled_from(SOURCES),
    data=st.data(),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin-1",
            None,
        ]
    ),
)
def test_raw_bytes_are_answered_without_5xx_and_never_half_stored(
    client: httpx.Client, db: sqlite3.Connection, source: str, data: st.DataObject, content_type: str | None
) -> None:
    """Invalid UTF-8, truncated JSON, BOMs, nesting past the parser's depth, bodies at the size limit."""
    post_and_check(client, db, source, data.draw(raw_body(source), label="body"), content_type)


@pytest.mark.parametrize("source", SOURCES)
@fuzz_settings(60)
@given(data=st.data(), ascii_only=st.booleans())
def test_valid_vendor_bodies_are_stored_whole(
    client: httpx.Client, db: sqlite3.Connection, source: str, data: st.DataObject, ascii_only: bool
) -> None:
    """Legal bodies - unicode, empty and null values, values at every limit, odd legal times - get 202."""
    payload = data.draw(VALID_BODIES[source](), label="payload")
    post_and_check(client, db, source, encode(payload, ascii_only), must_accept=True)


@pytest.mark.parametrize("source", SOURCES)
@fuzz_settings(120)
@given(data=st.data(), ascii_only=st.booleans())
def test_mutated_vendor_bodies_are_answered_without_5xx_and_never_half_stored(
    client: httpx.Client, db: sqlite3.Connection, source: str, data: st.DataObject, ascii_only: bool
) -> None:
    """Valid bodies with wrong types, nulls, over-limit sizes, bad times and missing or extra keys."""
    payload = data.draw(mutated_body(source), label="payload")
    post_and_check(client, db, source, encode(payload, ascii_only))


# ------------------------------------------------------------------- pinned edge cases


def _am(*alerts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"version": "4", "alerts": list(alerts), **fields}


def _am_alert(**fields: Any) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": "Edge"}, **fields}


def _padded(payload: dict[str, Any], size: int) -> bytes:
    """`payload` as JSON followed by spaces up to `size` bytes (whitespace is legal JSON)."""
    content = json.dumps(payload).encode()
    return content + b" " * (size - len(content))


def _nested(depth: int) -> bytes:
    return b'{"version":"4","alerts":[{"status":"firing"}],"deep":' + b"[" * depth + b"]" * depth + b"}"


EDGE_BODIES = [
    # size limit: exactly at it is fine, one byte over is 413, for every source
    *(
        pytest.param(
            source, _padded(body, BODY_LIMIT + over), 413 if over else 202, id=f"{source}-body{over:+d}"
        )
        for source, body in (
            ("alertmanager", _am(_am_alert())),
            ("grafana", {"version": "1", "alerts": [_am_alert()]}),
            ("zabbix", {"event_id": "1", "event_value": "1"}),
            ("generic", {"alerts": [{"name": "Edge", "status": "firing"}]}),
        )
        for over in (0, 1)
    ),
    pytest.param("alertmanager", _am(*[_am_alert()] * ALERTS_LIMIT), 202, id="alerts-at-limit"),
    pytest.param("alertmanager", _am(*[_am_alert()] * (ALERTS_LIMIT + 1)), 422, id="alerts-over-limit"),
    pytest.param(
        "alertmanager", _am(_am_alert(labels={"v": _sized(LABEL_LIMIT, "😀")})), 202, id="label-at-limit"
    ),
    pytest.param(
        "alertmanager",
        _am(_am_alert(labels={"v": _sized(LABEL_LIMIT + 1, "😀")})),
        422,
        id="label-over-limit",
    ),
    pytest.param("alertmanager", _am(_am_alert(labels={"k" * KEY_LIMIT: "v"})), 202, id="key-at-limit"),
    pytest.param(
        "alertmanager", _am(_am_alert(labels={"k" * (KEY_LIMIT + 1): "v"})), 422, id="key-over-limit"
    ),
    pytest.param(
        "generic",
        {"alerts": [{"name": "E", "status": "firing", "annotations": {"d": _sized(ANNOTATION_LIMIT, "€")}}]},
        202,
        id="annotation-at-limit",
    ),
    pytest.param(
        "generic",
        {
            "alerts": [
                {"name": "E", "status": "firing", "annotations": {"d": _sized(ANNOTATION_LIMIT + 1, "€")}}
            ]
        },
        422,
        id="annotation-over-limit",
    ),
    pytest.param("alertmanager", _nested(1022), 202, id="nesting-within-parser-limit"),
    pytest.param("alertmanager", _nested(1030), 400, id="nesting-past-parser-limit"),
    pytest.param(
        "alertmanager",
        b'{"version":"4","alerts":[{"status":"firing","labels":{"a":"\\ud800"}}]}',
        400,
        id="lone-surrogate-escape",
    ),
    pytest.param("alertmanager", b"\xef\xbb\xbf" + json.dumps(_am(_am_alert())).encode(), 400, id="utf8-bom"),
    pytest.param(
        "alertmanager", _am(_am_alert(startsAt="0002-01-01T00:00:00+23:59")), 202, id="time-year-1-utc"
    ),
    pytest.param(
        "alertmanager", _am(_am_alert(startsAt="9999-12-31T23:59:59-23:59")), 422, id="time-past-9999"
    ),
    pytest.param(
        "alertmanager", _am(_am_alert(endsAt="2026-11-23T10:15:02.123456789Z")), 202, id="time-nanos"
    ),
    pytest.param(
        "zabbix",
        {"event_id": "1", "event_value": "1", "event_time": "9999.12.31 23:59:59"},
        422,
        id="zabbix-local-time-past-9999",
    ),
    pytest.param(
        "zabbix",
        {"event_id": "1", "event_value": "1", "event_time": "2026.03.08 02:30:00"},
        202,
        id="zabbix-local-time-in-dst-gap",
    ),
    pytest.param(
        "zabbix",
        {"event_id": "1", "event_value": "1", "tags": "[" * 100_000},
        422,
        id="zabbix-tags-nested-too-deep",
    ),
    pytest.param(
        "zabbix",
        {"event_id": "1", "event_value": "1", "tags": '[{"tag": "\\ud800"}]'},
        422,
        id="zabbix-tag-lone-surrogate",
    ),
    # NUL cannot be stored by PostgreSQL: refused with 422 on every backend, so both agree.
    pytest.param(
        "alertmanager", _am(_am_alert(labels={"alertname": "Edge", "a": "x\u0000y"})), 422, id="nul-in-label"
    ),
    pytest.param("generic", {"alerts": [{"name": "N\u0000", "status": "firing"}]}, 422, id="nul-in-name"),
    # Ids and names over 255 characters are legal and stored whole (TEXT columns).
    pytest.param("alertmanager", _am(_am_alert(fingerprint="f" * 300)), 202, id="fingerprint-300-chars"),
    pytest.param(
        "alertmanager", _am(_am_alert(labels={"alertname": "a" * 300})), 202, id="alertname-300-chars"
    ),
    pytest.param("zabbix", {"event_id": "1" * 300, "event_value": "1"}, 202, id="zabbix-event-id-300-chars"),
    pytest.param(
        "generic",
        {"alerts": [{"name": "n" * 300, "status": "firing", "labels": {"alertname": "s"}}]},
        202,
        id="generic-name-300-chars",
    ),
]


@pytest.mark.parametrize(("source", "body", "status"), EDGE_BODIES)
def test_edge_bodies_get_their_answer_and_are_stored_whole_or_not_at_all(
    client: httpx.Client, db: sqlite3.Connection, source: str, body: Any, status: int
) -> None:
    """Each limit exactly at and just over it, parser limits, time range edges, NULs and long ids."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert post_and_check(client, db, source, content, must_accept=status == 202) == status


SEQUENCE_STARTS = (None, "2000-01-01T00:00:00Z", "2001-01-01T00:00:00+00:00", "2001-01-01T01:00:00+01:00")


@fuzz_settings(50)
@given(
    bodies=st.lists(
        st.lists(st.tuples(STATUS, st.sampled_from(SEQUENCE_STARTS)), min_size=1, max_size=3),
        min_size=1,
        max_size=4,
    ),
    source=st.sampled_from(["alertmanager", "generic"]),
)
def test_deliveries_of_one_fingerprint_in_any_order_are_stored_whole(
    client: httpx.Client, db: sqlite3.Connection, bodies: list[list[tuple[str, str | None]]], source: str
) -> None:
    """Firing and resolved alerts of one fingerprint, several per body, instances told apart by
    startsAt (equal instants written two ways): dedup, resolve and reopen never fail a body."""
    name = f"Seq{uuid.uuid4().hex}"  # a fresh fingerprint per example
    for alerts in bodies:
        if source == "generic":
            payload: dict[str, Any] = {
                "alerts": [
                    {"name": name, "status": status, **({"starts_at": at} if at else {})}
                    for status, at in alerts
                ]
            }
        else:
            payload = _am(
                *(
                    {"status": status, "labels": {"alertname": name}, **({"startsAt": at} if at else {})}
                    for status, at in alerts
                )
            )
        post_and_check(client, db, source, json.dumps(payload).encode(), must_accept=True)


def test_resolving_and_reopening_one_fingerprint_in_one_body_is_stored(
    client: httpx.Client, db: sqlite3.Connection
) -> None:
    """Found by the fuzzer: the open incident of F is resolved and a new instance of F fires, in one body."""
    name = f"Reopen{uuid.uuid4().hex}"
    first = {"alerts": [{"name": name, "status": "firing", "starts_at": "2000-01-01T00:00:00Z"}]}
    second = {
        "alerts": [
            {"name": name, "status": "resolved"},
            {"name": name, "status": "firing", "starts_at": "2001-01-01T00:00:00Z"},
        ]
    }
    for payload in (first, second):
        post_and_check(client, db, "generic", json.dumps(payload).encode(), must_accept=True)


READ_EDGES = [
    "/api/v1/incidents/9223372036854775807",
    "/api/v1/incidents/9223372036854775808",
    "/api/v1/runs/-9223372036854775809",
    "/api/v1/incidents?cursor=9223372036854775808",
    "/api/v1/runs?cursor=-9223372036854775809",
    "/api/v1/incidents?since=999999999d",
    "/api/v1/runs?since=0001-01-01T00:00:00%2B01:00",
]


@pytest.mark.parametrize("path", READ_EDGES)
def test_read_edges_found_by_schemathesis_answer_without_5xx(client: httpx.Client, path: str) -> None:
    """Pinned from schemathesis finds: ids past 64 bits and `since` values past the datetime range."""
    response = client.get(path)
    assert response.status_code < 500, f"GET {path} -> {response.status_code} {response.text}"


# --------------------------------------------------------------------- schemathesis


@pytest.fixture(scope="module")
def openapi_schema(fuzz_daemon: DaemonProcess) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_daemon.url}/openapi.json", timeout=5)


openapi = schemathesis.pytest.from_fixture("openapi_schema")


@openapi.parametrize()
@fuzz_settings(25)
def test_openapi_operations_answer_without_5xx_and_as_documented(
    case: schemathesis.Case, db: sqlite3.Connection
) -> None:
    """Every operation of /openapi.json: no 5xx, every documented response body matches its schema,
    and what the alert endpoints answer agrees with the database (same oracle as above)."""
    before = _totals(db)
    response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance], timeout=5)
    if case.method.upper() == "POST" and case.path.startswith("/api/v1/alerts/"):
        sent = response.request.body or b""
        content = sent.encode() if isinstance(sent, str) else bytes(sent)
        source = case.path.rsplit("/", 1)[-1]
        sent_type = response.request.headers.get("content-type")
        check_answer(db, source, content, response.status_code, response.content, before, False, sent_type)
