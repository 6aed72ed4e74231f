"""Inbound monitoring adapters: vendor webhook bodies in, `engine.models.Alert`s out.

Adding a source is one module with a class that follows `connectors.base.Connector`
and one line in `CONNECTORS`.
"""

from __future__ import annotations

from connectors.alertmanager import AlertmanagerConnector
from connectors.base import Connector
from connectors.generic import GenericConnector
from connectors.grafana import GrafanaConnector
from connectors.zabbix import ZabbixConnector

CONNECTORS: dict[str, Connector] = {
    connector.source: connector
    for connector in (AlertmanagerConnector(), GrafanaConnector(), ZabbixConnector(), GenericConnector())
}


def get_connector(source: str) -> Connector:
    """The connector registered for `source`; KeyError if there is none."""
    return CONNECTORS[source]


__all__ = ["CONNECTORS", "Connector", "get_connector"]
