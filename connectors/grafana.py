"""Grafana alerting webhook contact point (payload version 1).

Grafana's notifier sends Alertmanager's webhook body extended with a few fields, so the
envelope and the mapping are Alertmanager's. The alert `fingerprint` is opaque and used
as sent: Grafana computes it before it strips hidden (`__`) labels, so recomputing it
from the labels we receive would give a different value; only an absent one is computed.
Labels and annotations must be strings, as Grafana always sends them. `values`,
`valueString` and the extra URLs (silence, dashboard, panel, image) are validated and
kept in the stored event, not copied into the alert; `generatorURL` is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from connectors.alertmanager import AlertmanagerAlert, GroupFields, group_alerts
from connectors.base import Text, validate_body
from engine.config import SourceConfig
from engine.models import Alert


class GrafanaAlert(AlertmanagerAlert):
    values: dict[Text, Any] | None = Field(default=None, description="refId -> value of the query")
    value_string: Text | None = Field(default=None, alias="valueString")
    silence_url: Text | None = Field(default=None, alias="silenceURL")
    dashboard_url: Text | None = Field(default=None, alias="dashboardURL")
    panel_url: Text | None = Field(default=None, alias="panelURL")
    image_url: Text | None = Field(default=None, alias="imageURL")


class GrafanaBody(GroupFields):
    """The body a Grafana webhook contact point POSTs."""

    version: Literal["1"] = Field(description="webhook payload version; only 1 is understood")
    alerts: list[GrafanaAlert] = Field(min_length=1)
    org_id: int | None = Field(default=None, alias="orgId")
    title: Text | None = None
    state: Text | None = None
    message: Text | None = None


class GrafanaConnector:
    source: ClassVar[str] = "grafana"
    body_model: ClassVar[type[BaseModel]] = GrafanaBody

    def parse(self, payload: Any, settings: SourceConfig, received_at: datetime) -> list[Alert]:
        return group_alerts(self.source, validate_body(GrafanaBody, payload).alerts)
