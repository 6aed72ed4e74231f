"""Inbound connectors: vendor bodies as they are really sent, the odd ones, and the broken ones."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import CONNECTORS, get_connector
from connectors.base import label_fingerprint
from connectors.signatures import bearer_token_ok, sign_hmac_sha256, verify_hmac_sha256
from engine.config import SourceConfig, load_config
from engine.errors import ConfigError, InvalidPayload
from engine.models import Alert, AlertStatus

RECEIVED = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
DEFAULTS = SourceConfig()


def parse(source: str, payload: Any, config: SourceConfig = DEFAULTS) -> list[Alert]:
    return get_connector(source).parse(payload, config, RECEIVED)


def invalid(source: str, payload: Any, config: SourceConfig = DEFAULTS) -> InvalidPayload:
    with pytest.raises(InvalidPayload) as caught:
        parse(source, payload, config)
    return caught.value


# ---------------------------------------------------------------- sample bodies

AM_FIRING: dict[str, Any] = {
    "receiver": "suture",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "NodeFilesystemAlmostOutOfSpace",
                "device": "/dev/sda1",
                "fstype": "ext4",
                "instance": "web-1:9100",
                "job": "node",
                "mountpoint": "/",
                "severity": "warning",
            },
            "annotations": {
                "description": "Filesystem on /dev/sda1 at web-1:9100 has only 4.2% available space left.",
                "summary": "Filesystem has less than 5% space left.",
                "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/node/nodefilesystemalmostoutofspace",
            },
            "startsAt": "2026-11-23T10:15:02.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes&g0.tab=1",
            "fingerprint": "a1b2c3d4e5f60718",
        },
        {
            "status": "firing",
            "labels": {
                "alertname": "NodeFilesystemAlmostOutOfSpace",
                "device": "/dev/sda1",
                "fstype": "ext4",
                "instance": "web-2:9100",
                "job": "node",
                "mountpoint": "/",
                "severity": "warning",
            },
            "annotations": {"summary": "Filesystem has less than 5% space left."},
            "startsAt": "2026-11-23T10:16:32.5+01:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes&g0.tab=1",
            "fingerprint": "0f1e2d3c4b5a6978",
        },
    ],
    "groupLabels": {"alertname": "NodeFilesystemAlmostOutOfSpace"},
    "commonLabels": {
        "alertname": "NodeFilesystemAlmostOutOfSpace",
        "device": "/dev/sda1",
        "fstype": "ext4",
        "job": "node",
        "mountpoint": "/",
        "severity": "warning",
    },
    "commonAnnotations": {"summary": "Filesystem has less than 5% space left."},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}/{severity=~"warning|critical"}:{alertname="NodeFilesystemAlmostOutOfSpace"}',
    "truncatedAlerts": 0,
}

AM_RESOLVED: dict[str, Any] = {
    "receiver": "suture",
    "status": "resolved",
    "alerts": [
        {
            "status": "resolved",
            "labels": {"alertname": "InstanceDown", "instance": "db-1:9100", "job": "node"},
            "annotations": {"summary": "db-1:9100 is down"},
            "startsAt": "2026-11-23T09:00:00Z",
            "endsAt": "2026-11-23T09:42:10.5Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
            "fingerprint": "ffee00112233aabb",
        }
    ],
    "groupLabels": {"alertname": "InstanceDown"},
    "commonLabels": {"alertname": "InstanceDown", "instance": "db-1:9100", "job": "node"},
    "commonAnnotations": {"summary": "db-1:9100 is down"},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}:{alertname="InstanceDown"}',
    "truncatedAlerts": 0,
}

GRAFANA: dict[str, Any] = {
    "receiver": "suture",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://runbooks.example/1234",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2026-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.example/alerting/grafana/1afz29v7z/view",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://grafana.example/alerting/silence/new?matcher=alertname%3DHigh+memory+usage",
            "dashboardURL": "https://grafana.example/d/abc",
            "panelURL": "https://grafana.example/d/abc?viewPanel=2",
            "imageURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
            "valueString": "[ var='B' labels={zone=us-1} value=44.2 ], [ var='C' value=1 ]",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"},
            "annotations": {},
            "startsAt": "2026-10-12T09:40:00+02:00",
            "endsAt": "2026-10-12T09:56:03+02:00",
            "generatorURL": "https://grafana.example/alerting/grafana/d1rdpdv7k/view",
            "fingerprint": "bc97ff14869b13e3",
            "silenceURL": "https://grafana.example/alerting/silence/new",
            "dashboardURL": "",
            "panelURL": "",
            "values": None,
            "valueString": "",
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://grafana.example/",
    "version": "1",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "title": "[FIRING:1, RESOLVED:1]  (blue)",
    "state": "alerting",
    "message": "**Firing**\n\nValue: B=44.2\nLabels:\n - alertname = High memory usage\n",
}


def zabbix_problem(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "4711",
        "event_value": "1",
        "event_name": "Load average is too high on web-1 (per CPU load over 1.5 for 5m)",
        "trigger_name": "Load average is too high (per CPU load over 1.5 for 5m)",
        "event_severity": "Average",
        "host": "web-1",
        "host_ip": "10.0.0.11",
        "trigger_id": "23011",
        "tags": json.dumps(
            [
                {"tag": "class", "value": "os"},
                {"tag": "component", "value": "cpu"},
                {"tag": "scope", "value": "performance"},
            ]
        ),
        "event_time": "2026.11.23 10:15:02",
        "recovery_time": "{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}",
    }
    body.update(overrides)
    return body


def zabbix_recovery(**overrides: Any) -> dict[str, Any]:
    return zabbix_problem(event_value="0", recovery_time="2026.11.23 10:45:30", **overrides)


def generic_body(**alert: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "BackupFailed", "status": "firing", "labels": {"host": "db-1"}}
    base.update(alert)
    return {"alerts": [base]}


# ---------------------------------------------------------------------- registry


def test_registry_names_every_source() -> None:
    """The four sources of the HTTP API are registered under their path names."""
    assert set(CONNECTORS) == {"alertmanager", "grafana", "zabbix", "generic"}
    for name, connector in CONNECTORS.items():
        assert connector.source == name
        assert get_connector(name) is connector


def test_unknown_source_is_a_key_error() -> None:
    """Asking for a source nobody registered raises KeyError."""
    with pytest.raises(KeyError):
        get_connector("nagios")


def test_body_models_give_openapi_schemas() -> None:
    """Every body model renders a JSON schema for /openapi.json."""
    for connector in CONNECTORS.values():
        schema = connector.body_model.model_json_schema()
        json.dumps(schema)
        assert schema["type"] == "object"


# ------------------------------------------------------------------ alertmanager


def test_alertmanager_firing_group_gives_one_alert_per_member() -> None:
    """A firing group of two alerts gives two firing alerts with their own labels and fingerprints."""
    alerts = parse("alertmanager", AM_FIRING)
    assert [alert.labels["instance"] for alert in alerts] == ["web-1:9100", "web-2:9100"]
    first, second = alerts
    assert first.source == "alertmanager"
    assert first.name == "NodeFilesystemAlmostOutOfSpace"
    assert first.status is AlertStatus.firing
    assert first.fingerprint == "a1b2c3d4e5f60718"
    assert second.fingerprint == "0f1e2d3c4b5a6978"
    assert first.annotations["summary"] == "Filesystem has less than 5% space left."
    assert first.generator_url == AM_FIRING["alerts"][0]["generatorURL"]
    assert first.ends_at is None and second.ends_at is None


def test_alertmanager_times_become_aware_utc() -> None:
    """Nanosecond fractions and offsets are read; the result is timezone-aware UTC."""
    first, second = parse("alertmanager", AM_FIRING)
    assert first.starts_at == datetime(2026, 11, 23, 10, 15, 2, 123456, tzinfo=UTC)
    assert second.starts_at == datetime(2026, 11, 23, 9, 16, 32, 500000, tzinfo=UTC)
    assert second.starts_at is not None and second.starts_at.utcoffset() == timedelta(0)


def test_alertmanager_resolved_keeps_its_end() -> None:
    """A resolved alert carries its endsAt and the same fingerprint as when it fired."""
    (alert,) = parse("alertmanager", AM_RESOLVED)
    assert alert.status is AlertStatus.resolved
    assert alert.fingerprint == "ffee00112233aabb"
    assert alert.starts_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert alert.ends_at == datetime(2026, 11, 23, 9, 42, 10, 500000, tzinfo=UTC)


def test_alertmanager_mixed_group_uses_each_alerts_own_status() -> None:
    """In a group whose status is firing, a member that resolved is resolved."""
    body = copy.deepcopy(AM_FIRING)
    body["alerts"][1]["status"] = "resolved"
    body["alerts"][1]["endsAt"] = "2026-11-23T10:30:00Z"
    firing, resolved = parse("alertmanager", body)
    assert firing.status is AlertStatus.firing
    assert resolved.status is AlertStatus.resolved
    assert resolved.ends_at == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)


def test_alertmanager_missing_fingerprint_is_computed_from_labels() -> None:
    """Without a fingerprint, sha256 of the sorted labels (16 hex) is used, whatever the order."""
    body = copy.deepcopy(AM_RESOLVED)
    del body["alerts"][0]["fingerprint"]
    (alert,) = parse("alertmanager", body)
    labels = body["alerts"][0]["labels"]
    canonical = json.dumps([sorted(labels.items())], ensure_ascii=False, separators=(",", ":"))
    assert alert.fingerprint == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    body["alerts"][0]["labels"] = dict(reversed(list(labels.items())))
    body["alerts"][0]["fingerprint"] = ""
    (again,) = parse("alertmanager", body)
    assert again.fingerprint == alert.fingerprint


def test_alertmanager_tolerates_fields_it_does_not_know() -> None:
    """Vendors add fields: unknown keys at any level are ignored."""
    body = copy.deepcopy(AM_RESOLVED)
    body["newTopLevelThing"] = {"nested": [1, 2]}
    body["alerts"][0]["someFutureField"] = None
    assert len(parse("alertmanager", body)) == 1


def test_alertmanager_without_alertname_is_unnamed() -> None:
    """An alert without an alertname label is called "unnamed"."""
    body = copy.deepcopy(AM_RESOLVED)
    del body["alerts"][0]["labels"]["alertname"]
    (alert,) = parse("alertmanager", body)
    assert alert.name == "unnamed"


def test_alertmanager_only_version_4() -> None:
    """Another webhook version, or a Grafana body, is refused on the version field."""
    body = copy.deepcopy(AM_RESOLVED)
    body["version"] = "3"
    error = invalid("alertmanager", body)
    assert (error.field, error.message) == ("version", "must be '4'")
    assert invalid("alertmanager", GRAFANA).field == "version"


# ----------------------------------------------------------------------- grafana


def test_grafana_firing_and_resolved_in_one_body() -> None:
    """Grafana's body gives one alert per member, with statuses, times and generator URL."""
    firing, resolved = parse("grafana", GRAFANA)
    assert firing.source == "grafana"
    assert firing.name == "High memory usage"
    assert firing.status is AlertStatus.firing
    assert firing.starts_at == datetime(2026, 10, 12, 7, 51, 3, 157076, tzinfo=UTC)
    assert firing.ends_at is None
    assert firing.generator_url == "https://grafana.example/alerting/grafana/1afz29v7z/view"
    assert resolved.status is AlertStatus.resolved
    assert resolved.ends_at == datetime(2026, 10, 12, 7, 56, 3, tzinfo=UTC)
    assert resolved.annotations == {}


def test_grafana_fingerprint_is_opaque() -> None:
    """Grafana's fingerprint is kept verbatim, never recomputed from the visible labels."""
    firing, resolved = parse("grafana", GRAFANA)
    assert firing.fingerprint == "c6eadffa33fcdf37"
    assert resolved.fingerprint == "bc97ff14869b13e3"
    assert firing.fingerprint != label_fingerprint(firing.labels)


def test_grafana_missing_fingerprint_falls_back_to_labels() -> None:
    """Only an absent fingerprint is computed from the labels."""
    body = copy.deepcopy(GRAFANA)
    del body["alerts"][0]["fingerprint"]
    firing, _ = parse("grafana", body)
    assert firing.fingerprint == label_fingerprint(firing.labels)


def test_grafana_only_version_1() -> None:
    """An Alertmanager body sent to the Grafana endpoint is refused on the version field."""
    error = invalid("grafana", AM_FIRING)
    assert (error.field, error.message) == ("version", "must be '1'")


def test_grafana_labels_must_be_strings() -> None:
    """Grafana always sends string labels, so a number is a malformed body."""
    body = copy.deepcopy(GRAFANA)
    body["alerts"][1]["labels"]["zone"] = 5
    error = invalid("grafana", body)
    assert (error.field, error.message) == ("alerts.1.labels.zone", "must be a string")


# ------------------------------------------------------------------------ zabbix


def test_zabbix_problem_maps_parameters_to_labels() -> None:
    """A problem is firing, named by its trigger, with host, severity, ids and tags as labels."""
    (alert,) = parse("zabbix", zabbix_problem())
    assert alert.source == "zabbix"
    assert alert.status is AlertStatus.firing
    assert alert.fingerprint == "zabbix-4711"
    assert alert.name == "Load average is too high (per CPU load over 1.5 for 5m)"
    assert alert.labels == {
        "alertname": "Load average is too high (per CPU load over 1.5 for 5m)",
        "host": "web-1",
        "severity": "average",
        "host_ip": "10.0.0.11",
        "trigger_id": "23011",
        "class": "os",
        "component": "cpu",
        "scope": "performance",
    }
    assert alert.annotations == {
        "event_id": "4711",
        "summary": "Load average is too high on web-1 (per CPU load over 1.5 for 5m)",
    }
    assert alert.starts_at == datetime(2026, 11, 23, 10, 15, 2, tzinfo=UTC)
    assert alert.ends_at is None


def test_zabbix_problem_and_recovery_share_the_fingerprint() -> None:
    """The recovery of a problem resolves the same fingerprint, with the same start and its end."""
    (problem,) = parse("zabbix", zabbix_problem())
    (recovery,) = parse("zabbix", zabbix_recovery())
    assert recovery.status is AlertStatus.resolved
    assert recovery.fingerprint == problem.fingerprint
    assert recovery.starts_at == problem.starts_at
    assert recovery.ends_at == datetime(2026, 11, 23, 10, 45, 30, tzinfo=UTC)


def test_zabbix_recovery_without_recovery_time_ends_when_received() -> None:
    """A recovery without recovery_time ends at the time Suture received it."""
    (alert,) = parse("zabbix", zabbix_problem(event_value="0"))
    assert alert.status is AlertStatus.resolved
    assert alert.ends_at == RECEIVED


def test_zabbix_same_trigger_on_two_hosts_differs() -> None:
    """Two hosts with the same trigger name get different fingerprints: never the trigger name."""
    (one,) = parse("zabbix", zabbix_problem())
    (two,) = parse("zabbix", zabbix_problem(event_id="4712", host="web-2", host_ip="10.0.0.12"))
    assert one.name == two.name
    assert one.fingerprint != two.fingerprint


def test_zabbix_unexpanded_macros_are_absent() -> None:
    """Macros Zabbix left unexpanded, *UNKNOWN* and empty strings are treated as absent."""
    body = zabbix_problem(
        host_ip="{HOST.IP}",
        trigger_id="{TRIGGER.ID}",
        event_severity="*UNKNOWN*",
        trigger_name="{TRIGGER.NAME}",
        tags="{EVENT.TAGSJSON}",
        event_time="{EVENT.DATE} {EVENT.TIME}",
        host="",
        team="{$TEAM}",
    )
    (alert,) = parse("zabbix", body)
    assert alert.labels == {"alertname": body["event_name"]}
    assert alert.name == body["event_name"]
    assert alert.starts_at is None
    assert "team" not in alert.annotations


def test_zabbix_macro_event_id_is_missing() -> None:
    """An unexpanded {EVENT.ID} is as good as no event id: invalid, naming event_id."""
    assert invalid("zabbix", zabbix_problem(event_id="{EVENT.ID}")).field == "event_id"
    body = zabbix_problem()
    del body["event_id"]
    error = invalid("zabbix", body)
    assert (error.field, error.message) == ("event_id", "is required")


def test_zabbix_tags_become_labels() -> None:
    """Tags become labels; a repeated tag keeps all values; built-in labels win over tags."""
    tags = [
        {"tag": "service", "value": "checkout"},
        {"tag": "service", "value": "payments"},
        {"tag": "service", "value": "checkout"},
        {"tag": "host", "value": "spoofed"},
        {"tag": "maintenance"},
        {"tag": "Ünïcode", "value": "вода"},
    ]
    (alert,) = parse("zabbix", zabbix_problem(tags=json.dumps(tags)))
    assert alert.labels["service"] == "checkout,payments"
    assert alert.labels["host"] == "web-1"
    assert alert.labels["maintenance"] == ""
    assert alert.labels["Ünïcode"] == "вода"


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ("[{tag: scope}]", "tags"),
        ('{"tag": "scope"}', "tags"),
        ('["scope"]', "tags.0"),
        ('[{"value": "x"}]', "tags.0.tag"),
        ('[{"tag": "a", "value": 3}]', "tags.0.value"),
        ("[" * 100_000, "tags"),
    ],
)
def test_zabbix_bad_tags_are_invalid(tags: str, field: str) -> None:
    """Tags that are not a JSON list of {tag, value} name the bad part."""
    assert invalid("zabbix", zabbix_problem(tags=tags)).field == field


def test_zabbix_time_zone_from_settings() -> None:
    """Local Zabbix times are read in sources.zabbix.timezone: Berlin is UTC+1 in winter, +2 in summer."""
    berlin = SourceConfig(timezone="Europe/Berlin")
    (winter,) = parse("zabbix", zabbix_problem(event_time="2026.11.23 10:15:02"), berlin)
    assert winter.starts_at == datetime(2026, 11, 23, 9, 15, 2, tzinfo=UTC)
    (summer,) = parse("zabbix", zabbix_problem(event_time="2026-07-01 10:15:02"), berlin)
    assert summer.starts_at == datetime(2026, 7, 1, 8, 15, 2, tzinfo=UTC)
    (recovery,) = parse("zabbix", zabbix_recovery(), berlin)
    assert recovery.ends_at == datetime(2026, 11, 23, 9, 45, 30, tzinfo=UTC)


def test_zabbix_time_with_offset_keeps_it() -> None:
    """A time that carries its own offset is not re-zoned."""
    berlin = SourceConfig(timezone="Europe/Berlin")
    (alert,) = parse("zabbix", zabbix_problem(event_time="2026-11-23T10:15:02+05:00"), berlin)
    assert alert.starts_at == datetime(2026, 11, 23, 5, 15, 2, tzinfo=UTC)


def test_zabbix_unknown_time_zone_is_a_config_error(tmp_path: Path) -> None:
    """A misspelt time zone is refused when config.yaml loads, naming the key, not per webhook."""
    config = tmp_path / "config.yaml"
    config.write_text("sources:\n  zabbix: {timezone: Europe/Berlni}\n")
    with pytest.raises(
        ConfigError, match=r"config.yaml:2: sources.zabbix.timezone: unknown time zone 'Europe/Berlni'"
    ):
        load_config(config)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"event_value": "2"}, "event_value", "must be '1' (problem) or '0' (recovery)"),
        ({"event_value": "PROBLEM"}, "event_value", "must be '1' (problem) or '0' (recovery)"),
        ({"event_time": "23/11/2026 10:15"}, "event_time", None),
        ({"event_time": "2026.13.23 10:15:02"}, "event_time", None),
        ({"recovery_time": "soon"}, "recovery_time", None),
        ({"host": ["web-1"]}, "host", "must be a string"),
        ({"tags": [{"tag": "a", "value": "b"}]}, "tags", "must be a string"),
    ],
)
def test_zabbix_invalid_parameters_name_the_field(
    overrides: dict[str, Any], field: str, message: str | None
) -> None:
    """Each malformed Zabbix parameter is reported by its own name."""
    error = invalid("zabbix", zabbix_problem(**overrides))
    assert error.field == field
    if message is not None:
        assert error.message == message


def test_zabbix_numeric_ids_are_accepted() -> None:
    """Hand-made media types that send ids as JSON numbers still work."""
    (alert,) = parse("zabbix", zabbix_problem(event_id=4711, event_value=0, trigger_id=23011))
    assert alert.fingerprint == "zabbix-4711"
    assert alert.status is AlertStatus.resolved
    assert alert.labels["trigger_id"] == "23011"


def test_zabbix_extra_parameters_become_annotations_but_never_the_token() -> None:
    """Extra text parameters are kept as annotations; transport parameters are never copied."""
    body = zabbix_problem(
        event_opdata="Load: 7.2", token="s3cret", url="https://suture/x", event_id_extra=5, summary="mine"
    )
    (alert,) = parse("zabbix", body)
    assert alert.annotations["event_opdata"] == "Load: 7.2"
    assert alert.annotations["summary"] == body["event_name"]
    assert "token" not in alert.annotations and "url" not in alert.annotations
    assert "event_id_extra" not in alert.annotations


# ----------------------------------------------------------------------- generic


def test_generic_alert() -> None:
    """A generic alert keeps name, status, labels and annotations and gains the alertname label."""
    body = generic_body(annotations={"summary": "nightly backup failed"}, starts_at="2026-11-23T02:00:00Z")
    (alert,) = parse("generic", body)
    assert alert.source == "generic"
    assert alert.name == "BackupFailed"
    assert alert.status is AlertStatus.firing
    assert alert.labels == {"alertname": "BackupFailed", "host": "db-1"}
    assert alert.annotations == {"summary": "nightly backup failed"}
    assert alert.starts_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert alert.ends_at is None


def test_generic_fingerprint_given_or_computed() -> None:
    """A given fingerprint is kept; otherwise it depends on name and labels only."""
    (given_fp,) = parse("generic", generic_body(fingerprint="backup-db-1"))
    assert given_fp.fingerprint == "backup-db-1"
    (one,) = parse("generic", generic_body(annotations={"a": "1"}))
    (same,) = parse("generic", generic_body(annotations={"a": "2"}, status="resolved"))
    (other,) = parse("generic", generic_body(name="BackupSlow"))
    assert one.fingerprint == same.fingerprint
    assert one.fingerprint != other.fingerprint
    assert len(one.fingerprint) == 16


def test_generic_accepts_camel_case_times_and_naive_utc() -> None:
    """startsAt/endsAt are accepted; a time without offset is UTC."""
    (alert,) = parse(
        "generic",
        generic_body(status="resolved", startsAt="2026-11-23 02:00:00", endsAt="2026-11-23T03:30:00Z"),
    )
    assert alert.starts_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert alert.ends_at == datetime(2026, 11, 23, 3, 30, tzinfo=UTC)


def test_generic_keeps_an_explicit_alertname() -> None:
    """An alertname label set by the sender is not overwritten by name."""
    (alert,) = parse("generic", generic_body(labels={"alertname": "backup_failed"}))
    assert alert.labels["alertname"] == "backup_failed"
    assert alert.name == "BackupFailed"


def test_generic_coerces_numbers_and_booleans_in_labels() -> None:
    """Numbers and booleans in generic labels become strings; null does not."""
    (alert,) = parse("generic", generic_body(labels={"port": 5432, "primary": True, "load": 0.5}))
    assert alert.labels == {"alertname": "BackupFailed", "port": "5432", "primary": "true", "load": "0.5"}
    error = invalid("generic", generic_body(labels={"port": None}))
    assert (error.field, error.message) == ("alerts.0.labels.port", "must be a string")


@pytest.mark.parametrize(
    ("alert", "field", "message"),
    [
        ({"name": ""}, "alerts.0.name", "must not be empty"),
        ({"name": 7}, "alerts.0.name", "must be a string"),
        ({"status": None}, "alerts.0.status", "must be 'firing' or 'resolved'"),
        ({"status": "FIRING"}, "alerts.0.status", "must be 'firing' or 'resolved'"),
        ({"labels": ["host", "db-1"]}, "alerts.0.labels", "must be an object"),
        ({"labels": {"nested": {"a": "b"}}}, "alerts.0.labels.nested", "must be a string"),
        ({"startsAt": "tomorrow"}, "alerts.0.startsAt", None),
        ({"starts_at": 1732356902}, "alerts.0.starts_at", None),
    ],
)
def test_generic_invalid_alerts_name_the_field(
    alert: dict[str, Any], field: str, message: str | None
) -> None:
    """Each malformed generic field is reported by its dotted path."""
    error = invalid("generic", generic_body(**alert))
    assert error.field == field
    if message is not None:
        assert error.message == message


def test_generic_requires_name_and_status() -> None:
    """name and status have no defaults."""
    for key in ("name", "status"):
        body = generic_body()
        del body["alerts"][0][key]
        error = invalid("generic", body)
        assert (error.field, error.message) == (f"alerts.0.{key}", "is required")


# ------------------------------------------------------------ odd but legal values


def test_unicode_labels_empty_annotations_and_long_values() -> None:
    """Unicode keys and values, empty or null annotations and 4 KB label values are all accepted."""
    long_value = "x" * 4096
    body = copy.deepcopy(AM_RESOLVED)
    alert = body["alerts"][0]
    alert["labels"].update({"région": "Île-de-France", "服务": "支付 🚀", "long": long_value, "empty": ""})
    alert["annotations"] = {}
    body["commonAnnotations"] = None
    (parsed,) = parse("alertmanager", body)
    assert parsed.labels["服务"] == "支付 🚀"
    assert parsed.labels["long"] == long_value
    assert parsed.labels["empty"] == ""
    assert parsed.annotations == {}

    del alert["fingerprint"]
    alert["annotations"] = None
    (computed,) = parse("alertmanager", body)
    assert computed.annotations == {}
    assert len(computed.fingerprint) == 16

    (generic,) = parse("generic", generic_body(name="Ünïcode ✓", labels={"long": long_value}, annotations={}))
    assert generic.labels["long"] == long_value


def test_lone_surrogates_are_refused() -> None:
    """JSON can carry a lone surrogate; it cannot be stored, so it is a field error."""
    body = copy.deepcopy(AM_RESOLVED)
    body["alerts"][0]["labels"]["bad"] = "\ud800"
    assert invalid("alertmanager", body).field == "alerts.0.labels.bad"
    assert (
        invalid("zabbix", zabbix_problem(tags='[{"tag": "a", "value": "\\udc00"}]')).field == "tags.0.value"
    )


# ------------------------------------------------------------------ invalid bodies


def _am(mutate: Any) -> dict[str, Any]:
    body = copy.deepcopy(AM_FIRING)
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            _am(lambda b: b["alerts"][1].update(status="pending")),
            "alerts.1.status",
            "must be 'firing' or 'resolved'",
        ),
        (_am(lambda b: b.update(status="ok")), "status", "must be 'firing' or 'resolved'"),
        (_am(lambda b: b.pop("alerts")), "alerts", "is required"),
        (_am(lambda b: b.update(alerts=[])), "alerts", "at least one alert is required"),
        (_am(lambda b: b.update(alerts={"0": {}})), "alerts", "must be a list"),
        (_am(lambda b: b.update(alerts=["firing"])), "alerts.0", "must be an object"),
        (_am(lambda b: b["alerts"][0].update(startsAt="2026-11-23 at ten")), "alerts.0.startsAt", None),
        (_am(lambda b: b["alerts"][0].update(endsAt=0)), "alerts.0.endsAt", None),
        (
            _am(lambda b: b["alerts"][0]["labels"].update(port=9100)),
            "alerts.0.labels.port",
            "must be a string",
        ),
        (_am(lambda b: b.update(truncatedAlerts=-1)), "truncatedAlerts", "must be at least 0"),
        (_am(lambda b: b.pop("version")), "version", "is required"),
    ],
)
def test_invalid_alertmanager_bodies_name_the_field(
    body: dict[str, Any], field: str, message: str | None
) -> None:
    """A malformed body names its first bad field and what was expected."""
    error = invalid("alertmanager", body)
    assert error.field == field
    if message is not None:
        assert error.message == message
    assert str(error).startswith(f"{field}: ")


def test_bad_time_message_says_what_is_expected() -> None:
    """An unreadable time says an RFC 3339 time was expected and echoes what came."""
    error = invalid("alertmanager", _am(lambda b: b["alerts"][0].update(startsAt="yesterday")))
    assert "RFC 3339" in error.message and "'yesterday'" in error.message


@pytest.mark.parametrize("source", sorted(CONNECTORS))
@pytest.mark.parametrize("payload", [None, [], [AM_FIRING], "alerts", 42, 1.5, True])
def test_non_object_bodies_are_invalid(source: str, payload: Any) -> None:
    """A body that is not a JSON object is refused by every connector, naming the body."""
    error = invalid(source, payload)
    assert error.field == "body"
    assert error.message.startswith("must be a JSON object")


@pytest.mark.parametrize("source", sorted(CONNECTORS))
def test_empty_object_is_invalid(source: str) -> None:
    """An empty object is refused by every connector."""
    invalid(source, {})


# -------------------------------------------------------------- property-based

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "firing",
            "resolved",
            "4",
            "1",
            "0",
            "",
            "{HOST.IP}",
            "*UNKNOWN*",
            "\ud800",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "0001.01.01 00:00:00",
            "9999.12.31 23:59:59",
            "2026-11-23T10:15:02.123456789Z",
            "[[[[[[",
            '[{"tag": "a", "value": "b"}]',
            '[{"tag": 1}]',
        ]
    )
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=16,
)


def mostly(
    valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any] = json_values
) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes any JSON at all: bodies that are almost right."""
    return st.integers(0, 7).flatmap(lambda roll: other if roll == 0 else valid)


def _shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={key: mostly(value) for key, value in fields.items()})


def _required(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {key: mostly(value) for key, value in required.items()},
        optional={key: mostly(value) for key, value in optional.items()},
    )


_text = st.text(max_size=20)
_text_maps = st.dictionaries(st.text(max_size=10), _text, max_size=4)
_offsets = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
_rfc3339 = st.datetimes(timezones=_offsets).map(datetime.isoformat) | st.just("0001-01-01T00:00:00Z")
_status = st.sampled_from(["firing", "resolved"])

_vendor_alert = _required(
    {"status": _status, "labels": _text_maps},
    {
        "annotations": _text_maps,
        "startsAt": _rfc3339,
        "endsAt": _rfc3339,
        "generatorURL": _text,
        "fingerprint": _text,
        "values": st.dictionaries(_text, st.floats() | st.none()),
        "silenceURL": _text,
    },
)
_vendor_body = _required(
    {"version": st.sampled_from(["4", "1"]), "alerts": st.lists(_vendor_alert, max_size=3)},
    {
        "receiver": _text,
        "status": _status,
        "groupLabels": _text_maps,
        "commonLabels": _text_maps,
        "commonAnnotations": _text_maps,
        "truncatedAlerts": st.integers(0, 5),
        "orgId": st.integers(),
    },
)
_generic_body = _required(
    {
        "alerts": st.lists(
            _required(
                {"name": _text, "status": _status},
                {
                    "labels": st.dictionaries(_text, _text | st.integers() | st.floats() | st.booleans()),
                    "annotations": _text_maps,
                    "fingerprint": _text,
                    "starts_at": _rfc3339,
                    "endsAt": _rfc3339,
                },
            ),
            max_size=3,
        )
    },
    {},
)
_zabbix_time = st.datetimes().map(lambda moment: moment.strftime("%Y.%m.%d %H:%M:%S")) | st.sampled_from(
    ["{EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}", "0001.01.01 00:00:00", "9999.12.31 23:59:59"]
)
_tags = st.lists(_shaped({"tag": _text, "value": _text}), max_size=3).map(json.dumps)
_zabbix_body = _required(
    {"event_id": st.integers(0).map(str), "event_value": st.sampled_from(["0", "1"])},
    {
        "event_name": _text,
        "trigger_name": _text,
        "event_severity": st.sampled_from(["Not classified", "Information", "Warning", "Average", "High"]),
        "host": _text,
        "host_ip": st.sampled_from(["10.0.0.1", "{HOST.IP}"]),
        "trigger_id": st.integers(0).map(str),
        "tags": _tags,
        "event_time": _zabbix_time,
        "recovery_time": _zabbix_time,
        "event_opdata": _text,
    },
)
_zones = st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "Pacific/Pago_Pago"])


def _only_alerts_or_invalid(payload: Any, zone: str) -> None:
    config = SourceConfig(timezone=zone)
    for connector in CONNECTORS.values():
        try:
            alerts = connector.parse(payload, config, RECEIVED)
        except InvalidPayload as exc:
            assert exc.field and exc.message
            continue
        assert alerts and all(isinstance(alert, Alert) for alert in alerts)
        for alert in alerts:
            assert alert.fingerprint and alert.name
            for moment in (alert.starts_at, alert.ends_at):
                assert moment is None or moment.utcoffset() == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(payload=json_values, zone=_zones)
def test_arbitrary_json_never_escapes(payload: Any, zone: str) -> None:
    """Any JSON value whatsoever gives alerts or InvalidPayload, from every connector."""
    _only_alerts_or_invalid(payload, zone)


@settings(max_examples=200, deadline=None)
@given(payload=_vendor_body | _generic_body | _zabbix_body, zone=_zones)
def test_body_shaped_json_never_escapes(payload: Any, zone: str) -> None:
    """Bodies shaped like real ones, with random field values, give alerts or InvalidPayload."""
    _only_alerts_or_invalid(payload, zone)


# -------------------------------------------------------------------- signatures

SECRET = b"grafana-shared-secret"
BODY = json.dumps(GRAFANA).encode()
NOW = 1_795_000_000.0


def test_signature_valid_with_and_without_prefix() -> None:
    """The body's HMAC-SHA256 verifies as bare hex, sha256=-prefixed, or upper-case."""
    digest = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    assert sign_hmac_sha256(SECRET, BODY) == digest
    assert verify_hmac_sha256(SECRET, BODY, digest)
    assert verify_hmac_sha256(SECRET, BODY, f"sha256={digest}")
    assert verify_hmac_sha256(SECRET, BODY, f"  SHA256={digest.upper()} ")


def test_signature_wrong_secret_or_tampered_body_fails() -> None:
    """A digest made with another secret, or over a changed body, is refused."""
    digest = sign_hmac_sha256(SECRET, BODY)
    assert not verify_hmac_sha256(b"other-secret", BODY, digest)
    assert not verify_hmac_sha256(SECRET, BODY.replace(b"firing", b"resolved"), digest)
    assert not verify_hmac_sha256(SECRET, BODY, digest[:-1])
    assert not verify_hmac_sha256(SECRET, BODY, "sha256=")


def test_signature_with_timestamp_grafana_12_style() -> None:
    """With a timestamp the signed message is "<timestamp>:<body>" and must be fresh."""
    timestamp = str(int(NOW) - 10)
    digest = hmac.new(SECRET, f"{timestamp}:".encode() + BODY, hashlib.sha256).hexdigest()
    assert verify_hmac_sha256(SECRET, BODY, digest, timestamp=timestamp, now=NOW)
    assert not verify_hmac_sha256(SECRET, BODY, digest, now=NOW)
    assert not verify_hmac_sha256(SECRET, BODY, digest, timestamp=str(int(NOW) - 9), now=NOW)


def test_signature_stale_or_future_timestamp_fails() -> None:
    """A correctly signed request outside the allowed skew, either way, is refused."""
    for timestamp in (str(int(NOW) - 301), str(int(NOW) + 301)):
        digest = sign_hmac_sha256(SECRET, BODY, timestamp)
        assert not verify_hmac_sha256(SECRET, BODY, digest, timestamp=timestamp, now=NOW)
        assert verify_hmac_sha256(SECRET, BODY, digest, timestamp=timestamp, max_skew_seconds=302, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "yesterday", "nan", "inf", "1e999"])
def test_signature_unreadable_timestamp_fails(timestamp: str) -> None:
    """A timestamp that is not a finite number of seconds is refused, not an exception."""
    digest = sign_hmac_sha256(SECRET, BODY, timestamp)
    assert not verify_hmac_sha256(SECRET, BODY, digest, timestamp=timestamp, now=NOW)


@pytest.mark.parametrize("header", ["", "sha256", "not-hex-at-all", "ümlaut", "\ud800"])
def test_signature_garbage_header_is_false(header: str) -> None:
    """Malformed signature headers, even non-ASCII ones, are refused without raising."""
    assert not verify_hmac_sha256(SECRET, BODY, header)


def test_signature_needs_a_secret() -> None:
    """An empty secret never verifies anything."""
    assert not verify_hmac_sha256(b"", BODY, sign_hmac_sha256(b"", BODY))


def test_bearer_token() -> None:
    """Only "Bearer <expected>" passes; the scheme is case-insensitive; empty expectations never pass."""
    assert bearer_token_ok("s3cret", "Bearer s3cret")
    assert bearer_token_ok("s3cret", "bearer  s3cret ")
    assert not bearer_token_ok("s3cret", "Bearer s3cre")
    assert not bearer_token_ok("s3cret", "Bearer s3cret2")
    assert not bearer_token_ok("s3cret", "Basic s3cret")
    assert not bearer_token_ok("s3cret", "s3cret")
    assert not bearer_token_ok("s3cret", None)
    assert not bearer_token_ok("s3cret", "Bearer ✓")
    assert not bearer_token_ok("", "Bearer ")
    assert not bearer_token_ok("", None)
