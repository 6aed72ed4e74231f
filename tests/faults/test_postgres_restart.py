"""PostgreSQL stopped and started under load, on a private cluster (never the machine's shared one).

Senders post continuously while the server is killed (`pg_ctl -m immediate`) for a few seconds
and started again. The promise: a 202 only for what is committed, 503 (and nothing else) while
it cannot be, recovery without a daemon restart, and every accepted alert stored exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.payloads import am_alert, am_body
from tests.support.faultkit import Senders, counts, fingerprints, half_stored
from tests.support.pgcluster import PgCluster, initdb_path, private_postgres

OUTAGE_SECONDS = 3.0


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    if initdb_path() is None:
        pytest.skip("PostgreSQL's initdb is not installed: cannot start a private cluster to stop")
    with private_postgres() as cluster:
        yield cluster


def test_postgres_outage_under_load_answers_503_then_recovers(daemon_factory: Any, pg: PgCluster) -> None:
    """PG killed under load: only 202/503, 202s resume without restart, every 202 stored exactly once."""
    daemon = daemon_factory(pg.url, workers={"concurrency": 2, "poll_interval": "500ms"})
    senders = Senders(daemon.url, threads=3, per_body=2, pause=0.01).start()
    try:
        wait_for(lambda: senders.statuses()[202] >= 20, timeout=20)
        pg.stop("immediate")
        down_from = len(senders.snapshot())
        time.sleep(OUTAGE_SECONDS)
        during = senders.snapshot()[down_from:]
        pg.start()
        back_from = len(senders.snapshot())
        # Recovers by itself: new bodies are committed again, no restart of the daemon.
        wait_for(lambda: Counter(o.status for o in senders.snapshot()[back_from:])[202] >= 20, timeout=30)
    finally:
        outcomes = senders.stop()
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died with its database"

    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {202, 503}, f"answers other than 202/503: {statuses}; {outcomes[-1]}"
    during_statuses = Counter(o.status for o in during)
    assert during_statuses[503] > 0, f"no 503 while PostgreSQL was down: {during_statuses}"
    for outcome in during:
        if outcome.status == 503:
            assert "retry" in outcome.error, outcome.error

    stored = fingerprints(pg.url)
    accepted = [fp for o in outcomes if o.status == 202 for fp in o.fingerprints]
    missing = [fp for fp in accepted if stored[fp] != 1]
    assert not missing, (
        f"{len(missing)} alerts answered 202 but stored {[stored[fp] for fp in missing[:5]]} times"
    )
    # A 503 may be ambiguous (the commit may have landed as the connection died), never doubled.
    assert max(stored.values()) == 1
    assert half_stored(pg.url) == []
    total = counts(pg.url)
    assert total.alerts == sum(stored.values()) and total.incidents == total.alerts
    # The workers rode out the outage too: a run queued now is claimed and finishes.
    response = daemon.post("alertmanager", am_body(am_alert(fingerprint="after-outage")))
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs_queued"]
    wait_for(lambda: daemon.get(f"/api/v1/runs/{run_id}")["status"] == "succeeded", timeout=30, interval=0.2)
    assert "Exception in thread" not in daemon.log(), "a daemon thread died during the outage"
