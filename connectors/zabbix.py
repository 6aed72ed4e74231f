"""Zabbix, through the webhook media type in connectors/ZABBIX.md.

Zabbix has no payload of its own: the media type sends its parameters, each a string
holding an expanded macro. Mapping:

- fingerprint `zabbix-<event_id>`. In a recovery or update operation `{EVENT.ID}` is
  still the problem event's id, so problem, updates and recovery share the fingerprint,
  while two hosts with the same trigger name never do.
- status: `event_value` 1 (problem) is firing, 0 (recovery) is resolved.
- name and `alertname`: `trigger_name`, else `event_name`, else "unnamed".
- labels: alertname, host, severity (the Zabbix severity name, lower-cased), host_ip,
  trigger_id, then every tag of `tags` ({EVENT.TAGSJSON}). A tag never overrides one
  of those five; a tag given twice with different values keeps them joined by ",".
- annotations: `summary` (event_name), `event_id`, and every other string parameter the
  media type was given beyond the known ones (e.g. `event_opdata`), as sent.
- times: `event_time` is `{EVENT.DATE} {EVENT.TIME}`, which Zabbix expands to the time
  the PROBLEM started even in recovery operations, so it is starts_at for both. The
  recovery time is the optional `recovery_time` ({EVENT.RECOVERY.DATE}
  {EVENT.RECOVERY.TIME}): ends_at of a recovery, or the time we received it if absent.
  Zabbix writes local time without a zone: `sources.zabbix.timezone` says which.

A value Zabbix left unexpanded (`{HOST.IP}`, `{$USER.MACRO}`) or could not resolve
(`*UNKNOWN*`), and an empty one, counts as absent.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, Field

from connectors.base import (
    NOT_UNICODE,
    UNNAMED,
    Text,
    VendorModel,
    as_utc,
    encodable,
    json_type,
    parse_time,
    validate_body,
)
from engine.config import SourceConfig
from engine.errors import ConfigError, InvalidPayload
from engine.models import Alert, AlertStatus

_MACRO = re.compile(r"^\{\$?[A-Z0-9._]+\}$")
_UNKNOWN = "*UNKNOWN*"
_ZABBIX_DATE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})(?=[ T])", re.ASCII)
LOCAL_TIME_EXAMPLE = "2026.11.23 10:15:02"

#: Parameters that may carry secrets or transport settings: never copied into annotations.
_NEVER_COPIED = frozenset({"token", "url", "http_proxy"})
BUILTIN_LABELS = ("alertname", "host", "severity", "host_ip", "trigger_id")

#: Zabbix's default severity names (the `severity` label) as Suture's severities: what an alert no
#: code matches is given, so a Disaster nobody coded is still critical, with critical deadlines.
SUTURE_SEVERITY = {
    "disaster": "critical",
    "high": "high",
    "average": "medium",
    "warning": "low",
    "information": "low",
    "not classified": "medium",
}


def _int_to_str(value: Any) -> Any:
    # Hand-made media types sometimes send ids as JSON numbers; accept them.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


IdText = Annotated[Text, BeforeValidator(_int_to_str)]


class ZabbixBody(VendorModel):
    """The parameters Suture's Zabbix media type sends (all strings, as Zabbix expands them)."""

    event_id: IdText = Field(description="{EVENT.ID}")
    event_value: IdText = Field(description="{EVENT.VALUE}: 1 problem, 0 recovery")
    event_name: Text | None = Field(default=None, description="{EVENT.NAME}")
    trigger_name: Text | None = Field(default=None, description="{TRIGGER.NAME}")
    event_severity: Text | None = Field(default=None, description="{EVENT.SEVERITY}")
    host: Text | None = Field(default=None, description="{HOST.HOST}")
    host_ip: Text | None = Field(default=None, description="{HOST.IP}")
    trigger_id: IdText | None = Field(default=None, description="{TRIGGER.ID}")
    tags: Text | None = Field(default=None, description="{EVENT.TAGSJSON}: a JSON list inside a string")
    event_time: Text | None = Field(
        default=None, description="{EVENT.DATE} {EVENT.TIME}: when the problem started, local time"
    )
    recovery_time: Text | None = Field(
        default=None, description="{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}, local time"
    )


def present(value: str | None) -> str | None:
    """The value, or None when it is empty or only unexpanded macros and *UNKNOWN*s.

    Time parameters join two macros (`{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}`), so
    every space-separated word is checked.
    """
    if value is None:
        return None
    value = value.strip()
    if all(word == _UNKNOWN or _MACRO.match(word) for word in value.split()):
        return None
    return value


@lru_cache(maxsize=32)
def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"sources.zabbix.timezone: unknown time zone {name!r}") from None


def zabbix_time(field: str, value: str | None, zone: tzinfo) -> datetime | None:
    """`2026.11.23 10:15:02` or `2026-11-23 10:15:02` in `zone` (or ISO 8601 with an offset), as UTC."""
    value = present(value)
    if value is None:
        return None
    try:
        return parse_time(_ZABBIX_DATE.sub(r"\1-\2-\3", value), zone)
    except ValueError:
        raise InvalidPayload(field, f"must be a time like {LOCAL_TIME_EXAMPLE}, got {value[:64]!r}") from None


_TAG_EXAMPLE = '{"tag": "scope", "value": "availability"}'


def tag_labels(text: str | None) -> dict[str, str]:
    """{EVENT.TAGSJSON} (`[{"tag": "scope", "value": "availability"}]`) to a dict."""
    text = present(text)
    if text is None:
        return {}
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidPayload("tags", f"must be JSON text of a list like [{_TAG_EXAMPLE}]") from None
    if not isinstance(raw, list):
        raise InvalidPayload("tags", f"must be JSON text of a list of tags, got {json_type(raw)}")
    values: dict[str, list[str]] = {}
    for index, item in enumerate(raw):
        where = f"tags.{index}"
        if not isinstance(item, dict):
            raise InvalidPayload(where, f"must be an object like {_TAG_EXAMPLE}, got {json_type(item)}")
        tag, value = item.get("tag"), item.get("value", "")
        if not isinstance(tag, str) or not tag:
            raise InvalidPayload(f"{where}.tag", "must be a non-empty string")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise InvalidPayload(f"{where}.value", "must be a string")
        for part, content in (("tag", tag), ("value", value)):
            if not encodable(content):
                raise InvalidPayload(f"{where}.{part}", NOT_UNICODE)
        seen = values.setdefault(tag, [])
        if value not in seen:
            seen.append(value)
    return {tag: ",".join(seen) for tag, seen in values.items()}


class ZabbixConnector:
    source: ClassVar[str] = "zabbix"
    body_model: ClassVar[type[BaseModel]] = ZabbixBody

    def parse(self, payload: Any, settings: SourceConfig, received_at: datetime) -> list[Alert]:
        body = validate_body(ZabbixBody, payload)
        event_id = present(body.event_id)
        if event_id is None:
            raise InvalidPayload("event_id", "is required: the Zabbix {EVENT.ID} of the problem")
        event_value = present(body.event_value)
        if event_value not in ("0", "1"):
            raise InvalidPayload("event_value", "must be '1' (problem) or '0' (recovery)")
        firing = event_value == "1"

        zone = _zone(settings.timezone)
        starts_at = zabbix_time("event_time", body.event_time, zone)
        recovered_at = zabbix_time("recovery_time", body.recovery_time, zone)
        tags = tag_labels(body.tags)

        name = present(body.trigger_name) or present(body.event_name) or UNNAMED
        severity = present(body.event_severity)
        builtin = {
            "alertname": name,
            "host": present(body.host),
            "severity": severity.lower() if severity else None,
            "host_ip": present(body.host_ip),
            "trigger_id": present(body.trigger_id),
        }
        labels = {key: value for key, value in builtin.items() if value is not None}
        labels.update({tag: value for tag, value in tags.items() if tag not in BUILTIN_LABELS})

        annotations = {"event_id": event_id}
        if summary := present(body.event_name):
            annotations["summary"] = summary
        for key, value in (body.model_extra or {}).items():
            if key not in _NEVER_COPIED and isinstance(value, str) and encodable(key + value):
                if (kept := present(value)) is not None:
                    annotations.setdefault(key, kept)

        return [
            Alert(
                source=self.source,
                name=name,
                fingerprint=f"zabbix-{event_id}",
                status=AlertStatus.firing if firing else AlertStatus.resolved,
                labels=labels,
                annotations=annotations,
                starts_at=starts_at,
                ends_at=None if firing else (recovered_at or as_utc(received_at)),
            )
        ]
