"""Prometheus Alertmanager webhook, payload version 4.

Every alert of the group becomes one Alert; the group fields (groupLabels, commonLabels,
...) are validated but not copied, since each alert carries its full label set. Only
the per-alert `status` counts: the group `status` is "firing" while any alert fires.
A fingerprint sent with the alert is used as is; only when absent is one computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from connectors.base import StrMap, Text, Timestamp, VendorModel, validate_body, vendor_alert
from engine.config import SourceConfig
from engine.models import Alert, AlertStatus


class AlertmanagerAlert(VendorModel):
    status: AlertStatus
    labels: StrMap = Field(default_factory=dict)
    annotations: StrMap = Field(default_factory=dict)
    starts_at: Timestamp = Field(default=None, alias="startsAt")
    ends_at: Timestamp = Field(
        default=None, alias="endsAt", description="0001-01-01T00:00:00Z (Go's zero time) while firing"
    )
    generator_url: Text | None = Field(default=None, alias="generatorURL")
    fingerprint: Text | None = Field(default=None, description="computed from the labels when absent")


class GroupFields(VendorModel):
    """The group envelope Alertmanager and Grafana share around their alerts."""

    receiver: Text | None = None
    status: AlertStatus | None = None
    group_labels: StrMap = Field(default_factory=dict, alias="groupLabels")
    common_labels: StrMap = Field(default_factory=dict, alias="commonLabels")
    common_annotations: StrMap = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text | None = Field(default=None, alias="externalURL")
    group_key: Text | None = Field(default=None, alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")


class AlertmanagerBody(GroupFields):
    """The body Alertmanager POSTs to a `webhook_configs` receiver."""

    version: Literal["4"] = Field(description="webhook payload version; only 4 is understood")
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


def group_alerts(source: str, alerts: Iterable[AlertmanagerAlert]) -> list[Alert]:
    """Alertmanager-shaped alerts (Alertmanager, Grafana) to Alerts."""
    return [
        vendor_alert(
            source,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            generator_url=alert.generator_url,
            fingerprint=alert.fingerprint,
        )
        for alert in alerts
    ]


class AlertmanagerConnector:
    source: ClassVar[str] = "alertmanager"
    body_model: ClassVar[type[BaseModel]] = AlertmanagerBody

    def parse(self, payload: Any, settings: SourceConfig, received_at: datetime) -> list[Alert]:
        return group_alerts(self.source, validate_body(AlertmanagerBody, payload).alerts)
