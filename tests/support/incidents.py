"""An open incident inserted straight into the store, for tests about what reads it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Connection, insert

from engine.store.tables import incidents


def open_incident(conn: Connection, at: datetime, code: str = "DISK-001", target: str = "db-1") -> int:
    """An open incident of `code` on `target`, opened at `at`; its id."""
    return int(
        conn.execute(
            insert(incidents)
            .values(
                code=code,
                title="t",
                status="open",
                severity="high",
                target=target,
                source="alertmanager",
                fingerprint=uuid.uuid4().hex,
                alertname="A",
                labels={},
                annotations={},
                occurrences=1,
                opened_at=at,
                last_seen=at,
            )  # fmt: skip
            .returning(incidents.c.id)
        ).scalar_one()
    )
