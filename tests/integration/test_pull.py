"""Pull connectors against a real loopback HTTP server answering like Alertmanager, Prometheus and Zabbix."""

from __future__ import annotations

import copy
import gzip
import json
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors import get_connector
from connectors.base import label_fingerprint
from connectors.pull import (
    MAX_ALERTS,
    MAX_RESPONSE_BYTES,
    PullError,
    fetch_alertmanager,
    fetch_prometheus,
)
from connectors.zabbix_api import fetch_zabbix_problems
from engine.config import SourceConfig
from engine.models import AlertStatus
from tests.support.httpserver import TestHttpServer, redirect, respond, running_http_server, slow

TOKEN = "s3cr3t-t0ken-abcdef"
AM_PATH = "/api/v2/alerts"
PROM_PATH = "/api/v1/alerts"
ZBX_PATH = "/api_jsonrpc.php"


@pytest.fixture
def server(http_server: TestHttpServer) -> TestHttpServer:
    """The session's loopback HTTP server, reset for this test (tests/conftest.py)."""
    return http_server


# ---------------------------------------------------------------- real-shaped answers

AM_DISK: dict[str, Any] = {
    "annotations": {
        "description": "Filesystem on /dev/sda1 at web-1:9100 has only 4.2% available space left.",
        "summary": "Filesystem has less than 5% space left.",
    },
    "endsAt": "2026-11-23T10:23:02.123Z",
    "fingerprint": "5e7a1c0f3b2d9a41",
    "receivers": [{"name": "suture"}],
    "startsAt": "2026-11-23T10:15:02.123456789Z",
    "status": {"inhibitedBy": [], "silencedBy": [], "mutedBy": [], "state": "active"},
    "updatedAt": "2026-11-23T10:19:02.456+00:00",
    "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes&g0.tab=1",
    "labels": {
        "alertname": "NodeFilesystemAlmostOutOfSpace",
        "device": "/dev/sda1",
        "fstype": "ext4",
        "instance": "web-1:9100",
        "job": "node",
        "mountpoint": "/",
        "severity": "warning",
    },
}
AM_UNIT: dict[str, Any] = {
    "annotations": {"summary": "Systemd unit nginx.service failed."},
    "endsAt": "2026-11-23T10:24:10.000Z",
    "fingerprint": "a91b03d2e4c5f687",
    "receivers": [{"name": "suture"}],
    "startsAt": "2026-11-23T10:16:10Z",
    "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
    "updatedAt": "2026-11-23T10:20:10Z",
    "generatorURL": "http://prometheus:9090/graph?g0.expr=node_systemd_unit_state",
    "labels": {"alertname": "NodeSystemdServiceFailed", "instance": "web-2:9100", "name": "nginx.service"},
}


def prometheus_body(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"alerts": list(alerts)}}


PROM_FIRING: dict[str, Any] = {
    "labels": {"alertname": "HighRequestLatency", "instance": "api-1:8080", "job": "api", "severity": "page"},
    "annotations": {"summary": "High request latency on api-1:8080"},
    "state": "firing",
    "activeAt": "2026-11-23T10:15:02.123456789Z",
    "value": "1.27e+00",
}
PROM_PENDING: dict[str, Any] = {
    "labels": {"alertname": "HighErrorRate", "instance": "api-2:8080", "job": "api", "severity": "ticket"},
    "annotations": {"summary": "Error rate above 5% on api-2:8080"},
    "state": "pending",
    "activeAt": "2026-11-23T10:18:40.5Z",
    "value": "6.1e-02",
}


def rpc(result: Any, request_id: int = 1) -> Any:
    return respond(json={"jsonrpc": "2.0", "result": result, "id": request_id})


ZBX_LOAD: dict[str, Any] = {
    "eventid": "4711",
    "source": "0",
    "object": "0",
    "objectid": "23011",
    "clock": "1795428902",  # 2026-11-23 10:15:02 UTC
    "ns": "482113290",
    "r_eventid": "0",
    "r_clock": "0",
    "r_ns": "0",
    "correlationid": "0",
    "userid": "0",
    "name": "Load average is too high on web-1 (per CPU load over 1.5 for 5m)",
    "acknowledged": "0",
    "severity": "3",
    "suppressed": "0",
    "opdata": "Load averages(1m, 5m, 15m): (2.1, 1.9, 1.8), # of CPUs: 1",
    "urls": [],
    "cause_eventid": "0",
    "tags": [
        {"tag": "class", "value": "os"},
        {"tag": "component", "value": "cpu"},
        {"tag": "scope", "value": "performance"},
    ],
}
ZBX_AGENT: dict[str, Any] = {
    **ZBX_LOAD,
    "eventid": "4702",
    "objectid": "23044",
    "clock": "1795426800",  # 2026-11-23 09:40:00 UTC
    "name": "Zabbix agent is not available (for 3m)",
    "severity": "0",
    "opdata": "",
    "tags": [{"tag": "component", "value": "system"}, {"tag": "scope", "value": "availability"}],
}
ZBX_TRIGGERS = [
    {
        "triggerid": "23011",
        "description": "Load average is too high (per CPU load over 1.5 for 5m)",
        "hosts": [{"hostid": "10084", "host": "web-1"}],
    },
    {
        "triggerid": "23044",
        "description": "Zabbix agent is not available (for 3m)",
        "hosts": [{"hostid": "10085", "host": "db-1"}],
    },
]
ZBX_INTERFACES = [
    {"interfaceid": "7", "hostid": "10084", "ip": "192.0.2.11", "type": "2", "main": "1"},
    {"interfaceid": "1", "hostid": "10084", "ip": "10.0.0.11", "type": "1", "main": "1"},
    {"interfaceid": "2", "hostid": "10085", "ip": "10.0.0.21", "type": "1", "main": "1"},
]


def script_zabbix(server: TestHttpServer, problems: list[dict[str, Any]]) -> None:
    server.script(ZBX_PATH, [rpc(problems, 1), rpc(ZBX_TRIGGERS, 2), rpc(ZBX_INTERFACES, 3)])


def pull_error(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(PullError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert TOKEN not in message
    return message


# ---------------------------------------------------------------- Alertmanager


def test_alertmanager_changing_list(server: TestHttpServer) -> None:
    """A first poll sees two active alerts, the next one only the alert still active."""
    server.script(AM_PATH, [respond(json=[AM_DISK, AM_UNIT]), respond(json=[AM_UNIT])])
    first = fetch_alertmanager(server.url, source="am-main")
    second = fetch_alertmanager(server.url + "/", source="am-main")
    assert [alert.fingerprint for alert in first] == ["5e7a1c0f3b2d9a41", "a91b03d2e4c5f687"]
    assert [alert.fingerprint for alert in second] == ["a91b03d2e4c5f687"]
    for request in server.requests:
        assert request.method == "GET"
        assert request.path == "/api/v2/alerts?active=true&silenced=false&inhibited=false"


def test_alertmanager_alert_fields(server: TestHttpServer) -> None:
    """An API v2 alert becomes a firing Alert with the vendor fingerprint, labels, annotations, start."""
    server.script(AM_PATH, [respond(json=[AM_DISK])])
    (alert,) = fetch_alertmanager(server.url, source="am-main")
    assert alert.source == "am-main"
    assert alert.status is AlertStatus.firing
    assert alert.name == "NodeFilesystemAlmostOutOfSpace"
    assert alert.labels == AM_DISK["labels"]
    assert alert.annotations == AM_DISK["annotations"]
    assert alert.starts_at == datetime(2026, 11, 23, 10, 15, 2, 123456, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.generator_url == AM_DISK["generatorURL"]


def test_alertmanager_poll_matches_webhook(server: TestHttpServer) -> None:
    """The poll and the Alertmanager webhook give the same alert for the same firing alert."""
    server.script(AM_PATH, [respond(json=[AM_DISK])])
    (polled,) = fetch_alertmanager(server.url, source="alertmanager")
    hook_alert = {key: AM_DISK[key] for key in ("labels", "annotations", "startsAt", "fingerprint")}
    hook_alert.update(status="firing", endsAt="0001-01-01T00:00:00Z", generatorURL=AM_DISK["generatorURL"])
    webhook = {"version": "4", "status": "firing", "receiver": "suture", "alerts": [hook_alert]}
    (pushed,) = get_connector("alertmanager").parse(webhook, SourceConfig(), datetime.now(UTC))
    assert polled == pushed


def test_alertmanager_receiver_filter(server: TestHttpServer) -> None:
    """A receiver limits the poll to what is routed to Suture's receiver."""
    server.script(AM_PATH, [respond(json=[])])
    assert fetch_alertmanager(server.url, source="am", receiver="suture") == []
    assert server.requests[0].path.endswith("&receiver=suture")


def test_alertmanager_bearer_token_sent(server: TestHttpServer) -> None:
    """The token goes in Authorization: Bearer; without one, no Authorization header."""
    server.script(AM_PATH, [respond(json=[AM_UNIT]), respond(json=[AM_UNIT])])
    fetch_alertmanager(server.url, source="am", token=TOKEN)
    fetch_alertmanager(server.url, source="am")
    assert server.requests[0].header("Authorization") == f"Bearer {TOKEN}"
    assert server.requests[1].header("Authorization") is None


def test_bearer_token_wins_over_url_credentials(server: TestHttpServer) -> None:
    """A configured token is sent even when the URL carries user:password; without one, those go as Basic."""
    server.script(AM_PATH, [respond(json=[]), respond(json=[])])
    url = server.url.replace("http://", "http://ops:hunter22@")
    fetch_alertmanager(url, source="am", token=TOKEN)
    fetch_alertmanager(url, source="am")
    assert server.requests[0].header("Authorization") == f"Bearer {TOKEN}"
    assert server.requests[1].header("Authorization").startswith("Basic ")


def test_alertmanager_500_is_pull_error(server: TestHttpServer) -> None:
    """HTTP 500 fails the poll naming the status and the URL without credentials."""
    server.script(AM_PATH, [respond(500, body="internal error: storage unavailable")])
    url = server.url.replace("http://", "http://ops:hunter22@")
    message = pull_error(fetch_alertmanager, url, source="am", token=TOKEN)
    assert "HTTP 500" in message
    assert f"{server.url}/api/v2/alerts" in message
    assert "storage unavailable" in message
    assert "hunter22" not in message and "active=true" not in message


def test_alertmanager_invalid_json_is_pull_error(server: TestHttpServer) -> None:
    """A 200 whose body is not JSON fails the poll."""
    server.script(AM_PATH, [respond(200, body="<html>proxy login</html>")])
    assert "valid JSON" in pull_error(fetch_alertmanager, server.url, source="am", token=TOKEN)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"alerts": []}, "the alert list must be a list, got an object"),
        ([{"annotations": {}}], "alerts.0.labels: is required"),
        ([AM_UNIT, {**AM_DISK, "labels": {"instance": 9100}}], "alerts.1.labels.instance: must be a string"),
        ([{**AM_DISK, "startsAt": "yesterday"}], "alerts.0.startsAt: must be an RFC 3339 time"),
    ],
)
def test_alertmanager_wrong_shape_is_pull_error(server: TestHttpServer, body: Any, expected: str) -> None:
    """A JSON answer of the wrong shape fails the whole poll, naming the field."""
    server.script(AM_PATH, [respond(json=body)])
    assert expected in pull_error(fetch_alertmanager, server.url, source="am")


def test_too_many_alerts_is_pull_error(server: TestHttpServer) -> None:
    """More than MAX_ALERTS alerts fail the poll rather than being truncated."""
    alerts = [{"labels": {"alertname": "A", "i": str(i)}} for i in range(MAX_ALERTS + 1)]
    server.script(AM_PATH, [respond(json=alerts)])
    assert f"limit of {MAX_ALERTS}" in pull_error(fetch_alertmanager, server.url, source="am")


def test_oversized_answer_is_pull_error(server: TestHttpServer) -> None:
    """An answer over 20 MiB is refused without being read."""
    server.script(AM_PATH, [respond(body=b"[" + b" " * MAX_RESPONSE_BYTES + b"]")])
    message = pull_error(fetch_alertmanager, server.url, source="am")
    assert f"more than the limit of {MAX_RESPONSE_BYTES}" in message


def test_timeout_is_pull_error(server: TestHttpServer) -> None:
    """A server slower than the timeout fails the poll promptly, saying it timed out."""
    server.script(AM_PATH, [slow(5, json=[])])
    started = time.monotonic()
    message = pull_error(fetch_alertmanager, server.url, source="am", timeout=0.3)
    assert "timed out after 0.3s" in message
    assert time.monotonic() - started < 3


def test_slow_drip_hits_the_deadline() -> None:
    """A server that sends a byte at a time, each within the read timeout, still fails near the deadline."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
            )
            while not stop.wait(0.1):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert "timed out after 0.5s" in pull_error(fetch_alertmanager, url, source="am", timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_compressed_oversized_answer_is_pull_error(server: TestHttpServer) -> None:
    """The size limit applies to the decompressed body: a small gzip of 21 MiB is refused."""
    bomb = gzip.compress(b"[" + b" " * MAX_RESPONSE_BYTES + b"]")
    server.script(AM_PATH, [respond(body=bomb, headers={"Content-Encoding": "gzip"})])
    assert "more than the limit" in pull_error(fetch_alertmanager, server.url, source="am")


def test_unreachable_is_pull_error() -> None:
    """A port nobody listens on fails the poll with a PullError, not a requests exception."""
    with running_http_server() as gone:
        url = gone.url
    message = pull_error(fetch_alertmanager, url, source="am", token=TOKEN, timeout=2)
    assert url in message and "cannot connect" in message


def test_redirect_is_not_followed(server: TestHttpServer) -> None:
    """A redirect fails the poll (the token is not sent on) and names the target."""
    server.script(AM_PATH, [redirect("https://am.example.com/api/v2/alerts?x=1")])
    message = pull_error(fetch_alertmanager, server.url, source="am", token=TOKEN)
    assert "HTTP 302" in message and "https://am.example.com/api/v2/alerts" in message
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"url": "am.example.com:9093"}, "http:// or https://"),
        ({"url": "http://am:port/"}, "invalid URL"),
        ({"token": f"{TOKEN}\r\nX-Evil: 1"}, "characters not allowed"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_bad_settings_are_pull_errors(kwargs: dict[str, Any], expected: str) -> None:
    """A bad URL, token or timeout is a PullError before any request, never leaking the token."""
    arguments = {"url": "http://127.0.0.1:9/", "source": "am", "token": TOKEN, **kwargs}
    assert expected in pull_error(fetch_alertmanager, **arguments)


def test_environment_proxy_is_used(server: TestHttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is honoured: the poll goes to the proxy with the absolute URL, unless NO_PROXY names it."""
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "am.direct.invalid")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.script(AM_PATH, [respond(json=[AM_UNIT])])
    assert len(fetch_alertmanager("http://am.behind-proxy.example:9093", source="am", token=TOKEN)) == 1
    (request,) = server.requests
    assert request.path.startswith("http://am.behind-proxy.example:9093/api/v2/alerts?active=true")
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("User-Agent") == "suture"
    message = pull_error(fetch_alertmanager, "http://am.direct.invalid:9/", source="am", timeout=2)
    assert "cannot resolve 'am.direct.invalid'" in message  # NO_PROXY: tried directly, not via the proxy
    assert len(server.requests) == 1


# ------------------------------------------------------------------ Prometheus


def test_prometheus_pending_skipped(server: TestHttpServer) -> None:
    """Only firing alerts are returned; pending ones are left out."""
    server.script(PROM_PATH, [respond(json=prometheus_body(PROM_FIRING, PROM_PENDING))])
    (alert,) = fetch_prometheus(server.url, source="prom")
    assert alert.name == "HighRequestLatency"
    assert alert.source == "prom"
    assert server.requests[0].path == PROM_PATH


def test_prometheus_alert_fields(server: TestHttpServer) -> None:
    """Fingerprint is the stable label hash, starts_at is activeAt, labels and annotations are kept."""
    server.script(PROM_PATH, [respond(json=prometheus_body(PROM_FIRING))])
    (alert,) = fetch_prometheus(server.url, source="prom")
    assert alert.fingerprint == label_fingerprint(PROM_FIRING["labels"])
    assert alert.status is AlertStatus.firing
    assert alert.labels == PROM_FIRING["labels"]
    assert alert.annotations == PROM_FIRING["annotations"]
    assert alert.starts_at == datetime(2026, 11, 23, 10, 15, 2, 123456, tzinfo=UTC)
    assert alert.ends_at is None


def test_prometheus_changing_list(server: TestHttpServer) -> None:
    """The second poll returns only the alert still firing, with the same fingerprint as before."""
    other = copy.deepcopy(PROM_FIRING)
    other["labels"]["instance"] = "api-3:8080"
    server.script(
        PROM_PATH,
        [respond(json=prometheus_body(PROM_FIRING, other)), respond(json=prometheus_body(other))],
    )
    first = fetch_prometheus(server.url, source="prom")
    second = fetch_prometheus(server.url, source="prom")
    assert len(first) == 2 and len(second) == 1
    assert second[0].fingerprint == first[1].fingerprint != first[0].fingerprint


def test_prometheus_bearer_token_sent(server: TestHttpServer) -> None:
    """The token goes in Authorization: Bearer."""
    server.script(PROM_PATH, [respond(json=prometheus_body())])
    assert fetch_prometheus(server.url, source="prom", token=TOKEN) == []
    assert server.requests[0].header("Authorization") == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (respond(500, body="upstream connect error"), "HTTP 500"),
        (respond(200, body='{"status": "success", "data": {"alerts": ['), "valid JSON"),
        (
            respond(503, json={"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}),
            "TSDB not ready",
        ),
        (respond(json={"status": "error", "errorType": "internal", "error": "boom"}), "internal: boom"),
        (respond(json={"status": "success", "data": {}}), "data.alerts must be a list, got null"),
        (respond(json=prometheus_body({**PROM_FIRING, "state": None})), "data.alerts.0.state: must be a str"),
    ],
)
def test_prometheus_failures_are_pull_errors(server: TestHttpServer, answer: Any, expected: str) -> None:
    """Non-2xx, invalid JSON, an error status and a wrong shape all fail the poll."""
    server.script(PROM_PATH, [answer])
    assert expected in pull_error(fetch_prometheus, server.url, source="prom", token=TOKEN)


# ---------------------------------------------------------------------- Zabbix


def test_zabbix_json_rpc_requests(server: TestHttpServer) -> None:
    """problem.get, trigger.get and hostinterface.get are POSTed as JSON-RPC with the token as Bearer."""
    script_zabbix(server, [ZBX_LOAD, ZBX_AGENT])
    fetch_zabbix_problems(server.url + ZBX_PATH, token=TOKEN)
    calls = server.requests
    assert [call.method for call in calls] == ["POST"] * 3
    assert all(call.path == ZBX_PATH for call in calls)
    assert all(call.header("Authorization") == f"Bearer {TOKEN}" for call in calls)
    assert all(call.header("Content-Type") == "application/json-rpc" for call in calls)
    bodies = [call.json() for call in calls]
    assert all("auth" not in body and body["jsonrpc"] == "2.0" for body in bodies)
    assert [body["method"] for body in bodies] == ["problem.get", "trigger.get", "hostinterface.get"]
    assert bodies[0]["params"] == {
        "output": "extend",
        "selectTags": "extend",
        "recent": False,
        "sortfield": ["eventid"],
        "sortorder": "DESC",
        "limit": MAX_ALERTS + 1,
    }
    assert bodies[1]["params"]["triggerids"] == ["23011", "23044"]
    assert bodies[1]["params"]["selectHosts"] == ["hostid", "host"]
    assert bodies[1]["params"]["expandDescription"] is True
    assert bodies[2]["params"]["hostids"] == ["10084", "10085"]


def test_zabbix_problem_fields(server: TestHttpServer) -> None:
    """A problem becomes a firing alert: zabbix-<eventid>, trigger name, host, severity, tags, start."""
    script_zabbix(server, [ZBX_LOAD, ZBX_AGENT])
    load, agent = fetch_zabbix_problems(server.url + ZBX_PATH, source="zabbix-prod", token=TOKEN)
    assert load.source == "zabbix-prod"
    assert load.status is AlertStatus.firing
    assert load.fingerprint == "zabbix-4711"
    assert load.name == "Load average is too high (per CPU load over 1.5 for 5m)"
    assert load.labels == {
        "alertname": "Load average is too high (per CPU load over 1.5 for 5m)",
        "host": "web-1",
        "severity": "average",
        "host_ip": "10.0.0.11",  # the agent interface wins over SNMP, as {HOST.IP} does
        "trigger_id": "23011",
        "class": "os",
        "component": "cpu",
        "scope": "performance",
    }
    assert load.annotations == {
        "event_id": "4711",
        "summary": "Load average is too high on web-1 (per CPU load over 1.5 for 5m)",
    }
    assert load.starts_at == datetime(2026, 11, 23, 10, 15, 2, tzinfo=UTC)
    assert load.ends_at is None
    assert agent.fingerprint == "zabbix-4702"
    assert agent.labels["severity"] == "not classified"
    assert agent.labels["host"] == "db-1"


def test_zabbix_changing_list(server: TestHttpServer) -> None:
    """First poll two problems, second poll one: the poll returns one."""
    script_zabbix(server, [ZBX_LOAD, ZBX_AGENT])
    script_zabbix(server, [ZBX_AGENT])
    assert len(fetch_zabbix_problems(server.url + ZBX_PATH, token=TOKEN)) == 2
    (left,) = fetch_zabbix_problems(server.url + ZBX_PATH, token=TOKEN)
    assert left.fingerprint == "zabbix-4702"


def test_zabbix_no_problems_is_one_call(server: TestHttpServer) -> None:
    """With no open problems only problem.get is called and the poll returns nothing."""
    server.script(ZBX_PATH, [rpc([])])
    assert fetch_zabbix_problems(server.url + ZBX_PATH, token=TOKEN) == []
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("tz", "event_time"),
    [("UTC", "2026.11.23 10:15:02"), ("Europe/Berlin", "2026.11.23 11:15:02")],
)
def test_zabbix_poll_matches_webhook(server: TestHttpServer, tz: str, event_time: str) -> None:
    """A polled problem gives exactly the alert the webhook media type gives for the same event."""
    script_zabbix(server, [ZBX_LOAD, ZBX_AGENT])
    polled = fetch_zabbix_problems(server.url + ZBX_PATH, token=TOKEN, timezone=tz)
    webhook_params = {
        "event_id": "4711",
        "event_value": "1",
        "event_name": "Load average is too high on web-1 (per CPU load over 1.5 for 5m)",
        "trigger_name": "Load average is too high (per CPU load over 1.5 for 5m)",
        "event_severity": "Average",
        "host": "web-1",
        "host_ip": "10.0.0.11",
        "trigger_id": "23011",
        "tags": json.dumps(ZBX_LOAD["tags"]),
        "event_time": event_time,
        "recovery_time": "{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}",
    }
    (pushed,) = get_connector("zabbix").parse(webhook_params, SourceConfig(timezone=tz), datetime.now(UTC))
    assert polled[0] == pushed
    agent_params = {
        **webhook_params,
        "event_id": "4702",
        "event_name": "Zabbix agent is not available (for 3m)",
        "trigger_name": "Zabbix agent is not available (for 3m)",
        "event_severity": "Not classified",
        "host": "db-1",
        "host_ip": "10.0.0.21",
        "trigger_id": "23044",
        "tags": json.dumps(ZBX_AGENT["tags"]),
        "event_time": "2026-11-23T09:40:00Z",
    }
    (pushed_agent,) = get_connector("zabbix").parse(agent_params, SourceConfig(), datetime.now(UTC))
    assert polled[1] == pushed_agent


def test_zabbix_missing_trigger_keeps_problem(server: TestHttpServer) -> None:
    """A problem whose trigger trigger.get does not return still comes back, named by the problem."""
    server.script(ZBX_PATH, [rpc([ZBX_LOAD]), rpc([])])
    (alert,) = fetch_zabbix_problems(server.url + ZBX_PATH, token=TOKEN)
    assert alert.fingerprint == "zabbix-4711"
    assert alert.name == ZBX_LOAD["name"]
    assert "host" not in alert.labels and "host_ip" not in alert.labels


def test_zabbix_json_rpc_error_is_pull_error(server: TestHttpServer) -> None:
    """A JSON-RPC error object fails the poll with Zabbix's message and data, and a 6.4+ hint."""
    error = {"code": -32602, "message": "Invalid params.", "data": "Not authorized."}
    server.script(ZBX_PATH, [respond(json={"jsonrpc": "2.0", "error": error, "id": 1})])
    message = pull_error(fetch_zabbix_problems, server.url + ZBX_PATH, token=TOKEN)
    assert "problem.get" in message
    assert "Invalid params. Not authorized. (code -32602)" in message
    assert "Zabbix 6.4" in message


def test_zabbix_error_in_second_call_is_pull_error(server: TestHttpServer) -> None:
    """An error from trigger.get fails the whole poll, naming that method."""
    error = {"code": -32500, "message": "Application error.", "data": "SQL statement execution has failed."}
    server.script(ZBX_PATH, [rpc([ZBX_LOAD]), respond(json={"jsonrpc": "2.0", "error": error, "id": 2})])
    message = pull_error(fetch_zabbix_problems, server.url + ZBX_PATH, token=TOKEN)
    assert "trigger.get" in message and "SQL statement execution has failed." in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (respond(500, body="PHP Fatal error"), "HTTP 500"),
        (respond(200, body="<!DOCTYPE html><html>Zabbix</html>"), "valid JSON"),
        (respond(json=[1, 2]), "must be a JSON-RPC object, got a list"),
        (respond(json={"jsonrpc": "2.0", "id": 1}), "neither result nor error"),
        (rpc({"4711": ZBX_LOAD}), "result must be a list, got an object"),
        (rpc([{**ZBX_LOAD, "clock": "yesterday"}]), "problem 4711: clock must be Unix seconds"),
        (rpc([{**ZBX_LOAD, "severity": "9"}]), "problem 4711: severity must be 0 to 5"),
        (
            rpc([{**ZBX_LOAD, "tags": [{"tag": "", "value": "x"}]}]),
            "problem 4711: tags.0.tag: must be a non-empty",
        ),
        (rpc([{**ZBX_LOAD, "eventid": None}]), "result.0.eventid: must be a string"),
    ],
)
def test_zabbix_failures_are_pull_errors(server: TestHttpServer, answer: Any, expected: str) -> None:
    """Non-2xx, invalid JSON and wrong shapes fail the Zabbix poll with a clear message."""
    server.script(ZBX_PATH, [answer, rpc(ZBX_TRIGGERS), rpc(ZBX_INTERFACES)])
    assert expected in pull_error(fetch_zabbix_problems, server.url + ZBX_PATH, token=TOKEN)


def test_zabbix_requires_token() -> None:
    """Without an API token the Zabbix poll refuses to start."""
    assert "token is required" in pull_error(
        fetch_zabbix_problems, "http://127.0.0.1:9/api_jsonrpc.php", token=""
    )
