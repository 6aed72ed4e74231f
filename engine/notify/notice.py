"""What a channel is asked to tell: one event about one incident, with everything a person
paged at 3 a.m. needs in the message itself (what, where, how bad, since when, what automation
did, the first manual step, who owns it, and a link)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The event of `suture notify test`: no incident behind it.
TEST_EVENT = "test"


@dataclass(frozen=True, slots=True)
class Notice:
    #: `incident_opened`, `escalation`, `run_failed`, `approval_needed`, `approval_expired`,
    #: `resolved`, ... (config.NOTIFICATION_EVENTS), or `test`.
    event: str
    #: The incident as its API JSON (`Incident` record, mode="json"): id, code, title, status,
    #: severity, target, source, opened_at, due_at, respond_by, acknowledged_at/by, ...
    incident: dict[str, Any]
    #: The run the event is about (`Run` record JSON), for run_failed and approvals.
    run: dict[str, Any] | None
    #: One line saying why this message is sent ("not acknowledged within 30m (respond by ...)").
    reason: str
    #: One line of what automation did ("disk-cleanup@3 failed: step 'vacuum' exit 1").
    automation: str
    #: The code's first manual step, and its owner (empty when the code has none).
    first_step: str
    owner: str
    #: Where the incident can be seen (server.public_url, else where the daemon listens).
    link: str
    sent_at: datetime

    @property
    def incident_id(self) -> int | None:
        value = self.incident.get("id")
        return int(value) if value is not None else None
