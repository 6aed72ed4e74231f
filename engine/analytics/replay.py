"""What a replay found, counted: per code the incidents, runs and holds as they were and as replayed,
the alerts whose code changes, and each incident whose decision changes with the reason. Pure:
it only adds up what engine.intake.replay yields (DESIGN.md, "replay --json")."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.models import ReplayedAlert, ReplayedIncident, RunDecision

#: Changed decisions listed at most (all are counted in `decisions_changed_total`).
SHOWN = 1000
#: Decisions that start a run, now or after a person or a delay says so.
RUNS = frozenset({"run", "deferred", "approval"})
NO_INCIDENT = "no incident"


@dataclass
class Counts:
    incidents: int = 0
    runs: int = 0
    skipped: int = 0

    def add(self, decision: RunDecision) -> None:
        self.incidents += 1
        self.runs += decision.kind in RUNS
        self.skipped += decision.kind == "held"

    def as_json(self) -> dict[str, int]:
        return {"incidents": self.incidents, "runs": self.runs, "skipped": self.skipped}


@dataclass
class ReplayTally:
    since: datetime
    until: datetime
    alerts: int = 0
    actual: dict[str, Counts] = field(default_factory=dict)
    replayed: dict[str, Counts] = field(default_factory=dict)
    reclassified: Counter[tuple[str, str]] = field(default_factory=Counter)
    changed: list[dict[str, Any]] = field(default_factory=list)
    changed_total: int = 0

    def add(self, fact: ReplayedAlert | ReplayedIncident) -> None:
        if isinstance(fact, ReplayedAlert):
            self.alerts += 1
            if fact.actual != fact.replayed:
                self.reclassified[(fact.actual, fact.replayed)] += 1
            return
        if fact.actual is not None and fact.actual_code is not None:
            self.actual.setdefault(fact.actual_code, Counts()).add(fact.actual)
        if fact.replayed is not None and fact.replayed_code is not None:
            self.replayed.setdefault(fact.replayed_code, Counts()).add(fact.replayed)
        why = changed(fact)
        if why is not None:
            self.changed_total += 1
            if len(self.changed) < SHOWN:
                self.changed.append(
                    {
                        "incident_id": fact.actual_id,
                        "actual": _shown(fact.actual),
                        "replayed": _shown(fact.replayed),
                        "reason": why,
                    }
                )

    def report(self) -> dict[str, Any]:
        """The contract's `replay --json`, plus `decisions_changed_total` (the list stops at SHOWN)."""
        codes = sorted(set(self.actual) | set(self.replayed))
        return {
            "since": self.since,
            "until": self.until,
            "alerts": self.alerts,
            "codes": [
                {
                    "code": code,
                    "actual": self.actual.get(code, Counts()).as_json(),
                    "replayed": self.replayed.get(code, Counts()).as_json(),
                }
                for code in codes
            ],
            "reclassified": [
                {"from": old, "to": new, "alerts": n}
                for (old, new), n in sorted(self.reclassified.items(), key=lambda item: (-item[1], item[0]))
            ],
            "decisions_changed": self.changed,
            "decisions_changed_total": self.changed_total,
        }


def changed(fact: ReplayedIncident) -> str | None:
    """Why this incident's decision differs in the replay, or None if it does not."""
    if fact.replayed is None:
        return "the replay opened no incident for this alert: it counted on one already open"
    if fact.actual is None:
        return f"the replay opened an incident ({fact.replayed_code}) where none opened"
    if fact.actual.kind == fact.replayed.kind:
        return None
    why = fact.replayed.reason or fact.actual.reason
    if fact.actual_code != fact.replayed_code:
        moved = f"now {fact.replayed_code}, was {fact.actual_code}"
        return f"{moved}: {why}" if why else moved
    return why or f"{fact.actual.kind} then, {fact.replayed.kind} now"


def _shown(decision: RunDecision | None) -> str:
    return NO_INCIDENT if decision is None else decision.kind
