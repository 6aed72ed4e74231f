"""The PostgreSQL ceiling: the least a durable Alertmanager webhook can do on this stack.

bench/ceiling.py's app on PostgreSQL: a bare FastAPI endpoint under uvicorn (same server
settings as `suture serve`) that parses the body with the same pydantic models and stores it in
one transaction per body (no group commit, like ceiling.py): one `events` row with the raw body
and one `alerts` row per alert, written by a single statement and committed with the server's
default durability (synchronous_commit=on: the 202 leaves after the commit is flushed). The
database allows writers side by side, so requests take turns only for a connection of a small
pool (`--connections`), not for the database. No classification, no incidents. Suture's ingest
rate on PostgreSQL is reported as a fraction of this app's rate under the same load.

Run: `python -m bench.ceiling_pg --port 8099 --dsn "host=127.0.0.1 user=postgres dbname=x"`
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
import psycopg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from bench.ceiling import CeilingBody

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    body TEXT NOT NULL,
    alert_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events (id),
    fingerprint TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    labels JSONB NOT NULL,
    annotations JSONB NOT NULL,
    starts_at TIMESTAMPTZ,
    ends_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_alerts_fingerprint ON alerts (fingerprint, starts_at);
"""
# One round trip per body: the event row, then its alerts from parallel arrays.
INSERT = """
WITH event AS (
    INSERT INTO events (source, received_at, body, alert_count)
    VALUES ('alertmanager', %(now)s, %(body)s, %(count)s) RETURNING id
)
INSERT INTO alerts (event_id, fingerprint, name, status, labels, annotations, starts_at, ends_at, received_at)
SELECT event.id, a.fingerprint, a.name, a.status, a.labels::jsonb, a.annotations::jsonb, a.starts_at,
       a.ends_at, %(now)s
FROM event, unnest(
    %(fingerprints)s::text[], %(names)s::text[], %(statuses)s::text[], %(labels)s::text[],
    %(annotations)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]
) AS a (fingerprint, name, status, labels, annotations, starts_at, ends_at)
"""


def create_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


def create_app(dsn: str, connections: int = 8) -> FastAPI:
    pool: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        opened = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(connections)]
        for conn in opened:
            pool.put_nowait(conn)
        try:
            yield
        finally:
            for conn in opened:
                await conn.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/alerts/alertmanager", status_code=202)
    async def receive(request: Request) -> Response:
        raw = await request.body()
        try:
            body = CeilingBody.model_validate_json(raw)
        except ValidationError as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=422, media_type="application/json")
        alerts = body.alerts
        params = {
            "now": datetime.now(UTC),
            "body": raw.decode(),
            "count": len(alerts),
            "fingerprints": [a.fingerprint for a in alerts],
            "names": [a.labels.get("alertname", "") for a in alerts],
            "statuses": [a.status for a in alerts],
            "labels": [orjson.dumps(a.labels).decode() for a in alerts],
            "annotations": [orjson.dumps(a.annotations).decode() for a in alerts],
            "starts": [a.startsAt for a in alerts],
            "ends": [a.endsAt for a in alerts],
        }
        conn = await pool.get()
        try:
            await conn.execute(INSERT, params)  # autocommit: committed (and flushed) on return
        finally:
            pool.put_nowait(conn)
        return Response(orjson.dumps({"alerts": len(alerts)}), status_code=202, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    create_schema(args.dsn)
    app = create_app(args.dsn, args.connections)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
