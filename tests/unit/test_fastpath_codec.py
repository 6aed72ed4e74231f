"""The intake helper's socket format as pure logic: what crosses it comes back equal, and frames
split across writes are read whole (the helper process itself: tests/e2e/test_intake_helpers.py)."""

from __future__ import annotations

from typing import Any


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
