"""Pulling from a monitoring API that cannot push: the daemon polls a real loopback server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.support.httpserver import TestHttpServer, respond


def _gettable(fingerprint: str, alertname: str = "ManualOnly", instance: str = "db-1:9100") -> dict[str, Any]:
    """One alert as Alertmanager's /api/v2/alerts returns it."""
    return {
        "labels": {"alertname": alertname, "instance": instance, "job": "node"},
        "annotations": {"summary": "pulled"},
        "startsAt": "2026-11-23T09:00:00.000Z",
        "endsAt": "2026-11-23T12:00:00.000Z",
        "updatedAt": "2026-11-23T09:00:30.000Z",
        "fingerprint": fingerprint,
        "generatorURL": "http://prometheus.local/graph",
        "receivers": [{"name": "suture"}],
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
    }


@pytest.fixture
def alertmanager_api(http_server: TestHttpServer) -> TestHttpServer:
    """The session's loopback HTTP server, reset for this test (tests/conftest.py)."""
    return http_server


def test_polled_alerts_open_incidents_and_vanished_ones_resolve(
    daemon_factory: Any, alertmanager_api: TestHttpServer, tmp_path: Path
) -> None:
    """Two alerts in the API open two incidents; when one disappears from the poll its incident resolves."""
    alertmanager_api.default = respond(200, json=[_gettable("aa01"), _gettable("aa02", instance="db-2:9100")])
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'pull.db'}",
        pull=[{"name": "am-dc1", "kind": "alertmanager", "url": alertmanager_api.url, "interval": "300ms"}],
    )
    opened = wait_for(lambda: len(daemon.cli("incidents", "list", "--status", "open")) == 2)
    assert opened
    incidents = daemon.cli("incidents", "list")
    assert {i["code"] for i in incidents} == {"MAN-001"}
    assert {i["target"] for i in incidents} == {"db-1", "db-2"}  # MAN-001 has no target: instance minus port
    assert all(i["source"] == "am-dc1" for i in incidents)
    first_poll = alertmanager_api.requests[0]
    assert first_poll.path.startswith("/api/v2/alerts")

    alertmanager_api.default = respond(200, json=[_gettable("aa01")])
    wait_for(
        lambda: (
            [i["fingerprint"] for i in daemon.cli("incidents", "list", "--status", "resolved")] == ["aa02"]
        )
    )
    still = daemon.cli("incidents", "list", "--status", "open")
    assert [i["fingerprint"] for i in still] == ["aa01"]
    assert still[0]["occurrences"] == 1  # an unchanged alert polled again changes nothing

    # An API that fails resolves nothing: unreachable is not recovered.
    alertmanager_api.default = respond(500)
    before = len(alertmanager_api.requests)
    wait_for(lambda: len(alertmanager_api.requests) >= before + 2)
    assert [i["fingerprint"] for i in daemon.cli("incidents", "list", "--status", "open")] == ["aa01"]


def test_silenced_alert_is_not_resolved_by_the_poll(
    daemon_factory: Any, alertmanager_api: TestHttpServer, tmp_path: Path
) -> None:
    """An alert that gets silenced leaves the active list but is still present: its incident stays open."""
    everything = "/api/v2/alerts?active=true&silenced=true&inhibited=true"
    alertmanager_api.default = respond(200, json=[_gettable("bb01"), _gettable("bb02", instance="db-2:9100")])
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'silence.db'}",
        pull=[{"name": "am-dc2", "kind": "alertmanager", "url": alertmanager_api.url, "interval": "300ms"}],
    )
    wait_for(lambda: len(daemon.cli("incidents", "list", "--status", "open")) == 2)
    silenced = _gettable("bb02", instance="db-2:9100")
    silenced["status"] = {"state": "suppressed", "silencedBy": ["s-1"], "inhibitedBy": []}
    alertmanager_api.script(everything, [respond(200, json=[_gettable("bb01"), silenced])] * 200)
    alertmanager_api.default = respond(200, json=[_gettable("bb01")])
    before = len(alertmanager_api.requests)
    wait_for(lambda: len(alertmanager_api.requests) >= before + 6)
    still_open = daemon.cli("incidents", "list", "--status", "open")
    assert sorted(i["fingerprint"] for i in still_open) == ["bb01", "bb02"]


def test_zabbix_reconcile_opens_missed_problems_and_resolves_gone_ones(
    daemon_factory: Any, alertmanager_api: TestHttpServer, tmp_path: Path
) -> None:
    """problem.get sees two problems whose webhooks were lost, then one: one incident open, one resolved."""
    from tests.integration.test_pull import ZBX_AGENT, ZBX_INTERFACES, ZBX_LOAD, ZBX_PATH, ZBX_TRIGGERS, rpc

    zabbix = alertmanager_api  # one scriptable loopback server standing in for the Zabbix API
    first_poll = [rpc([ZBX_LOAD, ZBX_AGENT], 1), rpc(ZBX_TRIGGERS, 2), rpc(ZBX_INTERFACES, 3)]
    second_poll = [rpc([ZBX_AGENT], 1), rpc(ZBX_TRIGGERS, 2), rpc(ZBX_INTERFACES, 3)]
    zabbix.script(ZBX_PATH, first_poll + second_poll)  # afterwards polls fail, which changes nothing
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'zabbix.db'}",
        env={"ZABBIX_API_TOKEN": "api-token"},
        sources={
            "zabbix": {"url": zabbix.url + ZBX_PATH, "api_token_env": "ZABBIX_API_TOKEN", "interval": "300ms"}
        },
    )
    wait_for(lambda: len(zabbix.requests) >= 7, timeout=15)
    incidents = {i["fingerprint"]: i for i in daemon.cli("incidents", "list")}
    assert incidents["zabbix-4711"]["status"] == "resolved"
    assert incidents["zabbix-4702"]["status"] == "open"
    assert incidents["zabbix-4702"]["source"] == "zabbix"
    assert all(r.header("Authorization") == "Bearer api-token" for r in zabbix.requests)
