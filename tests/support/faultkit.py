"""What the fault tests check against the database itself, and senders that keep posting.

The fault suite asserts promises, not the absence of a crash: after a kill, an outage or a
flood, the rows are read straight from the database (SQLAlchemy Core over the daemon's
tables) and compared with what each sender was told.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, func, select

from engine.store.tables import alerts, events, incidents, runs

__all__ = [
    "Counts",
    "Fingerprint",
    "Senders",
    "counts",
    "fingerprints",
    "half_stored",
    "of_fingerprint",
    "run_rows",
]


@dataclass(frozen=True)
class Counts:
    events: int
    alerts: int
    incidents: int
    runs: int


def _engine(db_url: str) -> Any:
    return create_engine(db_url, pool_pre_ping=True)


def counts(db_url: str) -> Counts:
    """How many events, alerts, incidents and runs the database holds."""
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            values = [
                conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (events, alerts, incidents, runs)
            ]
    finally:
        engine.dispose()
    return Counts(*values)


def fingerprints(db_url: str) -> Counter[str]:
    """How many alert rows each fingerprint has."""
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            return Counter(row[0] for row in conn.execute(select(alerts.c.fingerprint)))
    finally:
        engine.dispose()


def half_stored(db_url: str) -> list[str]:
    """Every way the database is half-stored: an event missing alerts, an incident without its alert."""
    problems: list[str] = []
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            per_event = dict(
                conn.execute(select(alerts.c.event_id, func.count()).group_by(alerts.c.event_id)).all()
            )
            for event_id, expected in conn.execute(select(events.c.id, events.c.alert_count)):
                if per_event.get(event_id, 0) != expected:
                    problems.append(f"event {event_id}: {per_event.get(event_id, 0)} of {expected} alerts")
            orphans = set(per_event) - {row[0] for row in conn.execute(select(events.c.id))}
            problems.extend(f"alerts of missing event {event_id}" for event_id in sorted(orphans))
            with_alerts = {
                row[0]
                for row in conn.execute(select(alerts.c.incident_id).where(alerts.c.incident_id.is_not(None)))
            }
            for (incident_id,) in conn.execute(select(incidents.c.id)):
                if incident_id not in with_alerts:
                    problems.append(f"incident {incident_id} has no alert")
    finally:
        engine.dispose()
    return problems


def run_rows(db_url: str) -> list[dict[str, Any]]:
    """Every run as a dict (id, status, error, incident_id, playbook)."""
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(runs.c.id, runs.c.status, runs.c.error, runs.c.incident_id, runs.c.playbook).order_by(
                    runs.c.id
                )
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def am_body_of(fingerprints_: list[str], alertname: str = "ManualOnly") -> bytes:
    """An Alertmanager body with one firing alert per fingerprint (manual code: no runs)."""
    return orjson.dumps(
        {
            "version": "4",
            "status": "firing",
            "receiver": "suture",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": alertname, "instance": f"host-{fp[:6]}", "job": "node"},
                    "annotations": {"summary": "fault suite"},
                    "startsAt": "2026-11-23T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fp,
                }
                for fp in fingerprints_
            ],
        }
    )


@dataclass
class Outcome:
    fingerprints: list[str]
    status: int | None  # None: no answer (connection refused, reset, timeout)
    error: str = ""


@dataclass
class Senders:
    """Threads posting bodies of `per_body` fresh fingerprints to `url` until stopped.

    Every body and the answer it got is recorded: the oracle for "every 202 is stored".
    """

    url: str
    threads: int = 3
    per_body: int = 3
    pause: float = 0.0
    timeout: float = 10.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Senders:
        for n in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"sender-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=self.timeout + 5)
        with self._lock:
            return list(self.outcomes)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def statuses(self) -> Counter[int | None]:
        return Counter(outcome.status for outcome in self.snapshot())

    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                fps = [uuid.uuid4().hex for _ in range(self.per_body)]
                try:
                    response = client.post(
                        f"{self.url}/api/v1/alerts/alertmanager",
                        content=am_body_of(fps),
                        headers={"content-type": "application/json"},
                    )
                    outcome = Outcome(fps, response.status_code, response.text[:200])
                except httpx.HTTPError as exc:
                    outcome = Outcome(fps, None, repr(exc))
                    time.sleep(0.02)  # a dead daemon: do not spin
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause:
                    time.sleep(self.pause)


@dataclass(frozen=True)
class Fingerprint:
    """What the database holds about one fingerprint: its incidents, alerts and runs."""

    incidents: list[dict[str, Any]]
    alerts: int
    runs: list[dict[str, Any]]
    events: int  # events whose raw body names the fingerprint

    @property
    def statuses(self) -> list[str]:
        return [i["status"] for i in self.incidents]


def of_fingerprint(db_url: str, fingerprint: str) -> Fingerprint:
    """The rows of one fingerprint, so that tests can share a database and still count exactly."""
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                select(incidents.c.id, incidents.c.status, incidents.c.occurrences, incidents.c.resolution)
                .where(incidents.c.fingerprint == fingerprint)
                .order_by(incidents.c.id)
            )
            rows = [dict(row._mapping) for row in found]
            alert_count = conn.execute(
                select(func.count()).select_from(alerts).where(alerts.c.fingerprint == fingerprint)
            ).scalar_one()
            run_list = conn.execute(
                select(runs.c.id, runs.c.status, runs.c.incident_id)
                .join(incidents, runs.c.incident_id == incidents.c.id)
                .where(incidents.c.fingerprint == fingerprint)
                .order_by(runs.c.id)
            )
            run_rows_ = [dict(row._mapping) for row in run_list]
            event_count = conn.execute(
                select(func.count()).select_from(events).where(events.c.body.contains(f'"{fingerprint}"'))
            ).scalar_one()
            return Fingerprint(rows, alert_count, run_rows_, event_count)
    finally:
        engine.dispose()
