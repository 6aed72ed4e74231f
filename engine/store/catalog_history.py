"""Reads of what the store remembers beyond one incident: every stored code and playbook version,
the counts `suture status` shows, and the past incidents a new one is compared with.

Separate from engine.store.store (the writes and the per-object reads) because these serve the
read side only: `codes`, `playbooks`, `status` and the history `incidents show` teaches with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from engine.errors import NotFound
from engine.models import PAUSED_KEY, UNCLASSIFIED, IncidentStatus, RunStatus
from engine.records import CatalogReload, Incident, MaintenanceEntry, PollState, Status
from engine.store.breakers import read_open
from engine.store.db import Database
from engine.store.outbox import Outbox
from engine.store.silences import read_silences
from engine.store.tables import audit_log, codes, incidents, playbook_versions, runs, state

#: `state` keys the daemon writes and `status` reads: the last catalog load, the last poll per source
#: (`poll:<source>`). Values are JSON shaped as engine.records.CatalogReload / PollState.
CATALOG_RELOAD_KEY = "catalog_reload"
POLL_KEY_PREFIX = "poll:"

#: Runs a worker has not finished: what `status` counts by status.
_UNFINISHED = (RunStatus.queued.value, RunStatus.running.value, RunStatus.awaiting_approval.value)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of a code or a playbook as first loaded; rows are never changed."""

    name: str
    version: int
    sha256: str
    loaded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredPlaybook:
    version: StoredVersion
    body: str


@dataclass(frozen=True, slots=True)
class StoredCode:
    version: StoredVersion
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PastIncident:
    """A past incident and what ended it: the facts engine.analytics.past words."""

    id: int
    target: str
    opened_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    #: `playbook@version` of the first run that succeeded for it (dry runs aside), or None.
    fixed_by: str | None
    #: Who resolved it by hand (the `resolved` audit entry's actor), or None.
    resolved_by: str | None


class CatalogHistory:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------ code versions

    def code_versions(self, code: str) -> list[StoredVersion]:
        """Every stored version of a code, oldest first."""
        query = (
            select(codes.c.code, codes.c.version, codes.c.sha256, codes.c.loaded_at)
            .where(codes.c.code == code)
            .order_by(codes.c.version)
        )
        with self.db.read() as conn:
            return [StoredVersion(*row) for row in conn.execute(query)]

    def code(self, code: str, version: int | None = None) -> StoredCode:
        """One stored version of a code (default: the newest) with its body as it was loaded."""
        query = select(codes.c.code, codes.c.version, codes.c.sha256, codes.c.loaded_at, codes.c.body).where(
            codes.c.code == code
        )
        if version is not None:
            query = query.where(codes.c.version == version)
        with self.db.read() as conn:
            row = conn.execute(query.order_by(codes.c.version.desc()).limit(1)).first()
        if row is None:
            which = f"{code} version {version}" if version is not None else code
            raise NotFound(f"code {which} is not stored")
        return StoredCode(StoredVersion(*row[:4]), dict(row[4]))

    # -------------------------------------------------- playbook versions

    def playbook_versions(self, name: str | None = None) -> list[StoredVersion]:
        """Every stored playbook version (of one playbook, if named), by name then version."""
        columns = (
            playbook_versions.c.name,
            playbook_versions.c.version,
            playbook_versions.c.sha256,
            playbook_versions.c.loaded_at,
        )
        query = select(*columns).order_by(playbook_versions.c.name, playbook_versions.c.version)
        if name is not None:
            query = query.where(playbook_versions.c.name == name)
        with self.db.read() as conn:
            return [StoredVersion(*row) for row in conn.execute(query)]

    def playbook(self, name: str, version: int | None = None) -> StoredPlaybook:
        """One stored playbook version (default: the newest) with its YAML exactly as loaded."""
        query = select(
            playbook_versions.c.name,
            playbook_versions.c.version,
            playbook_versions.c.sha256,
            playbook_versions.c.loaded_at,
            playbook_versions.c.body,
        ).where(playbook_versions.c.name == name)
        if version is not None:
            query = query.where(playbook_versions.c.version == version)
        with self.db.read() as conn:
            row = conn.execute(query.order_by(playbook_versions.c.version.desc()).limit(1)).first()
        if row is None:
            which = f"{name}@{version}" if version is not None else name
            raise NotFound(f"playbook {which} is not stored")
        return StoredPlaybook(StoredVersion(*row[:4]), str(row[4]))

    # ---------------------------------------------------------- status

    def status(self, now: datetime, maintenance: Sequence[MaintenanceEntry] = ()) -> Status:
        """The counts on-call checks first, the open breakers, the active silences, the last catalog
        load and poll per source; `maintenance` (config's windows, not the database's) as given."""
        open_ = IncidentStatus.open.value
        overdue = and_(
            incidents.c.status == open_,
            or_(
                and_(incidents.c.respond_by <= now, incidents.c.acknowledged_at.is_(None)),
                incidents.c.due_at <= now,
            ),
        )
        with self.db.read() as conn:
            by_status = {
                status: int(count)
                for status, count in conn.execute(
                    select(runs.c.status, func.count())
                    .where(runs.c.status.in_(_UNFINISHED))
                    .group_by(runs.c.status)
                )
            }
            open_count = conn.execute(
                select(func.count()).select_from(incidents).where(incidents.c.status == open_)
            ).scalar()
            overdue_count = conn.execute(select(func.count()).select_from(incidents).where(overdue)).scalar()
            paused = conn.execute(select(state.c.value).where(state.c.key == PAUSED_KEY)).scalar()
            reload = conn.execute(select(state.c.value).where(state.c.key == CATALOG_RELOAD_KEY)).scalar()
            polls = conn.execute(
                select(state.c.key, state.c.value)
                .where(state.c.key.startswith(POLL_KEY_PREFIX, autoescape=True))
                .order_by(state.c.key)
            ).all()
            silenced = read_silences(conn, now, active_only=True)
            open_breakers = read_open(conn)
        deliveries = Outbox(self.db).counts()
        return Status.trusted(
            {
                "paused": bool(paused),
                "queued": by_status.get(RunStatus.queued.value, 0),
                "running": by_status.get(RunStatus.running.value, 0),
                "awaiting_approval": by_status.get(RunStatus.awaiting_approval.value, 0),
                "open_incidents": int(open_count or 0),
                "overdue_incidents": int(overdue_count or 0),
                "notifications_pending": deliveries.get("pending", 0) + deliveries.get("sending", 0),
                "notifications_failed": deliveries.get("failed", 0),
                "open_breakers": open_breakers,
                "active_silences": silenced,
                "catalog_reload": CatalogReload.model_validate(reload) if reload else None,
                "polls": [
                    PollState.model_validate({**value, "source": key[len(POLL_KEY_PREFIX) :]})
                    for key, value in polls
                ],
                "maintenance": list(maintenance),
            }
        )

    # ----------------------------------------------------- past incidents

    def previous_incidents(self, incident: Incident, limit: int = 3) -> list[PastIncident]:
        """The last `limit` incidents of the same code and target opened before this one, newest
        first. UNCLASSIFIED ones must also share the alertname: the code alone says nothing."""
        conditions: list[ColumnElement[bool]] = [
            incidents.c.code == incident.code,
            incidents.c.target == incident.target,
            incidents.c.opened_at <= incident.opened_at,
            incidents.c.id < incident.id,
        ]
        if incident.code == UNCLASSIFIED:
            conditions.append(incidents.c.alertname == incident.alertname)
        return self._past(conditions, limit)

    def recent_incidents(self, code: str, limit: int = 10) -> list[PastIncident]:
        """The last `limit` incidents of a code, any target, newest first."""
        return self._past([incidents.c.code == code], limit)

    def _past(self, conditions: Sequence[ColumnElement[bool]], limit: int) -> list[PastIncident]:
        query = (
            select(
                incidents.c.id,
                incidents.c.target,
                incidents.c.opened_at,
                incidents.c.resolved_at,
                incidents.c.resolution,
            )
            .where(and_(*conditions))
            .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).all()
            ids = [row.id for row in rows]
            fixed: dict[int, str] = {}
            resolvers: dict[int, str] = {}
            if ids:
                # Status and dry run are checked here, not in SQL: given `status = 'succeeded'`, a
                # database without statistics reads every succeeded run through the status index.
                their_runs = conn.execute(
                    select(
                        runs.c.incident_id,
                        runs.c.playbook,
                        runs.c.playbook_version,
                        runs.c.status,
                        runs.c.dry_run,
                    )
                    .where(runs.c.incident_id.in_(ids))
                    .order_by(runs.c.id)
                )
                for incident_id, playbook, version, status, dry_run in their_runs:
                    if status == RunStatus.succeeded.value and not dry_run:
                        fixed.setdefault(incident_id, f"{playbook}@{version}")
                closed = conn.execute(
                    select(audit_log.c.incident_id, audit_log.c.actor)
                    .where(and_(audit_log.c.incident_id.in_(ids), audit_log.c.kind == "resolved"))
                    .order_by(audit_log.c.id)
                )
                resolvers.update({incident_id: actor for incident_id, actor in closed})
        return [
            PastIncident(
                id=row.id,
                target=row.target,
                opened_at=row.opened_at,
                resolved_at=row.resolved_at,
                resolution=row.resolution,
                fixed_by=fixed.get(row.id),
                resolved_by=resolvers.get(row.id),
            )
            for row in rows
        ]


__all__ = [
    "CATALOG_RELOAD_KEY",
    "POLL_KEY_PREFIX",
    "CatalogHistory",
    "PastIncident",
    "StoredCode",
    "StoredPlaybook",
    "StoredVersion",
]
