"""The ceiling: the least a durable Alertmanager webhook can do on this stack.

A bare FastAPI endpoint under uvicorn (same server settings as `suture serve`) that parses
the body with pydantic and inserts its alerts into SQLite (WAL; `--synchronous`, which the
benchmark sets to Suture's `database.sqlite_synchronous` so both are equally durable) in one
transaction per body, on the event loop (no threadpool hop), then answers 202. No
classification, no incidents, no raw event, no group commit. Suture's ingest rate is
reported as a fraction of this app's rate under the same load.

Run: `python -m bench.ceiling --port 8099 --db /tmp/ceiling.db [--synchronous full|normal]`
"""

from __future__ import annotations

import argparse
import sqlite3
from datetime import UTC, datetime

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at TEXT,
    ends_at TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_alerts_fingerprint ON alerts (fingerprint, starts_at);
"""
INSERT = (
    "INSERT INTO alerts (fingerprint, name, status, labels, annotations, starts_at, ends_at, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class CeilingAlert(BaseModel):
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None  # noqa: N815 - the vendor's field name
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: str


class CeilingBody(BaseModel):
    version: str
    status: str
    receiver: str | None = None
    alerts: list[CeilingAlert] = Field(min_length=1)


def open_db(path: str, synchronous: str = "full") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.executescript(SCHEMA)
    return conn


def create_app(db_path: str, synchronous: str = "full") -> FastAPI:
    app = FastAPI()
    conn = open_db(db_path, synchronous)

    @app.post("/api/v1/alerts/alertmanager", status_code=202)
    async def receive(request: Request) -> Response:
        try:
            body = CeilingBody.model_validate_json(await request.body())
        except ValidationError as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=422, media_type="application/json")
        now = datetime.now(UTC).isoformat()
        rows = [
            (
                a.fingerprint,
                a.labels.get("alertname", ""),
                a.status,
                orjson.dumps(a.labels).decode(),
                orjson.dumps(a.annotations).decode(),
                a.startsAt.isoformat() if a.startsAt else None,
                a.endsAt.isoformat() if a.endsAt else None,
                now,
            )
            for a in body.alerts
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Response(orjson.dumps({"alerts": len(rows)}), status_code=202, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = parser.parse_args()
    app = create_app(args.db, args.synchronous)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
