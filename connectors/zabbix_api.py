"""Zabbix reconcile poll: the problems open in Zabbix now, as the alerts their webhooks make.

Zabbix retries a failed webhook only a few times, so a short outage loses problems. This
poll asks the Zabbix API (JSON-RPC `problem.get`, then `trigger.get` for trigger name and
host and `hostinterface.get` for the host IP) and turns each problem into the parameters
Suture's webhook media type would have sent, parsed by `connectors.zabbix`: poll and
webhook give the same fingerprint (`zabbix-<eventid>`), name, labels and annotations.
Needs Zabbix 6.4 or later: it authenticates with an API token in `Authorization: Bearer`,
never with the old `auth` field. Bounds and errors as in `connectors.pull`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, TypeAdapter

from connectors.base import Text, VendorModel, json_type
from connectors.pull import (
    MAX_ALERTS,
    SNIPPET,
    PullError,
    Token,
    check_timeout,
    check_token,
    check_url,
    count,
    request_json,
    shape,
)
from connectors.zabbix import IdText, ZabbixConnector
from engine.config import SourceConfig
from engine.errors import InvalidPayload
from engine.models import Alert

__all__ = ["fetch_zabbix_problems"]

# ---------------------------------------------------------------------- Zabbix

#: What Zabbix expands {EVENT.SEVERITY} to, by severity number (the default names).
ZABBIX_SEVERITY_NAMES = {
    "0": "Not classified",
    "1": "Information",
    "2": "Warning",
    "3": "Average",
    "4": "High",
    "5": "Disaster",
}
#: {HOST.IP} is the host's main interface of the first of these types: agent, SNMP, JMX, IPMI.
_INTERFACE_PRIORITY = ("1", "2", "4", "3")


class _Problem(VendorModel):
    """One problem of `problem.get` (source 0, object 0: a trigger's problem event)."""

    eventid: IdText
    objectid: IdText
    clock: IdText
    name: Text = ""
    severity: IdText = "0"
    tags: list[Any] = Field(default_factory=list)


class _Host(VendorModel):
    hostid: IdText = ""
    host: Text = ""


class _Trigger(VendorModel):
    triggerid: IdText
    description: Text = ""
    hosts: list[_Host] = Field(default_factory=list)


class _Interface(VendorModel):
    hostid: IdText
    ip: Text = ""
    type: IdText = ""
    main: IdText = ""


_PROBLEMS = TypeAdapter(list[_Problem])
_TRIGGERS = TypeAdapter(list[_Trigger])
_INTERFACES = TypeAdapter(list[_Interface])
_ZABBIX = ZabbixConnector()
_WEBHOOK_SETTINGS = SourceConfig()


class _JsonRpc:
    """Zabbix API calls, each bounded like any other request."""

    def __init__(self, url: str, *, what: str, token: str, timeout: float) -> None:
        self.url, self.what, self.token, self.timeout = url, what, token, timeout
        self._next_id = 0

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self._next_id += 1
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._next_id}
        answer = request_json(
            "POST",
            self.url,
            what=f"{self.what} {method}",
            token=self.token,
            timeout=self.timeout,
            body=json.dumps(request).encode("utf-8"),
            headers={"Content-Type": "application/json-rpc"},
        )
        if not isinstance(answer, dict):
            raise PullError(
                f"{self.what} {method}: unexpected answer: must be a JSON-RPC object, got {json_type(answer)}"
            )
        if "error" in answer:
            raise PullError(f"{self.what} {method}: Zabbix API error: {_rpc_error(answer['error'])}")
        if "result" not in answer:
            raise PullError(f"{self.what} {method}: unexpected answer: neither result nor error")
        return answer["result"]


def _rpc_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)[:SNIPPET]
    message = " ".join(str(error.get(key, "")).strip() for key in ("message", "data")).strip()
    text = f"{message[: 2 * SNIPPET] or 'no message'} (code {error.get('code')})"
    lowered = message.lower()
    if any(word in lowered for word in ("not authorized", "session terminated", "re-login", "api token")):
        text += "; Suture sends an API token as Authorization: Bearer, which needs Zabbix 6.4 or later"
    return text


def fetch_zabbix_problems(
    url: str,
    *,
    source: str = "zabbix",
    token: Token,
    timezone: str = "UTC",
    timeout: float = 10.0,
) -> list[Alert]:
    """The problems open in Zabbix now, each as the firing alert its webhook would have made.

    `url` is the API endpoint (`https://zabbix.example.com/api_jsonrpc.php`); `token` a
    Zabbix 6.4+ API token (Users → API tokens) of a user with read access to the host
    groups concerned. `timezone` is accepted for symmetry with the webhook source but
    changes nothing: problem.get gives `clock` in Unix seconds.

    Mapping, as the webhook media type would send it: fingerprint `zabbix-<eventid>`;
    `trigger_name` the trigger's description with its macros expanded; `event_name` the
    problem name; `event_severity` the default name of the severity number; `host` the
    trigger's (first) host; `host_ip` that host's main interface, agent before SNMP, JMX
    and IPMI; `trigger_id` the problem's objectid; `tags` its tags; `event_time` its clock.
    """
    what = f"Zabbix poll {source!r}"
    endpoint = check_url(url, what)
    checked = check_token(token, what)
    if checked is None:
        raise PullError(f"{what}: a Zabbix API token is required")
    rpc = _JsonRpc(endpoint, what=what, token=checked, timeout=check_timeout(timeout, what))
    return _zabbix_poll(rpc, source)


def _zabbix_poll(rpc: _JsonRpc, source: str) -> list[Alert]:
    what = rpc.what
    raw = rpc.call(
        "problem.get",
        {
            "output": "extend",
            "selectTags": "extend",
            "recent": False,
            "sortfield": ["eventid"],
            "sortorder": "DESC",
            "limit": MAX_ALERTS + 1,
        },
    )
    problems = shape(_PROBLEMS, count(raw, f"{what} problem.get", "result"), f"{what} problem.get", "result")
    if not problems:
        return []

    trigger_ids = sorted({problem.objectid for problem in problems})
    raw = rpc.call(
        "trigger.get",
        {
            "triggerids": trigger_ids,
            "output": ["triggerid", "description"],
            "selectHosts": ["hostid", "host"],
            "expandDescription": True,
        },
    )
    triggers = {
        trigger.triggerid: trigger
        for trigger in shape(_TRIGGERS, _list(raw, f"{what} trigger.get"), f"{what} trigger.get", "result")
    }

    host_ids = sorted({trigger.hosts[0].hostid for trigger in triggers.values() if trigger.hosts} - {""})
    addresses: dict[str, str] = {}
    if host_ids:
        raw = rpc.call(
            "hostinterface.get",
            {"hostids": host_ids, "output": ["hostid", "ip", "type", "main"], "filter": {"main": "1"}},
        )
        interfaces = shape(
            _INTERFACES, _list(raw, f"{what} hostinterface.get"), f"{what} hostinterface.get", "result"
        )
        addresses = _main_addresses(interfaces)

    received_at = datetime.now(UTC)
    alerts = []
    for problem in problems:
        trigger = triggers.get(problem.objectid)
        params = _webhook_params(problem, trigger, addresses, what)
        try:
            (alert,) = _ZABBIX.parse(params, _WEBHOOK_SETTINGS, received_at)
        except InvalidPayload as exc:
            raise PullError(f"{what}: problem {problem.eventid}: {exc.field}: {exc.message}") from None
        alerts.append(alert if alert.source == source else alert.model_copy(update={"source": source}))
    return alerts


def _list(raw: Any, what: str) -> list[Any]:
    if not isinstance(raw, list):
        raise PullError(f"{what}: unexpected answer: result must be a list, got {json_type(raw)}")
    return raw


def _main_addresses(interfaces: Iterable[_Interface]) -> dict[str, str]:
    """hostid to the IP {HOST.IP} resolves to: the main interface of the highest-priority type."""
    best: dict[str, tuple[int, str]] = {}
    for interface in interfaces:
        if interface.main != "1" or interface.type not in _INTERFACE_PRIORITY:
            continue
        rank = _INTERFACE_PRIORITY.index(interface.type)
        if interface.hostid not in best or rank < best[interface.hostid][0]:
            best[interface.hostid] = (rank, interface.ip)
    return {hostid: ip for hostid, (_, ip) in best.items()}


def _webhook_params(
    problem: _Problem, trigger: _Trigger | None, addresses: Mapping[str, str], what: str
) -> dict[str, Any]:
    """The body Suture's Zabbix media type would have POSTed for this problem."""
    where = f"{what}: problem {problem.eventid}"
    if not problem.clock.isdigit():
        raise PullError(f"{where}: clock must be Unix seconds, got {problem.clock[:40]!r}")
    try:
        started = datetime.fromtimestamp(int(problem.clock), UTC)
    except (OverflowError, OSError, ValueError):
        raise PullError(f"{where}: clock {problem.clock[:40]!r} is out of range") from None
    severity = ZABBIX_SEVERITY_NAMES.get(problem.severity)
    if severity is None:
        raise PullError(f"{where}: severity must be 0 to 5, got {problem.severity[:40]!r}")
    params: dict[str, Any] = {
        "event_id": problem.eventid,
        "event_value": "1",
        "event_name": problem.name,
        "event_severity": severity,
        "trigger_id": problem.objectid,
        "tags": json.dumps(problem.tags),
        "event_time": started.isoformat(),
    }
    if trigger is not None:
        params["trigger_name"] = trigger.description
        if trigger.hosts:
            host = trigger.hosts[0]
            params["host"] = host.host
            if host.hostid in addresses:
                params["host_ip"] = addresses[host.hostid]
    return params
