"""The history the guard rails of one intake batch look back on, read once before its write.

Each read happens only when some code of the batch (or config's `automation:`) asks for it, so
a batch of codes that limit nothing reads nothing here. The decisions are engine.policy's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, or_, select

from engine.models import IncidentStatus, RunStatus
from engine.store.tables import incidents, runs, state

_CHUNK = 400  # bound parameters per IN (...) list
#: The state key that says a storm of a code was announced (and not yet over).
STORM_KEY = "storm:"


@dataclass(frozen=True, slots=True)
class GuardQuery:
    """What a batch needs: per code its storm window, per fingerprint its flapping window, the
    fleet's last minute, and per target the per-target budget's window."""

    storm: Mapping[str, timedelta] = field(default_factory=dict)
    flapping: Mapping[str, timedelta] = field(default_factory=dict)
    fleet: timedelta | None = None
    targets: Collection[str] = ()
    target_window: timedelta | None = None

    @property
    def empty(self) -> bool:
        return not (self.storm or self.flapping or self.fleet or (self.targets and self.target_window))


@dataclass(frozen=True, slots=True)
class GuardFacts:
    #: Open incidents per code opened within its storm window.
    storm: dict[str, int] = field(default_factory=dict)
    #: Codes whose storm was announced and has not subsided since.
    storm_announced: frozenset[str] = frozenset()
    #: Per fingerprint, when its incidents opened or were heard resolved within its flapping window.
    changes: dict[str, list[datetime]] = field(default_factory=dict)
    #: When runs were queued across the fleet within the fleet window.
    fleet: list[datetime] = field(default_factory=list)
    #: Per target, when runs were queued on it within the per-target window.
    target_runs: dict[str, list[datetime]] = field(default_factory=dict)


NO_FACTS = GuardFacts()


def _chunks(values: Collection[str]) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


def read_guard_facts(conn: Connection, query: GuardQuery, now: datetime) -> GuardFacts:
    storm: dict[str, int] = {}
    announced: set[str] = set()
    if query.storm:
        for code, within in query.storm.items():
            storm[code] = int(
                conn.execute(
                    select(func.count())
                    .select_from(incidents)
                    .where(
                        and_(
                            incidents.c.code == code,
                            incidents.c.opened_at >= now - within,
                            incidents.c.status == IncidentStatus.open.value,
                        )
                    )
                ).scalar_one()
            )
        keys = [STORM_KEY + code for code in query.storm]
        announced = {
            key[len(STORM_KEY) :]
            for key in conn.execute(select(state.c.key).where(state.c.key.in_(keys))).scalars()
        }
    changes: dict[str, list[datetime]] = {}
    if query.flapping:
        since = now - max(query.flapping.values())
        resolved = incidents.c.status == IncidentStatus.resolved.value
        for part in _chunks(query.flapping.keys()):
            # A resolution is a change when it was heard (`last_seen` of a resolved incident),
            # not at the `endsAt` the monitoring system reports, which may be long before.
            rows = conn.execute(
                select(incidents.c.fingerprint, incidents.c.opened_at, resolved, incidents.c.last_seen).where(
                    and_(
                        incidents.c.fingerprint.in_(part),
                        or_(incidents.c.opened_at >= since, and_(resolved, incidents.c.last_seen >= since)),
                    )
                )
            )
            for fingerprint, opened_at, was_resolved, heard in rows:
                times = changes.setdefault(fingerprint, [])
                times += [
                    at
                    for at in (opened_at, heard if was_resolved else None)
                    if at is not None and at >= since
                ]
    fleet: list[datetime] = []
    if query.fleet:
        fleet = list(
            conn.execute(
                select(runs.c.queued_at).where(
                    and_(
                        runs.c.queued_at >= now - query.fleet,
                        runs.c.status != RunStatus.skipped.value,
                        runs.c.shadow.is_(False),
                    )
                )
            ).scalars()
        )
    target_runs: dict[str, list[datetime]] = {}
    if query.targets and query.target_window:
        for part in _chunks(query.targets):
            pairs = conn.execute(
                select(incidents.c.target, runs.c.queued_at)
                .join(incidents, runs.c.incident_id == incidents.c.id)
                .where(
                    and_(
                        runs.c.queued_at >= now - query.target_window,
                        runs.c.status != RunStatus.skipped.value,
                        runs.c.shadow.is_(False),
                        incidents.c.target.in_(part),
                    )
                )
            )
            for target, queued_at in pairs:
                target_runs.setdefault(target, []).append(queued_at)
    return GuardFacts(storm, frozenset(announced), changes, fleet, target_runs)
