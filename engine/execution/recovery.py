"""Runs whose holder is gone: re-queued when their playbook is idempotent, otherwise marked
interrupted. Every replica's daemon calls `recover_runs` at start and then every few seconds
(once per turn across replicas).

A run is abandoned when its lease (`workers.lease`, renewed while it runs) has run out, whatever
host held it, or at once when the daemon start holding it is surely gone (same host:
`holder_is_dead`). A run from before leases has none: it is abandoned when it has shown no life for
longer than its playbook's timeout plus a margin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from engine.execution.worker import Incarnation
from engine.logging import get_logger
from engine.models import Abandoned, Playbook
from engine.records import HeldRun
from engine.store import Store

log = get_logger("suture.recovery")

#: How long past its playbook timeout a run on another host may go silent before it is abandoned.
STALE_MARGIN = timedelta(minutes=5)


def process_exists(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(
    worker: str | None, me: Incarnation, exists: Callable[[int], bool] = process_exists
) -> bool:
    """Whether the daemon start named in `runs.worker` is surely gone; other hosts: never sure.

    Our pid with another boot id is a predecessor (a container's PID 1 restarted); so is our
    pid without a boot id, a row from before boot ids, since we always write ours.
    """
    holder = Incarnation.parse(worker)
    if holder is None or holder.host != me.host or holder.boot == me.boot:
        return False
    if holder.pid == me.pid:
        return True
    return not exists(holder.pid)


def abandoned_runs(
    running: Iterable[HeldRun],
    playbook: Callable[[str, int], Playbook],
    me: Incarnation,
    now: datetime,
    exists: Callable[[int], bool] = process_exists,
) -> dict[int, Abandoned]:
    """The abandoned runs among `running`, each with whether it may be started again (idempotent)."""
    abandoned: dict[int, Abandoned] = {}
    for run in running:
        try:
            found = playbook(run.playbook, run.playbook_version)
            idempotent, limit = found.idempotent, found.timeout + STALE_MARGIN
        except Exception:  # noqa: BLE001 - an unknown playbook is simply not re-run
            idempotent, limit = False, STALE_MARGIN
        if run.lease_until is not None:
            expired = now > run.lease_until
        else:  # claimed before leases: only its heartbeat tells
            expired = run.heartbeat_at is None or now - run.heartbeat_at > limit
        if expired or holder_is_dead(run.worker, me, exists):
            abandoned[run.id] = Abandoned(idempotent, run.attempt, expired)
    return abandoned


def recover_runs(
    store: Store, playbook: Callable[[str, int], Playbook], me: Incarnation, now: datetime
) -> dict[str, list[int]]:
    """Re-queue or interrupt every abandoned run; returns the ids by what became of them."""
    outcome = store.recover_interrupted(abandoned_runs(store.running_runs(), playbook, me, now))
    if outcome["requeued"] or outcome["interrupted"]:
        log.warning("runs_recovered", **outcome)
    return outcome
