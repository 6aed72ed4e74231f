"""How past incidents ended, in words a newcomer reads at 3 a.m.: what `incidents show` and
`codes show` print beside an incident ("last time: resolved by disk-cleanup@3 in 4 min").

Pure: it takes the facts the store read (engine.store.catalog_history) and the code from the
catalog in force, and builds the records the CLI and the API answer with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from engine.models import Knowledge
from engine.records import IncidentDetail, KnowledgeView, PreviousIncident


class PastFacts(Protocol):
    """What the store knows of one past incident (engine.store.catalog_history.PastIncident)."""

    @property
    def id(self) -> int: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def resolution(self) -> str | None: ...
    @property
    def fixed_by(self) -> str | None: ...
    @property
    def resolved_by(self) -> str | None: ...


def spoken(span: timedelta) -> str:
    """A duration as people say it: `45 s`, `4 min`, `2 h`, `2 h 10 min`, `3 d 4 h`."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def ended(facts: PastFacts) -> str:
    """One line: how the incident ended, by whom or what, and how long it took."""
    if facts.resolved_at is None:
        return "still open"
    took = spoken(facts.resolved_at - facts.opened_at)
    if facts.resolution == "manual":
        return f"resolved by hand by {facts.resolved_by or 'someone'} after {took}"
    if facts.fixed_by:
        return f"resolved by {facts.fixed_by} in {took}"
    if facts.resolution == "alert_resolved":
        return f"resolved at the source after {took}, no run fixed it"
    return f"{(facts.resolution or 'resolved').replace('_', ' ')} after {took}"


def ttr_seconds(facts: PastFacts) -> float | None:
    """Time to resolve (resolved_at - opened_at); None while open."""
    if facts.resolved_at is None:
        return None
    return (facts.resolved_at - facts.opened_at).total_seconds()


def knowledge_view(knowledge: Knowledge | None) -> KnowledgeView | None:
    if knowledge is None:
        return None
    return KnowledgeView.trusted(
        {
            "summary": knowledge.summary,
            "diagnosis": list(knowledge.diagnosis),
            "manual_steps": list(knowledge.manual_steps),
            "owner": knowledge.owner,
            "links": list(knowledge.links),
        }
    )


def previous(facts: Sequence[PastFacts]) -> list[PreviousIncident]:
    return [
        PreviousIncident.trusted(
            {
                "id": f.id,
                "opened_at": f.opened_at,
                "resolved_at": f.resolved_at,
                "resolution": f.resolution,
                "ended": ended(f),
            }
        )
        for f in facts
    ]


def teach(
    detail: IncidentDetail, knowledge: Knowledge | None, earlier: Sequence[PastFacts]
) -> IncidentDetail:
    """The incident with its code's knowledge (None: UNCLASSIFIED or not in the catalog) and how
    the earlier incidents of its code and target ended."""
    values = {name: detail.__dict__[name] for name in IncidentDetail.field_names() if name in detail.__dict__}
    values["knowledge"] = knowledge_view(knowledge)
    values["previous"] = previous(earlier)
    return IncidentDetail.trusted(values)
