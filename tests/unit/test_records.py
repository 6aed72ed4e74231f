"""The read models keep the public JSON: field order, UTC times with `Z`, and the same bytes whether
the API (pydantic's serializer) or the CLI (`--json`, orjson) writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.cli.common import dump
from engine.records import (
    AuditEntry,
    ClaimedRun,
    Incident,
    IncidentAlert,
    IncidentDetail,
    Record,
    Run,
    RunDetail,
    StepResult,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 1, 12, 0, 5, 120, tzinfo=UTC)

INCIDENT = {
    "id": 3,
    "code": "DISK-001",
    "title": "Disk «full»",
    "status": "open",
    "severity": "high",
    "target": "db-1",
    "source": "alertmanager",
    "fingerprint": "fp3",
    "alertname": "DiskFull",
    "occurrences": 2,
    "opened_at": T0,
    "last_seen": T1,
    "resolved_at": None,
    "resolution": None,
    "due_at": T1,
    "remediated_at": None,
    "respond_by": T1,
    "acknowledged_at": None,
    "acknowledged_by": None,
    "escalated_at": None,
    "flapping": False,
    "silenced_by": None,
}
RUN = {
    "id": 7,
    "incident_id": 3,
    "playbook": "disk-cleanup",
    "playbook_version": 2,
    "status": "failed",
    "trigger": "auto",
    "dry_run": False,
    "queued_at": T0,
    "started_at": T1,
    "finished_at": T1,
    "error": "boom",
    "reason": None,
    "effective": None,
    "worker": "host:1:boot",
    "shadow": False,
}
STEP = {
    "seq": 1,
    "name": "usage before",
    "phase": "steps",
    "action": "ssh",
    "status": "failed",
    "params": {"command": "df -h", "sudo": False, "n": 1.5},
    "exit_code": 1,
    "http_status": None,
    "stdout": "Use%\n 93%\n",
    "stderr": "ü",
    "error": "exit 1",
    "started_at": T1,
    "duration_ms": 180,
    "attempt": 1,
}
ALERT = {
    "id": 11,
    "event_id": 5,
    "source": "alertmanager",
    "name": "DiskFull",
    "status": "firing",
    "fingerprint": "fp3",
    "starts_at": T0,
    "ends_at": None,
    "received_at": T1,
    "labels": {"instance": "db-1:9100"},
    "annotations": {},
}
ENTRY = {"at": T1, "kind": "run_failed", "message": "run 7 failed: boom", "actor": "suture", "run_id": 7}


def _detail() -> IncidentDetail:
    return IncidentDetail.trusted(
        {
            **INCIDENT,
            "labels": {"instance": "db-1:9100"},
            "annotations": {"summary": "x"},
            "alerts": [IncidentAlert.trusted(dict(ALERT))],
            "runs": [Run.trusted(dict(RUN))],
            "timeline": [AuditEntry.trusted(dict(ENTRY))],
        }
    )


def test_public_fields_keep_their_names_and_order() -> None:
    """`incidents list`, `runs list` and step JSON keep the keys scripts read, in today's order."""
    assert Incident.field_names() == tuple(INCIDENT)
    assert Run.field_names() == tuple(RUN)
    assert StepResult.field_names() == tuple(STEP)
    shown = IncidentDetail.field_names()[len(INCIDENT) :]
    assert shown == ("labels", "annotations", "alerts", "runs", "notes", "timeline", "knowledge", "previous")
    assert RunDetail.field_names()[-1] == "steps"


@pytest.mark.parametrize(
    ("record", "values"),
    [(Incident, INCIDENT), (Run, RUN), (StepResult, STEP), (IncidentAlert, ALERT), (AuditEntry, ENTRY)],
)
def test_a_trusted_record_equals_a_validated_one(record: type[Record], values: dict[str, Any]) -> None:
    """What the store builds without validation is the record validation would have built."""
    assert record.trusted(dict(values)) == record.model_validate(values)


def test_records_are_frozen() -> None:
    """A record read from the store cannot be changed by whoever holds it."""
    run = Run.trusted(dict(RUN))
    with pytest.raises(ValueError, match="frozen"):
        run.status = "succeeded"  # type: ignore[misc]


def test_the_cli_writes_the_json_the_api_answers(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints, indented, exactly what pydantic's serializer gives the API."""
    detail = _detail()
    dump(detail)
    printed = capsys.readouterr().out
    answered = orjson.loads(detail.model_dump_json())
    assert printed == orjson.dumps(answered, option=orjson.OPT_INDENT_2).decode() + "\n"
    assert answered["opened_at"] == "2026-12-01T12:00:00Z"
    assert answered["last_seen"] == "2026-12-01T12:00:05.000120Z"


def test_a_list_prints_as_an_array_of_records(capsys: pytest.CaptureFixture[str]) -> None:
    """`runs list --json`: one JSON array, newest first as given, each run with its fields."""
    dump([Run.trusted(dict(RUN)), Run.trusted({**RUN, "id": 6})])
    assert [run["id"] for run in orjson.loads(capsys.readouterr().out)] == [7, 6]


def test_a_claimed_run_carries_its_context() -> None:
    """The worker's run carries the template context it executes against."""
    run = ClaimedRun.trusted({**RUN, "context": {"target": "db-1"}, "attempt": 1})
    assert (run.id, run.context) == (7, {"target": "db-1"})
