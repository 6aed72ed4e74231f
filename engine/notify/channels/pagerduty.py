"""`pagerduty`: PagerDuty's Events API v2 (`POST /v2/enqueue`).

Every event of an incident is a `trigger` with `dedup_key` `suture-<incident id>`: the first
opens a PagerDuty incident, later ones (a repeated escalation) add to it instead of paging
anew. `resolved` sends `resolve` with the same key, closing it. `suture notify test` triggers a
one-off alert of its own key (`suture-test-<time>`), marked as a test in its summary.

PagerDuty answers 202 with `{"status": "success", "dedup_key": ...}`; 400 means the event is
invalid (permanent), 429 and 5xx mean later. The routing key never appears in a message.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from engine.notify.channels import text
from engine.notify.channels.http import post_json, shown_url
from engine.notify.notice import TEST_EVENT, Notice

#: Suture's severities in PagerDuty's words.
SEVERITIES = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
#: PagerDuty's limits: longer is refused or cut by PagerDuty itself.
SUMMARY_LIMIT = 1024
DEDUP_LIMIT = 255


def dedup_key(notice: Notice) -> str:
    if notice.incident_id is None:
        return f"suture-test-{text.utc_text(notice.sent_at).replace(':', '').replace('-', '')}"[:DEDUP_LIMIT]
    return f"suture-{notice.incident_id}"


def _details(notice: Notice) -> dict[str, Any]:
    incident = notice.incident
    details = {
        "code": incident.get("code"),
        "title": incident.get("title"),
        "target": incident.get("target"),
        "severity": incident.get("severity"),
        "event": notice.event,
        "reason": notice.reason,
        "automation": notice.automation,
        "first_step": notice.first_step,
        "owner": notice.owner,
        "respond_by": text.iso(incident.get("respond_by")),
        "due_at": text.iso(incident.get("due_at")),
        "link": notice.link,
    }
    return {key: value for key, value in details.items() if value not in (None, "")}


def event(notice: Notice, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for one notice."""
    key = dedup_key(notice)
    if notice.event == "resolved" and notice.incident_id is not None:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    incident = notice.incident
    summary = text.title(notice)
    if notice.event == TEST_EVENT or notice.incident_id is None:
        summary = f"{summary}: a test from Suture; resolve it in PagerDuty, nothing is wrong"
    payload: dict[str, Any] = {
        "summary": text.clip(summary, SUMMARY_LIMIT),
        "source": text.one_line(incident.get("target")) or "suture",
        "severity": SEVERITIES.get(str(incident.get("severity")), "info"),
        "timestamp": text.iso(incident.get("opened_at")) or text.utc_text(notice.sent_at),
        "component": incident.get("code") or "suture",
        "class": notice.event,
        "custom_details": _details(notice),
    }
    if notice.owner:
        payload["group"] = notice.owner
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
        "client": "Suture",
    }
    if notice.link:
        body["links"] = [{"href": notice.link, "text": text.link_text(notice)}]
        body["client_url"] = notice.link
    return body


class PagerDutyChannel:
    kind = "pagerduty"

    def __init__(self, name: str, url: str, routing_key: SecretStr, *, timeout: float) -> None:
        self.name = name
        self._url = url
        self._routing_key = routing_key
        self._timeout = timeout
        self._shown = shown_url(url)

    def send(self, notice: Notice) -> str:
        data = json.dumps(event(notice, self._routing_key.get_secret_value()), ensure_ascii=False).encode()
        return post_json(
            self._url,
            data,
            what=f"channel {self.name}",
            shown=self._shown,
            timeout=self._timeout,
            secrets=[self._routing_key],
        )
