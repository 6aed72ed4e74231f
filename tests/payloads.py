"""Real-shaped webhook bodies for tests."""

from __future__ import annotations

from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"


def am_alert(
    alertname: str = "NodeFilesystemAlmostOutOfSpace",
    *,
    status: str = "firing",
    fingerprint: str = "f0000000000000a1",
    starts_at: str = "2026-11-23T10:00:00Z",
    ends_at: str = ZERO_TIME,
    **labels: str,
) -> dict[str, Any]:
    merged = {"alertname": alertname, "instance": "web-1:9100", "mountpoint": "/", "job": "node", **labels}
    return {
        "status": status,
        "labels": merged,
        "annotations": {"summary": f"{alertname} on {merged['instance']}", "description": "test"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus.local/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def am_body(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="test"}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": "suture",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": list(alerts),
    }
