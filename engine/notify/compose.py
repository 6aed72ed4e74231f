"""From an outbox event to the `Notice` channels format: the incident as it stands now, the run
the event is about, what automation did, and the code's first manual step and owner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from engine.errors import NotFound
from engine.models import Knowledge
from engine.notify.notice import Notice
from engine.notify.routing import Facts
from engine.records import Incident, IncidentDetail, Run
from engine.store import Store

#: The code's knowledge in the catalog in force (None for UNCLASSIFIED or a removed code).
KnowledgeOf = Callable[[str], Knowledge | None]

INCIDENT_FIELDS = Incident.field_names()


class Composer:
    def __init__(self, store: Store, knowledge: KnowledgeOf, base_url: str) -> None:
        self.store = store
        self.knowledge = knowledge
        self.base_url = base_url.rstrip("/")

    def facts(self, code: str, severity: str, target: str) -> Facts:
        """What routing matches on; the owner comes from the code in the catalog in force."""
        known = self.knowledge(code)
        return Facts(severity, code, known.owner if known else "", target)

    def notice(self, event: str, incident_id: int, run_id: int | None, reason: str, now: datetime) -> Notice:
        detail = self.store.get_incident(incident_id)
        run = None
        if run_id is not None:
            try:
                run = self.store.get_run_summary(run_id)
            except NotFound:
                run = None
        known = self.knowledge(detail.code)
        return Notice(
            event=event,
            incident=detail.model_dump(mode="json", include=set(INCIDENT_FIELDS)),
            run=run.model_dump(mode="json") if run is not None else None,
            reason=reason,
            automation=automation_summary(detail, run),
            first_step=known.manual_steps[0] if known and known.manual_steps else "",
            owner=known.owner if known else "",
            link=f"{self.base_url}/api/v1/incidents/{incident_id}",
            sent_at=now,
        )


def automation_summary(incident: IncidentDetail, about: Run | None) -> str:
    """One line of what automation did for the incident: the run the event is about, else its latest."""
    run = about or (incident.runs[-1] if incident.runs else None)
    if run is None:
        return "no automated run (the code has no playbook, or runs it by hand only)"
    words = f"{run.playbook}@{run.playbook_version} {run.status.replace('_', ' ')}"
    if run.dry_run:
        words += " (dry run)"
    if run.error:
        words += f": {run.error}"
    others = len(incident.runs) - 1
    return words + (f" ({others} earlier run{'s' if others != 1 else ''})" if others > 0 else "")
