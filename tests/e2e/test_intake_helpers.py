"""Intake helper processes, through the real daemon: forwarded bodies are committed, answered,
counted and remediated exactly as the daemon's own; a dead helper loses nothing; reloads reach it.

`server.intake_helpers_above: 0` starts the helper at the first webhook instead of under load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ROOT, DaemonProcess, wait_for
from tests.payloads import am_alert, am_body

HELPER_ON = {"intake_helpers": 1, "intake_helpers_above": 0}


def _log_lines(daemon: DaemonProcess) -> list[dict[str, Any]]:
    lines = []
    for line in daemon.log().splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


def _helper_pid(daemon: DaemonProcess) -> int:
    """Send one body so the helper starts, then wait until the daemon reports it ready."""
    first = daemon.post("alertmanager", am_body(am_alert("Unmatched", fingerprint="warm-up")))
    assert first.status_code == 202, first.text
    wait_for(lambda: "suture_intake_helpers 1.0" in httpx.get(f"{daemon.url}/metrics").text, timeout=30)
    [ready] = [e for e in _log_lines(daemon) if e["event"] == "intake_helper_ready"]
    return int(ready["pid"])


def _stored_by_helper(daemon: DaemonProcess, pid: int) -> set[int]:
    """Event ids the helper logged as stored (it logs just after it answers: poll for them)."""
    return {
        e["event_id"]
        for e in _log_lines(daemon)
        if e["event"] == "event_stored" and e.get("intake_helper") == pid
    }


def _metric(daemon: DaemonProcess, line_start: str) -> float:
    for line in httpx.get(f"{daemon.url}/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def helped(daemon_factory: Any, db_url: str) -> DaemonProcess:
    return daemon_factory(db_url, server=HELPER_ON)  # type: ignore[no-any-return]


def test_helper_commits_dedups_resolves_and_remediates(helped: DaemonProcess) -> None:
    """Bodies the helper takes open, bump and resolve incidents and queue runs the daemon runs."""
    pid = _helper_pid(helped)
    opened = helped.post("alertmanager", am_body(am_alert()))
    assert opened.status_code == 202, opened.text
    assert len(opened.json()["incidents_opened"]) == 1
    again = helped.post("alertmanager", am_body(am_alert()))
    assert again.json()["incidents_opened"] == [] and again.json()["incidents_updated"] != []
    [incident] = [i for i in helped.cli("incidents", "list") if i["code"] == "DISK-001"]
    assert incident["occurrences"] == 2
    # The auto code's run was queued by the helper's commit and executed by the daemon's workers.
    runs = wait_for(lambda: [r for r in helped.cli("runs", "list") if r["status"] == "succeeded"])
    assert [r["incident_id"] for r in runs] == [incident["id"]]
    resolved = helped.post(
        "alertmanager", am_body(am_alert(status="resolved", ends_at="2026-11-23T10:05:00Z"))
    )
    assert resolved.json()["incidents_resolved"] == [incident["id"]]
    event_ids = {r.json()["event_id"] for r in (opened, again, resolved)}
    wait_for(lambda: event_ids <= _stored_by_helper(helped, pid))
    assert _metric(helped, 'suture_alerts_received_total{source="alertmanager"}') == 4
    assert _metric(helped, "suture_incidents_opened_total") == 2  # warm-up + DISK-001


def test_concurrent_bodies_through_helper_are_all_stored_once(helped: DaemonProcess) -> None:
    pid = _helper_pid(helped)
    bodies = [
        am_body(*(am_alert(fingerprint=f"c{n:03d}-{k}", instance=f"h{n}:9100") for k in range(5)))
        for n in range(60)
    ]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: helped.post("alertmanager", b), bodies))
    assert [a.status_code for a in answers] == [202] * 60
    event_ids = {a.json()["event_id"] for a in answers}
    wait_for(lambda: event_ids <= _stored_by_helper(helped, pid))
    incidents = helped.cli("incidents", "list", "--limit", "1000")
    assert len([i for i in incidents if i["fingerprint"].startswith("c")]) == 300


def test_refusals_from_helper_name_the_field_and_store_nothing(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'refuse.db'}", server=HELPER_ON)
    _helper_pid(daemon)
    bad_time = daemon.post("alertmanager", am_body(am_alert(starts_at="yesterday")))
    assert bad_time.status_code == 422
    assert bad_time.json()["field"] == "alerts.0.startsAt"
    not_json = daemon.post("alertmanager", b"{not json")
    assert not_json.status_code == 400 and not_json.json()["field"] == "body"
    assert [i["fingerprint"] for i in daemon.cli("incidents", "list")] == ["warm-up"]
    assert _metric(daemon, 'suture_webhooks_rejected_total{reason="invalid",source="alertmanager"}') == 2


def test_killed_helper_loses_no_alert(daemon_factory: Any, tmp_path: Path) -> None:
    """SIGKILL the helper: the next bodies are taken by the daemon itself, still 202 and stored."""
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'kill.db'}", server=HELPER_ON)
    pid = _helper_pid(daemon)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: any(e["event"] == "intake_helper_exited" for e in _log_lines(daemon)))
    for n in range(5):
        answer = daemon.post("alertmanager", am_body(am_alert(fingerprint=f"after-{n}")))
        assert answer.status_code == 202, answer.text
    fingerprints = {i["fingerprint"] for i in daemon.cli("incidents", "list")}
    assert {f"after-{n}" for n in range(5)} <= fingerprints
    assert _metric(daemon, "suture_intake_helpers") == 0


def test_sighup_reload_reaches_the_helper(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'reload.db'}", server=HELPER_ON)
    pid = _helper_pid(daemon)
    codes = daemon.config_path.parent / "codes" / "late.yaml"
    codes.write_text(
        textwrap.dedent(
            """\
            - code: LATE-001
              title: Added while running
              severity: low
              match: {alertname: LateThing}
              target: "{{ labels.instance }}"
              mode: manual
            """
        )
    )
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "catalog_reloaded" for e in _log_lines(daemon)))
    answer = daemon.post("alertmanager", am_body(am_alert("LateThing", fingerprint="late")))
    wait_for(lambda: answer.json()["event_id"] in _stored_by_helper(daemon, pid))
    [incident] = [i for i in daemon.cli("incidents", "list") if i["fingerprint"] == "late"]
    assert incident["code"] == "LATE-001"


def test_stopping_the_daemon_ends_its_helper(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'stop.db'}", server=HELPER_ON)
    pid = _helper_pid(daemon)
    daemon.stop()
    assert daemon.proc is not None and daemon.proc.returncode == 0
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)


def test_sqlite_writers_of_two_processes_take_turns(tmp_path: Path) -> None:
    """`WriteTurn` holds other processes off until released (flock next to the database)."""
    database = tmp_path / "turns.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""\
                import sys
                from engine.store.db import WriteTurn
                turn = WriteTurn({str(database)!r})
                with turn:
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        from engine.store.db import WriteTurn

        taken = threading.Event()

        def take() -> None:
            with WriteTurn(str(database)):
                taken.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        assert not taken.wait(0.5), "took the turn while another process held it"
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert taken.wait(10), "did not take the turn after the other process released it"
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_a_submission_crosses_to_the_helper_unchanged() -> None:
    """Times (exact to the microsecond, in UTC), enums, policies and empty values survive the
    socket format, and the alerts come back equal to validated ones."""
    import marshal
    from datetime import UTC, datetime, timedelta, timezone

    from engine.intake.fastpath.codec import FRAME, Unwire, frame_values, wire
    from engine.models import Alert, AlertStatus, ClassifiedAlert, Mode, Policy, Severity, Submission

    def alert(**changes: Any) -> Alert:
        fields: dict[str, Any] = {
            "source": "alertmanager",
            "name": "DiskFull",
            "fingerprint": "0af3c1d2e4b5a697",
            "status": AlertStatus.firing,
            "labels": {"alertname": "DiskFull", "instance": "db-1:9100", "ünï": "çødé"},
            "annotations": {"summary": "disk / at 97 %"},
            "starts_at": datetime(2026, 11, 23, 10, 0, 0, 123457, tzinfo=UTC),
            "ends_at": None,
            "generator_url": "http://prometheus:9090/graph",
        }
        return Alert.model_validate({**fields, **changes})

    submission = Submission(
        "alertmanager",
        '{"alerts": []}',
        [
            ClassifiedAlert(
                alert(),
                "DISK-001",
                "Disk full",
                Severity.high,
                "db-1",
                Mode.auto,
                ("disk-cleanup", 3),
                dry_run=True,
                policy=Policy(cooldown=timedelta(minutes=10), max_runs=3, per=timedelta(hours=1)),
            ),
            ClassifiedAlert(
                alert(
                    status=AlertStatus.resolved,
                    starts_at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5))),
                    ends_at=datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
                    labels={},
                    annotations={},
                    generator_url=None,
                ),
                "UNCLASSIFIED",
                "DiskFull",
                Severity.medium,
                "",
                Mode.manual,
                None,
            ),
        ],
    )
    data = frame_values((7, wire(submission)))
    request, wired = marshal.loads(data[FRAME.size :])
    back = Unwire()(wired)
    assert request == 7
    assert back == submission
    assert back.alerts[1].alert.starts_at == datetime(1999, 12, 31, 18, 59, 59, 999999, tzinfo=UTC)
    assert back.alerts[0].policy == Policy(cooldown=timedelta(minutes=10), max_runs=3, per=timedelta(hours=1))
    assert back.alerts[0].alert.model_dump() == submission.alerts[0].alert.model_dump()


def test_frames_split_across_writes_are_read_whole_and_in_order() -> None:
    """The helper reads whatever has arrived: whole frames only, none lost or reordered, and
    end of file after the last one."""
    import marshal
    import socket as socketlib

    from engine.intake.fastpath.codec import frame_values
    from engine.intake.fastpath.helper_main import FrameReader

    ours, theirs = socketlib.socketpair()
    with ours, theirs:
        data = b"".join(frame_values((n, "x" * n * 1000)) for n in range(1, 6))
        reader = FrameReader(theirs)
        ours.sendall(data[:3])  # not even a whole header
        ours.sendall(data[3:2500])
        got = reader.frames()
        assert got is not None and len(got) == 1
        ours.sendall(data[2500:])
        ours.shutdown(socketlib.SHUT_WR)
        while (more := reader.frames()) is not None:
            got += more
        assert [marshal.loads(item)[0] for item in got] == [1, 2, 3, 4, 5]
        assert marshal.loads(got[4])[1] == "x" * 5000
