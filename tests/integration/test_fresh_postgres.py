"""A PostgreSQL database intake meets fresh: the schema is analyzed once migrated, and the open
incident lookup probes the partial unique index per fingerprint, whatever the statistics say."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from engine.store import open_database
from engine.store.ingest import _LATEST, _OPEN_BY_FINGERPRINT
from tests.conftest import PG_DATABASES


@pytest.fixture
def fresh() -> Iterator[str]:
    """A psycopg DSN of an empty database that `open_database(upgrade=True)` just migrated."""
    name = PG_DATABASES.create_empty()
    try:
        open_database(PG_DATABASES.url(name), upgrade=True).dispose()
        yield PG_DATABASES.url(name).replace("postgresql+psycopg://", "postgresql://")
    finally:
        PG_DATABASES.drop(name)


def test_migrating_a_fresh_database_analyzes_it(fresh: str) -> None:
    with psycopg.connect(fresh, autocommit=True) as conn:
        analyzed = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
            " AND relname IN ('incidents', 'alerts', 'runs')"
        ).fetchall()
    assert sorted(name for (name,) in analyzed) == ["alerts", "incidents", "runs"]


def test_the_open_lookup_of_a_long_batch_probes_the_partial_index_on_unanalyzed_rows(fresh: str) -> None:
    """20,000 open incidents written after the (empty) analyze, a 400-fingerprint batch: an index
    probe per fingerprint, never a scan of the open incidents."""
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO incidents (code, title, status, severity, target, source, fingerprint,"
            " alertname, starts_at, labels, annotations, occurrences, opened_at, last_seen, due_at,"
            " respond_by, flapping)"
            " SELECT 'DISK-001', 't', 'open', 'high', 'db-' || g, 'alertmanager', md5(g::text), 'a', now(),"
            " '{}', '{}', 1, now(), now(), now(), now(), false FROM generate_series(1, 20000) AS g"
        )
        fingerprints = [f"{n:016x}" for n in range(400)]

        def plan(statement: str) -> str:
            sql = f"EXPLAIN {statement.replace(':fingerprints', '%s')}"
            return " ".join(str(row[0]) for row in conn.execute(sql.encode(), [fingerprints]))

        open_plan, latest_plan = plan(_OPEN_BY_FINGERPRINT.text), plan(_LATEST.text)
    assert "Index Scan using uq_incidents_open_fingerprint" in open_plan, open_plan
    assert "Seq Scan on incidents" not in open_plan and "Bitmap" not in open_plan, open_plan
    # The newest startsAt per fingerprint: the last entry of the (fingerprint, starts_at) index.
    assert "ix_incidents_fingerprint_starts_at" in latest_plan, latest_plan
    assert "Seq Scan on incidents" not in latest_plan, latest_plan
