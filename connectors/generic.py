"""Generic JSON alerts, for scripts and systems without their own connector.

    {"alerts": [{"name": "BackupFailed", "status": "firing", "labels": {"host": "db1"},
                 "annotations": {"summary": "..."}, "fingerprint": "optional",
                 "starts_at": "2026-11-23T10:15:02Z", "ends_at": null}]}

`startsAt`/`endsAt`/`generatorURL` are accepted as well as `starts_at`/`ends_at`/
`generator_url`. A time without an offset is UTC. Label and annotation values that are
numbers or booleans become strings (`3`, `0.5`, `true`); null, lists and objects are
invalid. The `alertname` label is set to `name` unless the sender set it. Without a
fingerprint, one is computed from the name and the labels.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, BaseModel, Field, StringConstraints

from connectors.base import (
    LooseStrMap,
    Text,
    Timestamp,
    VendorModel,
    blank_to_none,
    label_fingerprint,
    validate_body,
)
from engine.config import SourceConfig
from engine.models import Alert, AlertStatus


class GenericAlert(VendorModel):
    name: Annotated[Text, StringConstraints(min_length=1)]
    status: AlertStatus
    labels: LooseStrMap = Field(default_factory=dict)
    annotations: LooseStrMap = Field(default_factory=dict)
    fingerprint: Text | None = Field(default=None, description="computed from name and labels when absent")
    starts_at: Timestamp = Field(default=None, validation_alias=AliasChoices("starts_at", "startsAt"))
    ends_at: Timestamp = Field(default=None, validation_alias=AliasChoices("ends_at", "endsAt"))
    generator_url: Text | None = Field(
        default=None, validation_alias=AliasChoices("generator_url", "generatorURL")
    )


class GenericBody(VendorModel):
    """One or more alerts in Suture's own simple format."""

    alerts: list[GenericAlert] = Field(min_length=1)


class GenericConnector:
    source: ClassVar[str] = "generic"
    body_model: ClassVar[type[BaseModel]] = GenericBody

    def parse(self, payload: Any, settings: SourceConfig, received_at: datetime) -> list[Alert]:
        body = validate_body(GenericBody, payload)
        return [self._alert(alert) for alert in body.alerts]

    def _alert(self, alert: GenericAlert) -> Alert:
        labels = {"alertname": alert.name, **alert.labels}
        return Alert(
            source=self.source,
            name=alert.name,
            fingerprint=alert.fingerprint or label_fingerprint(labels, alert.name),
            status=alert.status,
            labels=labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            generator_url=blank_to_none(alert.generator_url),
        )
