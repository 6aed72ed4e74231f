"""`/openapi.json` of the app `suture serve` builds: every read and every POST answer has a response
schema, every error one shape (`ErrorBody`), and the examples shown are valid records.

The app comes from the daemon's own composition root (`Daemon.app()`, fast path in front) over a
migrated SQLite file, asked through ASGI; nothing listens on a port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import records
from engine.config import load_config
from engine.daemon import Daemon
from engine.models import RunStatus
from tests.conftest import write_config

ERROR_REF = "#/components/schemas/ErrorBody"
#: Answers that are not JSON by design.
NOT_JSON = {("get", "/metrics")}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("openapi")
    config = load_config(str(write_config(folder, f"sqlite:///{folder / 'suture.db'}")))
    daemon = Daemon(config)
    try:
        yield asyncio.run(_get_json(daemon.app(), "/openapi.json"))
    finally:
        daemon.db.dispose()


async def _get_json(app: Any, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://suture") as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if (method, path) not in NOT_JSON
    ]


def _json_schema(response: dict[str, Any]) -> dict[str, Any] | None:
    schema: dict[str, Any] | None = response.get("content", {}).get("application/json", {}).get("schema")
    return schema


def test_every_read_endpoint_declares_its_answer(document: dict[str, Any]) -> None:
    """Each GET documents its 200 body as a named schema, so clients can be generated from it."""
    schemas = document["components"]["schemas"]
    reads = [(path, op) for method, path, op in _operations(document) if method == "get"]
    assert {"/api/v1/incidents", "/api/v1/incidents/{incident_id}", "/api/v1/runs", "/healthz"} <= {
        path for path, _ in reads
    }
    for path, operation in reads:
        schema = _json_schema(operation["responses"]["200"])
        assert schema is not None and "$ref" in schema, f"GET {path} has no response schema"
        assert schema["$ref"].rsplit("/", 1)[-1] in schemas, f"GET {path}: {schema['$ref']} is not defined"


def test_every_post_declares_its_success_answer(document: dict[str, Any]) -> None:
    """Approve, reject and every alert endpoint document the body of their 2xx answer."""
    posts = [(path, op) for method, path, op in _operations(document) if method == "post"]
    assert {"/api/v1/runs/{run_id}/approve", "/api/v1/alerts/alertmanager"} <= {path for path, _ in posts}
    for path, operation in posts:
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert successes, f"POST {path} documents no success"
        for status in successes:
            assert _json_schema(operation["responses"][status]) is not None, f"POST {path} {status}"


def test_every_error_answer_has_one_shape(document: dict[str, Any]) -> None:
    """Every documented 4xx and 5xx is `{"error", "field"?}`, whichever endpoint answers it."""
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert _json_schema(response) == {"$ref": ERROR_REF}, f"{method.upper()} {path} {status}"
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    assert set(error["properties"]) == {"error", "field"}


@pytest.mark.parametrize(
    "record",
    [
        records.Incident,
        records.IncidentDetail,
        records.IncidentAlert,
        records.AuditEntry,
        records.Run,
        records.RunDetail,
        records.StepResult,
        records.ReceiptAnswer,
    ],
)
def test_the_examples_shown_are_valid_records(document: dict[str, Any], record: type[records.Record]) -> None:
    """The examples in the document are records the API could answer, not stale sketches."""
    examples = document["components"]["schemas"][record.__name__]["examples"]
    assert examples
    for example in examples:
        assert record.model_validate(example).model_dump(mode="json") == example


def test_the_api_writes_times_as_utc_with_z(tmp_path: Path) -> None:
    """Times in answers are ISO 8601 UTC ending in `Z`, as the CLI's `--json` prints them."""
    config = load_config(str(write_config(tmp_path, f"sqlite:///{tmp_path / 'suture.db'}")))
    daemon = Daemon(config)
    try:
        run_id = daemon.store.create_manual_run("noop", 1, {}, dry_run=True, status=RunStatus.queued)
        run = asyncio.run(_get_json(daemon.app(), f"/api/v1/runs/{run_id}"))
    finally:
        daemon.db.dispose()
    assert run["queued_at"].endswith("Z") and "+00:00" not in run["queued_at"]
    assert tuple(run) == records.RunDetail.field_names()
