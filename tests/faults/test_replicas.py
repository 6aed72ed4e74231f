"""Three `suture serve` replicas on one fresh PostgreSQL database, through the real daemons.

One module, one set of replicas, in the order a deployment meets it: they start together on an
empty database; a poll every second is made about once a second in all, and still after a replica
is killed; a storm posted alternately to two replicas opens one incident per fingerprint and runs
each playbook once (counted on the HTTP target); a replica paused past its lease (SIGSTOP) is
taken over and, resumed, writes nothing and runs no further step; a replica killed mid-run has
its run recovered by another after the lease. The lease is 2 s so that all of it takes seconds.

Proven elsewhere: the same alert to two replicas at once, both 202 and one incident
(tests/faults/test_delivery_faults.py); PostgreSQL restarted under load, 503s while it is down
and nothing lost (tests/faults/test_postgres_restart.py).
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.conftest import PG_DATABASES, DaemonProcess, free_port, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer, respond, running_http_server, slow

LEASE_SECONDS = 2
CODES = """
- code: HIT-001
  title: One HTTP step on the target
  severity: low
  match: {alertname: ReplicaHit}
  target: "{{ labels.instance }}"
  playbook: hit
  mode: auto
- code: PAUSE-001
  title: A slow first step, then a second
  severity: low
  match: {alertname: ReplicaPause}
  target: "{{ labels.instance }}"
  playbook: two-steps
  mode: auto
"""
PLAYBOOKS = {
    "hit": """
name: hit
version: 1
idempotent: true
steps:
  - name: hit
    http: {method: POST, url: "{{ annotations.hook }}/hit", json: {incident: "{{ incident.id }}"}}
""",
    "two-steps": """
name: two-steps
version: 1
idempotent: true
timeout: 60s
steps:
  - name: slow
    timeout: 30s
    http: {method: POST, url: "{{ annotations.hook }}/{{ labels.instance }}/slow"}
  - name: second
    http: {method: POST, url: "{{ annotations.hook }}/{{ labels.instance }}/second"}
""",
}


@dataclass
class Site:
    dsn: str
    target: TestHttpServer
    replicas: list[DaemonProcess]

    def alive(self) -> list[DaemonProcess]:
        return [r for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(sql.encode(), args).fetchall()  # type: ignore[arg-type]

    def holder(self, run_id: int) -> DaemonProcess:
        """The replica whose worker holds the run (runs.worker is host:pid:boot:thread)."""
        [(worker,)] = self.rows("SELECT worker FROM runs WHERE id = %s", run_id)
        pid = int(str(worker).split(":")[1])
        [replica] = [r for r in self.replicas if r.proc is not None and r.proc.pid == pid]
        return replica

    def hits(self, path: str) -> int:
        return sum(1 for request in self.target.requests if request.path == path)


def _catalog(folder: Path) -> Path:
    (folder / "codes").mkdir(parents=True)
    (folder / "codes" / "replicas.yaml").write_text(CODES)
    (folder / "playbooks").mkdir()
    for name, body in PLAYBOOKS.items():
        (folder / "playbooks" / f"{name}.yaml").write_text(body)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("replicas")
    catalog = _catalog(folder / "catalog")
    name = PG_DATABASES.create_empty()
    url = PG_DATABASES.url(name)
    replicas: list[DaemonProcess] = []
    with running_http_server() as target:
        target.default = respond(200, json=[])  # the polled Alertmanager API: nothing firing
        try:
            for n in range(3):
                port = free_port()
                config = write_config(
                    folder / f"replica{n}",
                    url,
                    port=port,
                    catalog=catalog,
                    server={"intake_helpers": 0},
                    workers={"concurrency": 4, "lease": f"{LEASE_SECONDS}s", "poll_interval": "5s"},
                    pull=[{"name": "am", "kind": "alertmanager", "url": target.url, "interval": "1s"}],
                )
                replicas.append(DaemonProcess(config, port))
            _start_together(replicas)
            yield Site(url.replace("postgresql+psycopg://", "postgresql://"), target, replicas)
        finally:
            for replica in replicas:
                if replica.proc is not None and replica.proc.poll() is None:
                    os.kill(replica.proc.pid, signal.SIGCONT)
                replica.stop()
            PG_DATABASES.drop(name)


def _start_together(replicas: list[DaemonProcess]) -> None:
    """Start every replica at the same moment; each must come up (none exits on a race)."""
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(replicas))

    def start(replica: DaemonProcess) -> None:
        barrier.wait(timeout=10)
        try:
            replica.start(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported below with the replica's log
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not failures, failures


def _post(replica: DaemonProcess, alertname: str, instance: str, hook: str) -> httpx.Response:
    fingerprint = uuid.uuid4().hex[:16]
    alert = am_alert(alertname, fingerprint=fingerprint, instance=instance)
    alert["annotations"]["hook"] = hook
    return replica.post("alertmanager", orjson.dumps(am_body(alert)))


def _run_of(site: Site, instance: str) -> int:
    found = wait_for(
        lambda: site.rows(
            "SELECT r.id FROM runs r JOIN incidents i ON i.id = r.incident_id WHERE i.target = %s", instance
        ),
        timeout=20,
    )
    return int(found[0][0])


def _status(site: Site, run_id: int) -> str:
    [(status,)] = site.rows("SELECT status FROM runs WHERE id = %s", run_id)
    return str(status)


def _polls_in(site: Site, seconds: float) -> int:
    """Polls of the Alertmanager API made by all replicas in a window of `seconds`."""
    before = site.hits("/api/v2/alerts?active=true&silenced=false&inhibited=false")
    threading.Event().wait(seconds)
    return site.hits("/api/v2/alerts?active=true&silenced=false&inhibited=false") - before


def test_replicas_started_together_on_an_empty_database_all_serve_one_schema_and_catalog(site: Site) -> None:
    assert len(site.alive()) == 3
    for replica in site.replicas:
        assert httpx.get(f"{replica.url}/readyz", timeout=5).status_code == 200
    [(revision,)] = site.rows("SELECT version_num FROM alembic_version")
    from engine.store.db import HEAD_REVISION

    assert revision == HEAD_REVISION
    assert sorted(site.rows("SELECT name, version FROM playbook_versions")) == [("hit", 1), ("two-steps", 1)]
    assert sorted(site.rows("SELECT code, version FROM codes")) == [("HIT-001", 1), ("PAUSE-001", 1)]


def test_a_poll_every_second_is_made_about_once_a_second_in_all_and_after_a_replica_dies(site: Site) -> None:
    """Three replicas each tick every second; one of them polls per second. Killed, one of three
    leaves the other two polling at the same pace."""
    wait_for(lambda: _polls_in(site, 1.0) >= 1, timeout=10)  # every replica is ticking
    with_three = _polls_in(site, 6.0)
    assert 4 <= with_three <= 8, with_three
    site.replicas[2].kill()
    with_two = _polls_in(site, 6.0)
    assert 4 <= with_two <= 8, with_two


def test_a_storm_over_two_replicas_opens_one_incident_and_runs_once_per_fingerprint(site: Site) -> None:
    site.target.reset()
    site.target.default = respond(200, json=[])
    first, second = site.alive()[:2]
    count = 40
    for n in range(count):
        assert _post((first, second)[n % 2], "ReplicaHit", f"storm-{n}", site.target.url).status_code == 202
    wait_for(
        lambda: site.rows("SELECT count(*) FROM runs WHERE status = 'succeeded'")[0][0] == count, timeout=60
    )
    incidents = site.rows("SELECT target FROM incidents WHERE code = 'HIT-001'")
    assert sorted(t for (t,) in incidents) == sorted(f"storm-{n}" for n in range(count))
    posted = [orjson.loads(r.body)["incident"] for r in site.target.requests if r.path == "/hit"]
    assert len(posted) == count and len(set(posted)) == count  # each playbook ran once
    workers = {str(w).split(":")[1] for (w,) in site.rows("SELECT worker FROM runs")}
    assert len(workers) == 2, workers  # both replicas' workers took runs (NOTIFY wakes the other)


def _in_slow_step(site: Site, instance: str, slow_seconds: float) -> tuple[int, DaemonProcess]:
    """A PAUSE-001 run on `instance` whose first step is waiting `slow_seconds` on the target:
    its id and the replica holding it."""
    site.target.script(f"/{instance}/slow", [slow(slow_seconds), respond(200)])
    assert _post(site.alive()[0], "ReplicaPause", instance, site.target.url).status_code == 202
    run_id = _run_of(site, instance)
    wait_for(lambda: site.hits(f"/{instance}/slow") == 1, timeout=20)
    return run_id, site.holder(run_id)


def test_a_replica_paused_past_its_lease_is_taken_over_and_resumed_acts_no_more(site: Site) -> None:
    """SIGSTOP the holder while its first step waits on the target; another replica takes the run
    back after the lease and runs both steps; after SIGCONT the paused one stores nothing and
    never calls the second step."""
    instance = "paused-1"
    run_id, paused = _in_slow_step(site, instance, 3.0)
    assert paused.proc is not None
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: _status(site, run_id) == "succeeded", timeout=30)
        [(worker, attempt)] = site.rows("SELECT worker, attempt FROM runs WHERE id = %s", run_id)
        assert str(worker).split(":")[1] != str(paused.proc.pid) and attempt == 2
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    wait_for(lambda: "lease_lost" in paused.log(), timeout=20)
    assert site.hits(f"/{instance}/slow") == 2 and site.hits(f"/{instance}/second") == 1
    steps = site.rows("SELECT name, status FROM step_results WHERE run_id = %s ORDER BY id", run_id)
    assert steps == [("slow", "succeeded"), ("second", "succeeded")]
    [(status, worker_after)] = site.rows("SELECT status, worker FROM runs WHERE id = %s", run_id)
    assert (status, worker_after) == ("succeeded", worker)


def test_a_replica_killed_mid_run_has_its_run_recovered_by_another_after_the_lease(site: Site) -> None:
    instance = "killed-1"
    run_id, killed = _in_slow_step(site, instance, 30.0)
    killed.kill()
    wait_for(lambda: _status(site, run_id) == "succeeded", timeout=30)
    [(worker, attempt)] = site.rows("SELECT worker, attempt FROM runs WHERE id = %s", run_id)
    assert killed.proc is not None and str(worker).split(":")[1] != str(killed.proc.pid)
    assert attempt == 2 and site.hits(f"/{instance}/second") == 1
    kinds = [k for (k,) in site.rows("SELECT kind FROM audit_log WHERE run_id = %s ORDER BY id", run_id)]
    assert "run_requeued" in kinds
