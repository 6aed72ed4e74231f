"""Which runs a dead daemon left `running` are abandoned, and whether each may run again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.execution.recovery import STALE_MARGIN, abandoned_runs, holder_is_dead
from engine.execution.worker import Incarnation
from engine.models import Abandoned, Playbook
from engine.records import HeldRun

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ME = Incarnation("host-a", 100, "boot-now")


def playbooks(name: str, version: int) -> Playbook:
    if name == "gone":
        raise LookupError(name)
    return Playbook.model_validate(
        {
            "name": name,
            "version": version,
            "timeout": "10m",
            "idempotent": name == "safe",
            "steps": [{"wait": "0s"}],
        }
    )


def run(
    run_id: int,
    worker: str | None,
    *,
    silent_for: timedelta | None,
    playbook: str = "safe",
    lease_left: timedelta | None = None,
) -> HeldRun:
    heartbeat = None if silent_for is None else NOW - silent_for
    return HeldRun(
        id=run_id,
        playbook=playbook,
        playbook_version=1,
        worker=worker,
        heartbeat_at=heartbeat,
        attempt=2,
        lease_until=None if lease_left is None else NOW + lease_left,
    )


def taken(idempotent: bool, expired: bool = True) -> Abandoned:
    return Abandoned(idempotent, 2, expired)


def nobody_alive(_pid: int) -> bool:
    return False


def everybody_alive(_pid: int) -> bool:
    return True


def test_a_predecessor_with_our_pid_is_dead() -> None:
    """Our pid with another boot id (a container's PID 1 restarted), or with none, is a predecessor."""
    assert holder_is_dead("host-a:100:boot-old:0", ME, everybody_alive)
    assert holder_is_dead("host-a:100:0", ME, everybody_alive)  # a row from before boot ids
    assert not holder_is_dead("host-a:100:boot-now:0", ME, nobody_alive)  # ourselves


def test_a_holder_on_this_host_is_dead_only_when_its_process_is_gone() -> None:
    """Another pid on this host is dead when no such process exists; other hosts are never judged."""
    assert holder_is_dead("host-a:200:boot-x:1", ME, nobody_alive)
    assert not holder_is_dead("host-a:200:boot-x:1", ME, everybody_alive)
    assert not holder_is_dead("host-b:200:boot-x:1", ME, nobody_alive)
    assert not holder_is_dead("cli", ME, nobody_alive)
    assert not holder_is_dead(None, ME, nobody_alive)


def test_runs_of_a_dead_holder_are_abandoned_and_only_idempotent_ones_run_again() -> None:
    """A dead holder's runs are abandoned however recent their heartbeat; `idempotent` says re-queue."""
    running = [
        run(1, "host-a:200:boot-x:0", silent_for=timedelta(seconds=1)),
        run(2, "host-a:200:boot-x:1", silent_for=timedelta(seconds=1), playbook="risky"),
    ]
    assert abandoned_runs(running, playbooks, ME, NOW, nobody_alive) == {
        1: taken(True, False),
        2: taken(False, False),
    }


def test_a_leased_run_is_abandoned_when_its_lease_runs_out_on_any_host() -> None:
    """A lease still ahead keeps the run its holder's however long it was silent; one that ran
    out is abandoned at once, by a replica on any host, taken from the attempt recovery saw."""
    running = [
        run(1, "host-b:5:boot:0", silent_for=timedelta(hours=2), lease_left=timedelta(seconds=1)),
        run(2, "host-b:5:boot:0", silent_for=timedelta(seconds=31), lease_left=-timedelta(seconds=1)),
        run(3, "host-a:200:boot-x:1", silent_for=timedelta(seconds=1), lease_left=timedelta(seconds=29)),
    ]
    assert abandoned_runs(running, playbooks, ME, NOW, nobody_alive) == {
        2: taken(True),
        3: taken(True, False),
    }


def test_a_run_from_before_leases_is_abandoned_after_its_timeout_plus_the_margin() -> None:
    """Silent past playbook timeout + margin (or never heard of): abandoned; within it: left alone."""
    limit = timedelta(minutes=10) + STALE_MARGIN
    running = [
        run(1, "host-b:5:boot:0", silent_for=limit - timedelta(seconds=1)),
        run(2, "host-b:5:boot:0", silent_for=limit + timedelta(seconds=1)),
        run(3, "host-b:5:boot:0", silent_for=None),
    ]
    assert abandoned_runs(running, playbooks, ME, NOW, everybody_alive) == {2: taken(True), 3: taken(True)}


def test_a_run_of_an_unknown_playbook_is_never_rerun_and_waits_only_the_margin() -> None:
    """A playbook that cannot be loaded: the run is abandoned after the margin alone, and not re-queued."""
    running = [
        run(1, "host-b:5:boot:0", silent_for=STALE_MARGIN + timedelta(seconds=1), playbook="gone"),
        run(2, "host-b:5:boot:0", silent_for=STALE_MARGIN - timedelta(seconds=1), playbook="gone"),
    ]
    assert abandoned_runs(running, playbooks, ME, NOW, everybody_alive) == {1: taken(False)}
