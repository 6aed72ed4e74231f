"""Every shipped code classifies its alert however it arrives: an Alertmanager webhook, a Grafana
contact point, or a poll of a pull source with a name of its own (`am-dc1`, `prom-dc1`).

The labels come from node_exporter and blackbox_exporter whatever carries them, so a shipped code
that also said `source: alertmanager` would leave the Grafana and polled copies UNCLASSIFIED.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import get_connector
from connectors.pull import fetch_alertmanager, fetch_prometheus
from engine.catalog.classify import Classifier
from engine.catalog.loader import load_catalog
from engine.config import SourceConfig
from engine.models import Alert
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond

ROOT = Path(__file__).resolve().parents[2]
RECEIVED = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)

#: One real-shaped alert per shipped code: its alertname and the labels its match reads.
SAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    "DISK-001": ("NodeFilesystemAlmostOutOfSpace", {"instance": "web-1:9100", "mountpoint": "/"}),
    "DISK-002": ("NodeFilesystemAlmostOutOfFiles", {"instance": "web-1:9100", "mountpoint": "/srv"}),
    "DISK-003": ("HostOutOfDiskSpace", {"instance": "db-1:9100", "mountpoint": "/data"}),
    "SVC-001": ("NodeSystemdServiceFailed", {"instance": "web-2:9100", "name": "nginx.service"}),
    "MEM-001": ("HostOutOfMemory", {"instance": "web-1:9100"}),
    "MEM-002": ("HostOomKillDetected", {"instance": "web-1:9100"}),
    "CPU-001": ("NodeCPUHighUsage", {"instance": "web-1:9100"}),
    "NTP-001": ("NodeClockNotSynchronising", {"instance": "web-1:9100"}),
    "NET-001": ("BlackboxProbeFailed", {"instance": "https://shop.example.com/health", "job": "blackbox"}),
    "TLS-001": ("BlackboxSslCertificateWillExpireSoon", {"instance": "https://shop.example.com"}),
    "TLS-002": ("BlackboxSslCertificateExpired", {"instance": "https://shop.example.com:8443/"}),
}


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(load_catalog(ROOT / "codes", ROOT / "playbooks"))


def _labels(alertname: str, labels: dict[str, str]) -> dict[str, str]:
    return {"alertname": alertname, "job": "node", "severity": "warning", **labels}


def _alertmanager(alertname: str, labels: dict[str, str], server: TestHttpServer) -> Alert:
    body = am_body(am_alert(alertname, **labels))
    (alert,) = get_connector("alertmanager").parse(body, SourceConfig(), RECEIVED)
    return alert


def _grafana(alertname: str, labels: dict[str, str], server: TestHttpServer) -> Alert:
    """A Grafana-managed rule named after the exporter's alert, as a webhook contact point sends it."""
    body = {
        "receiver": "suture",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": {**_labels(alertname, labels), "grafana_folder": "Infrastructure"},
                "annotations": {"summary": f"{alertname} on {labels['instance']}"},
                "startsAt": "2026-11-23T10:00:00+01:00",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://grafana.example/alerting/grafana/1afz29v7z/view",
                "fingerprint": "c6eadffa33fcdf37",
                "silenceURL": "https://grafana.example/alerting/silence/new",
                "dashboardURL": "",
                "panelURL": "",
                "values": {"B": 96.5, "C": 1},
                "valueString": "[ var='B' value=96.5 ], [ var='C' value=1 ]",
            }
        ],
        "groupLabels": {"alertname": alertname},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "https://grafana.example/",
        "version": "1",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "title": f"[FIRING:1] {alertname}",
        "state": "alerting",
        "message": "",
    }
    (alert,) = get_connector("grafana").parse(body, SourceConfig(), RECEIVED)
    assert alert.source == "grafana"
    return alert


def _pulled_from_alertmanager(alertname: str, labels: dict[str, str], server: TestHttpServer) -> Alert:
    gettable = {
        "labels": _labels(alertname, labels),
        "annotations": {"summary": "test"},
        "startsAt": "2026-11-23T10:15:02.123Z",
        "endsAt": "2026-11-23T10:23:02.123Z",
        "updatedAt": "2026-11-23T10:19:02.456Z",
        "fingerprint": "5e7a1c0f3b2d9a41",
        "receivers": [{"name": "suture"}],
        "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
        "generatorURL": "http://prometheus:9090/graph",
    }
    server.script("/api/v2/alerts", [respond(json=[gettable])])
    (alert,) = fetch_alertmanager(server.url, source="am-dc1")
    assert alert.source == "am-dc1"
    return alert


def _pulled_from_prometheus(alertname: str, labels: dict[str, str], server: TestHttpServer) -> Alert:
    rule_alert = {
        "labels": _labels(alertname, labels),
        "annotations": {"summary": "test"},
        "state": "firing",
        "activeAt": "2026-11-23T10:15:02.123456789Z",
        "value": "9.65e+01",
    }
    server.script("/api/v1/alerts", [respond(json={"status": "success", "data": {"alerts": [rule_alert]}})])
    (alert,) = fetch_prometheus(server.url, source="prom-dc1")
    assert alert.source == "prom-dc1"
    return alert


ARRIVALS: dict[str, Callable[[str, dict[str, str], TestHttpServer], Alert]] = {
    "alertmanager-webhook": _alertmanager,
    "grafana-webhook": _grafana,
    "alertmanager-poll": _pulled_from_alertmanager,
    "prometheus-poll": _pulled_from_prometheus,
}


def test_every_shipped_code_has_a_sample() -> None:
    """A new shipped code needs its sample here, or it goes untested against other sources."""
    shipped = {entry.code.code for entry in load_catalog(ROOT / "codes", ROOT / "playbooks").codes}
    assert shipped == set(SAMPLES)


@pytest.mark.parametrize("arrival", list(ARRIVALS))
@pytest.mark.parametrize("code", list(SAMPLES))
def test_shipped_code_classifies_whatever_carried_the_alert(
    classifier: Classifier, http_server: TestHttpServer, code: str, arrival: str
) -> None:
    alertname, labels = SAMPLES[code]
    alert = ARRIVALS[arrival](alertname, labels, http_server)
    found: Any = classifier.classify(alert)
    assert found is not None, f"{code} sample from {alert.source} is UNCLASSIFIED"
    assert found.code == code
