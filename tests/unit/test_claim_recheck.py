"""The policy chain asked again when a worker claims a run (engine/execution/worker.py), against a
real Store on a SQLite file and a StubAction for the steps.

Two intake writers (two replicas) may each read the run history before the other commits, so
both queue a run for the same code and target; the worker's recheck holds the later one back.
The same cooldown at intake, through the daemon: tests/integration/test_policy.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.catalog.loader import Catalog, CodeEntry, PlaybookEntry
from engine.config import Config
from engine.execution.actions.stub import StubAction
from engine.execution.worker import PlaybookResolver, WorkerPool
from engine.hooks import Hooks, RunFinished, RunHeld
from engine.intake.runs import BatchPlanner
from engine.models import Alert, AlertStatus, ClassifiedAlert, Code, Playbook, RunStatus, Submission
from engine.store import Store
from engine.store.db import Database
from engine.store.tables import metadata
from engine.templating import Renderer

PLAYBOOK = Playbook.model_validate(
    {"name": "restart", "version": 1, "steps": [{"name": "restart", "ssh": {"command": "restart x"}}]}
)


def _code(policy: str) -> Code:
    return Code.model_validate(
        yaml.safe_load(
            f"""
            code: FLAP-001
            title: Flapping service
            severity: high
            match: {{alertname: Flapping}}
            playbook: restart
            mode: approval
            {policy}
            """
        )
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh schema in a SQLite file, made without migrations."""
    db = Database(f"sqlite:///{tmp_path / 'suture.db'}")
    metadata.create_all(db.engine)
    yield Store(db)
    db.dispose()


class Worker:
    """A WorkerPool over `store` and a catalog of one code, run by hand (no threads)."""

    def __init__(self, store: Store, code: Code) -> None:
        catalog = Catalog(
            codes=[CodeEntry(code, "sha", Path("codes/flap.yaml"), 1)],
            playbooks={("restart", 1): PlaybookEntry(PLAYBOOK, "", "sha", Path("playbooks/restart.yaml"))},
        )
        self.code, self.store = code, store
        self.stub = StubAction()
        self.hooks, self.seen = Hooks(), []
        for event in (RunFinished, RunHeld):
            self.hooks.subscribe(event, self.seen.append)
        self.pool = WorkerPool(
            Config(),
            store,
            PlaybookResolver(store, lambda: catalog),
            Renderer(),
            hooks=self.hooks,
            actions=self.stub.registry(),
        )

    def open(self, fingerprint: str, target: str = "web-1") -> int:
        """An incident from an intake writer that read no history (the other writer had not committed)."""
        alert = Alert(
            source="alertmanager",
            name="Flapping",
            fingerprint=fingerprint,
            status=AlertStatus.firing,
            labels={"alertname": "Flapping", "instance": f"{target}:9100"},
        )
        code = self.code
        item = ClassifiedAlert(
            alert, code.code, code.title, code.severity, target, code.mode, ("restart", 1), policy=code.policy
        )
        batch = [Submission("alertmanager", "{}", [item])]
        [run] = self.store.ingest(batch, lambda _conn: BatchPlanner({})).runs
        assert run.id is not None and run.status is RunStatus.awaiting_approval
        return run.id

    def approve_and_claim(self, run_id: int) -> RunStatus:
        self.store.decide_run(run_id, approve=True, by="alice")
        claimed = self.store.claim_run("w")
        assert claimed is not None and claimed.id == run_id
        return self.pool.execute(claimed, "w")

    def timeline(self, run_id: int) -> list[tuple[str, str]]:
        incident_id = self.store.get_run(run_id).incident_id
        assert incident_id is not None
        entries = self.store.get_incident(incident_id).timeline
        return [(e.kind, e.message) for e in entries if e.run_id == run_id]


def test_a_run_queued_by_another_writer_within_the_cooldown_is_skipped_when_claimed(store: Store) -> None:
    """Two approved runs of one code on one target: the first executes, the second is claimed but
    ends `skipped` with the cooldown reason on the run and its timeline, and runs no step."""
    worker = Worker(store, _code("policy: {cooldown: 1h}"))
    first = worker.open("fp1")
    second = worker.open("fp2")

    assert worker.approve_and_claim(first) is RunStatus.succeeded
    assert worker.approve_and_claim(second) is RunStatus.skipped

    run = store.get_run(second)
    assert run.status == "skipped" and run.steps == []
    assert run.error is not None and re.fullmatch(r"policy: cooldown 1h \(last run \d+s ago\)", run.error)
    assert run.finished_at is not None
    assert worker.timeline(second)[-1] == ("run_skipped", f"run {second} skipped: {run.error}")
    assert [call.step for call in worker.stub.calls] == ["restart"]  # the first run's only
    assert [type(e).__name__ for e in worker.seen] == ["RunFinished", "RunHeld", "RunFinished"]
    held, finished = worker.seen[1:]
    assert held == RunHeld(second, run.incident_id, "restart", run.error, gate="cooldown")
    assert isinstance(finished, RunFinished) and finished.status == "skipped"


def test_another_target_is_not_held_back_at_claim(store: Store) -> None:
    """The cooldown counts per target: a run for another host starts."""
    worker = Worker(store, _code("policy: {cooldown: 1h}"))
    first = worker.open("fp1", target="web-1")
    other = worker.open("fp2", target="web-2")
    assert worker.approve_and_claim(first) is RunStatus.succeeded
    assert worker.approve_and_claim(other) is RunStatus.succeeded


def test_a_code_that_limits_nothing_reads_no_history_at_claim(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without cooldown or max_runs both runs execute, and the claim costs no history read."""
    worker = Worker(store, _code(""))

    def no_read(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("read run history for a code that limits nothing")

    first, second = worker.open("fp1"), worker.open("fp2")
    monkeypatch.setattr(store, "recent_runs", no_read)
    assert worker.approve_and_claim(first) is RunStatus.succeeded
    assert worker.approve_and_claim(second) is RunStatus.succeeded
    assert store.get_run(second).error is None
