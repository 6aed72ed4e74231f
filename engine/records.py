"""Frozen read models built from rows: what the store returns, the API declares and the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Receipt:
    event_id: int
    alerts: int = 0
    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    runs_queued: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "alerts": self.alerts,
            "incidents_opened": self.opened,
            "incidents_updated": sorted(set(self.updated)),
            "incidents_resolved": self.resolved,
            "runs_queued": self.runs_queued,
        }
