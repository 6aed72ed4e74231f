"""Duplicate, out-of-order and concurrent delivery through the real daemon, on SQLite and PostgreSQL.

Two `suture serve` replicas share one database per backend for the whole module; each test uses
its own fingerprints and reads that fingerprint's rows straight from the database.

Already proven elsewhere (not repeated here): three sequential redeliveries only bump counters
(tests/e2e/test_intake_e2e.py::test_repeated_alert_only_bumps_counters); a redelivered firing after
its resolution stays resolved and a new startsAt recurs
(::test_late_firing_does_not_reopen_but_new_start_recurs); a resolved alert never seen firing
opens nothing (::test_resolved_only_alert_starts_nothing).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import orjson
import pytest

from tests.conftest import DaemonProcess, free_port, throwaway_database, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.faultkit import half_stored, of_fingerprint

T0 = "2026-11-23T09:00:00Z"
T1 = "2026-11-23T10:00:00Z"
T1_END = "2026-11-23T10:05:00Z"


@dataclass
class Site:
    db_url: str
    replicas: list[DaemonProcess]

    @property
    def daemon(self) -> DaemonProcess:
        return self.replicas[0]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Two replicas of the daemon on one fresh database."""
    folder = tmp_path_factory.mktemp(f"delivery-{request.param}")
    for db_url in throwaway_database(request.param, folder):
        replicas: list[DaemonProcess] = []
        try:
            for n in range(2):
                port = free_port()
                config = write_config(folder / f"replica{n}", db_url, port=port, server={"intake_helpers": 0})
                replicas.append(DaemonProcess(config, port).start())
            yield Site(db_url, replicas)
        finally:
            for replica in replicas:
                replica.stop()


def _fp() -> str:
    return f"dlv-{uuid.uuid4().hex[:12]}"


def _post_all(urls: list[str], bodies: list[bytes]) -> list[int]:
    """POST every body at once (a barrier releases them together), round-robin over `urls`."""
    barrier = threading.Barrier(len(bodies))

    def send(index: int) -> int:
        with httpx.Client(timeout=30) as client:
            barrier.wait(timeout=30)
            response = client.post(
                f"{urls[index % len(urls)]}/api/v1/alerts/alertmanager",
                content=bodies[index],
                headers={"content-type": "application/json"},
            )
            return response.status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, range(len(bodies))))


def _same_body_twenty_times(site: Site, replicas: int, hold: Iterator[None] | None = None) -> None:
    fingerprint = _fp()
    body = orjson.dumps(am_body(am_alert(fingerprint=fingerprint, starts_at=T1)))
    urls = [d.url for d in site.replicas[:replicas]]
    statuses = []
    if hold is not None:
        # One body per replica while the hold lines up their transactions, then the rest.
        with ThreadPoolExecutor(1) as background:
            posted = background.submit(_post_all, urls, [body] * replicas)
            next(hold, None)
            statuses += posted.result()
    statuses += _post_all(urls, [body] * (20 - len(statuses)))
    assert statuses == [202] * 20
    rows = of_fingerprint(site.db_url, fingerprint)
    assert [(i["status"], i["occurrences"]) for i in rows.incidents] == [("open", 20)]
    assert (rows.events, rows.alerts) == (20, 20)
    wait_for(
        lambda: [r["status"] for r in of_fingerprint(site.db_url, fingerprint).runs] == ["succeeded"],
        timeout=20,
    )
    [run] = of_fingerprint(site.db_url, fingerprint).runs
    assert len(site.daemon.get(f"/api/v1/runs/{run['id']}")["steps"]) == 1  # executed once


def _incidents_held_until_both_wait(db_url: str) -> Iterator[None]:
    """Hold PostgreSQL's incidents table against writes until two intake transactions queue on it.

    Plain SELECTs still pass, so each replica looks up the fingerprint and finds no open incident;
    the first blocks on its INSERT, the second on the gates lock the first holds to its commit
    (engine.store.replicas.GATES_LOCK) and then meets the first's incident at its own INSERT: the
    overlap that production traffic produces now and then, every time.
    """
    import psycopg

    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE incidents IN EXCLUSIVE MODE")
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND (query LIKE 'INSERT INTO incidents%' OR query LIKE 'SELECT pg_advisory_xact_lock%')"
        )
        with psycopg.connect(dsn, autocommit=True) as probe:
            wait_for(lambda: probe.execute(waiting).fetchone()[0] >= 2, timeout=20, interval=0.05)  # type: ignore[index]
        conn.commit()
    yield


def test_same_body_twenty_times_at_once_opens_one_incident_and_one_run(site: Site) -> None:
    """20 simultaneous deliveries of one firing body: 20 x 202, one incident with 20 occurrences,
    20 events, exactly one run, executed once."""
    _same_body_twenty_times(site, replicas=1)


def test_same_body_twenty_times_over_two_replicas(site: Site) -> None:
    """The same, split over two replicas whose lookups overlap: each alert opens at most one incident
    and both replicas answer 202 (on SQLite the cross-process write lock orders them; on PostgreSQL
    the loser of the insert race applies its batch again and counts on the winner's incident)."""
    if site.db_url.startswith("sqlite"):
        _same_body_twenty_times(site, replicas=2)
        return
    _same_body_twenty_times(site, replicas=2, hold=_incidents_held_until_both_wait(site.db_url))


def test_resolved_then_late_firing_of_same_instance_opens_nothing(site: Site) -> None:
    """Out of order: the resolution arrives first, then the firing of the same (fingerprint, startsAt):
    the instance is over, so no open incident and no run."""
    fingerprint = _fp()
    resolved = am_alert(fingerprint=fingerprint, status="resolved", starts_at=T1, ends_at=T1_END)
    assert site.daemon.post("alertmanager", am_body(resolved)).status_code == 202
    late = am_alert(fingerprint=fingerprint, starts_at=T1)
    assert site.daemon.post("alertmanager", am_body(late)).status_code == 202
    rows = of_fingerprint(site.db_url, fingerprint)
    assert "open" not in rows.statuses, rows
    assert rows.runs == []
    assert rows.alerts == 2  # both deliveries are kept for audit


def test_late_firing_with_older_starts_at_does_not_reopen(site: Site) -> None:
    """Fire at T1, resolve, then a firing that started before T1 arrives late: nothing reopens or runs."""
    fingerprint = _fp()
    daemon = site.daemon
    assert (
        daemon.post("alertmanager", am_body(am_alert(fingerprint=fingerprint, starts_at=T1))).status_code
        == 202
    )
    resolved = am_alert(fingerprint=fingerprint, status="resolved", starts_at=T1, ends_at=T1_END)
    assert daemon.post("alertmanager", am_body(resolved)).status_code == 202
    assert (
        daemon.post("alertmanager", am_body(am_alert(fingerprint=fingerprint, starts_at=T0))).status_code
        == 202
    )
    rows = of_fingerprint(site.db_url, fingerprint)
    assert rows.statuses == ["resolved"], rows
    assert len(rows.runs) == 1


def test_resolved_delivery_of_an_older_instance_starts_no_run(site: Site) -> None:
    """While an instance is open, a resolved alert of the same fingerprint (older startsAt) closes the
    incident and queues nothing; its redelivery changes nothing but the alert count."""
    fingerprint = _fp()
    daemon = site.daemon
    assert (
        daemon.post("alertmanager", am_body(am_alert(fingerprint=fingerprint, starts_at=T1))).status_code
        == 202
    )
    older = am_body(am_alert(fingerprint=fingerprint, status="resolved", starts_at=T0, ends_at=T1_END))
    for _ in range(2):
        answer = daemon.post("alertmanager", older)
        assert answer.status_code == 202 and answer.json()["runs_queued"] == []
    rows = of_fingerprint(site.db_url, fingerprint)
    assert rows.statuses == ["resolved"] and len(rows.runs) == 1 and rows.alerts == 3


def test_concurrent_firing_and_resolving_of_many_fingerprints(site: Site) -> None:
    """30 fingerprints fire and then resolve, spread over both replicas and all at once: 30 incidents,
    all resolved, each with both alerts and one run (the resolutions start none)."""
    names = [_fp() for _ in range(30)]

    def lifecycle(index: int) -> tuple[int, int]:
        fingerprint = names[index]
        daemon = site.replicas[index % 2]
        fire = daemon.post("alertmanager", am_body(am_alert(fingerprint=fingerprint, starts_at=T1)))
        end = am_alert(fingerprint=fingerprint, status="resolved", starts_at=T1, ends_at=T1_END)
        resolve = site.replicas[(index + 1) % 2].post("alertmanager", am_body(end))
        return fire.status_code, resolve.status_code

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(lifecycle, range(len(names)))) == {(202, 202)}
    for fingerprint in names:
        rows = of_fingerprint(site.db_url, fingerprint)
        assert [(i["status"], i["resolution"]) for i in rows.incidents] == [("resolved", "alert_resolved")], (
            rows
        )
        assert (rows.events, rows.alerts, len(rows.runs)) == (2, 2, 1), (fingerprint, rows)
    assert half_stored(site.db_url) == []
