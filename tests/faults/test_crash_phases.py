"""kill -9 of the real daemon in every phase: intake under concurrent senders, right after a 202,
and in the middle of a run's steps, verify and rollback on a real sshd.

After each kill the daemon is started again on the same database and the promises are read
back from the rows and from the SSH target's files: every 202 is stored and nothing is half
stored; an idempotent run is re-queued and completes exactly once more; a non-idempotent run
is `interrupted` with a timeline entry, and none of its commands runs a second time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, wait_for
from tests.payloads import am_alert, am_body
from tests.support.faultkit import Senders, fingerprints, half_stored, run_rows
from tests.support.sshd import SshServer


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _restart(daemon: DaemonProcess) -> DaemonProcess:
    return DaemonProcess(daemon.config_path, daemon.port).start()


# ------------------------------------------------------------------------ intake phases


@pytest.mark.parametrize(
    ("db_url", "helpers"),
    [("sqlite", False), ("postgresql", False), ("sqlite", True)],
    ids=["sqlite", "postgresql", "sqlite-intake-helper"],
    indirect=["db_url"],
)
def test_kill_during_concurrent_intake_keeps_every_202_whole(
    daemon_factory: Any, db_url: str, helpers: bool
) -> None:
    """kill -9 while four senders post: after restart every 202's alerts are stored once, none half;
    an intake helper process does not outlive its daemon."""
    server = {"intake_helpers": 1, "intake_helpers_above": 0} if helpers else {"intake_helpers": 0}
    daemon = daemon_factory(db_url, server=server)
    senders = Senders(daemon.url, threads=4, per_body=3).start()
    try:
        if helpers:  # the helper takes the bodies once it is ready
            wait_for(lambda: "intake_helper_ready" in daemon.log(), timeout=30, interval=0.1)
        before = senders.statuses()[202]
        wait_for(lambda: senders.statuses()[202] >= before + 40, timeout=30)
        assert daemon.proc is not None
        spawned = [pid for pid in _children(daemon.proc.pid) if _alive(pid)]
        assert bool(spawned) == helpers, spawned
        daemon.kill()
        time.sleep(0.3)
    finally:
        outcomes = senders.stop()
    # A helper whose daemon died must not live on holding the database.
    for pid in spawned:
        wait_for(lambda pid=pid: not _alive(pid), timeout=15)

    restarted = _restart(daemon)
    try:
        accepted = [o for o in outcomes if o.status == 202]
        # 503 is a legal answer (the sender retries); no answer is what a killed daemon gives.
        assert {o.status for o in outcomes} <= {202, 503, None}, {o.status for o in outcomes}
        stored = fingerprints(db_url)
        lost = [fp for o in accepted for fp in o.fingerprints if stored[fp] != 1]
        assert not lost, f"{len(lost)} alerts of 202 bodies are not stored exactly once"
        assert max(stored.values()) == 1
        assert half_stored(db_url) == []
        # And the restarted daemon takes new bodies.
        assert (
            restarted.post("alertmanager", am_body(am_alert("ManualOnly", fingerprint="after"))).status_code
            == 202
        )
    finally:
        restarted.stop()


def test_kill_right_after_202_keeps_the_body(daemon_factory: Any, db_url: str) -> None:
    """A 202 followed at once by kill -9: after restart the event, its alerts and incident are there."""
    daemon = daemon_factory(db_url, server={"intake_helpers": 0})
    body = am_body(
        am_alert("ManualOnly", fingerprint="k1"),
        am_alert("ManualOnly", fingerprint="k2", instance="web-2:9100"),
    )
    response = daemon.post("alertmanager", body)
    daemon.kill()
    assert response.status_code == 202, response.text
    restarted = _restart(daemon)
    try:
        incidents = restarted.get("/api/v1/incidents")["items"]
        assert sorted(i["fingerprint"] for i in incidents) == ["k1", "k2"]
        assert fingerprints(db_url) == {"k1": 1, "k2": 1}
        assert half_stored(db_url) == []
        shown = restarted.get(f"/api/v1/incidents/{incidents[0]['id']}")
        assert [a["status"] for a in shown["alerts"]] == ["firing"]
    finally:
        restarted.stop()


# --------------------------------------------------------------------------- run phases

#: The command of a phase: log that it ran, then block the first time only (a re-run is quick).
_ONCE = (
    "echo {phase} >> {{{{ annotations.log }}}} && if [ ! -e {{{{ annotations.log }}}}.blocked ]; "
    "then touch {{{{ annotations.log }}}}.blocked; sleep 60; fi"
)


def _playbook(phase: str, idempotent: bool) -> str:
    name = f"crash-{phase}-{'idem' if idempotent else 'once'}"
    block = {
        p: _ONCE.format(phase=p) if p == phase else f"echo {p} >> {{{{ annotations.log }}}}"
        for p in ("steps", "verify", "rollback")
    }
    verify = block["verify"] + (" && false" if phase == "rollback" else "")
    lines = [
        f"name: {name}",
        "version: 1",
        f"idempotent: {'true' if idempotent else 'false'}",
        "timeout: 120s",
        "steps:",
        f"  - {{name: work, ssh: {{command: '{block['steps']}'}}, timeout: 90s, on_failure: rollback}}",
    ]
    if phase in ("verify", "rollback"):
        lines += ["verify:", f"  - {{name: check, ssh: {{command: '{verify}'}}, timeout: 90s}}"]
    if phase == "rollback":
        lines += ["rollback:", f"  - {{name: undo, ssh: {{command: '{block['rollback']}'}}, timeout: 90s}}"]
    return "\n".join(lines) + "\n"


CASES = [(phase, idem) for phase in ("steps", "verify", "rollback") for idem in (True, False)]


def _code(phase: str, idempotent: bool) -> str:
    suffix = f"{phase}-{'idem' if idempotent else 'once'}"
    return (
        f"- code: CRASH-{suffix.upper()}\n"
        f"  title: kill -9 during {suffix}\n"
        "  severity: low\n"
        f"  match: {{alertname: Crash-{suffix}}}\n"
        '  target: "{{ labels.instance }}"\n'
        f"  playbook: crash-{suffix}\n"
        "  mode: auto\n"
    )


#: What the target's log holds once the run got to its phase (the pass that was killed).
_UP_TO = {"steps": ["steps"], "verify": ["steps", "verify"], "rollback": ["steps", "verify", "rollback"]}
_FINAL = {"steps": "succeeded", "verify": "succeeded", "rollback": "rolled_back"}


def test_kill_during_steps_verify_and_rollback(daemon_factory: Any, sshd: SshServer, tmp_path: Path) -> None:
    """kill -9 with runs inside a step, verify and rollback: idempotent ones finish exactly once
    more; the others are `interrupted` on their timeline and never run a command again."""
    files = {"codes/zz-crash.yaml": "".join(_code(p, i) for p, i in CASES)}
    files.update({f"playbooks/crash-{p}-{'idem' if i else 'once'}.yaml": _playbook(p, i) for p, i in CASES})
    daemon = daemon_factory(
        f"sqlite:///{tmp_path / 'crash.db'}",
        files=files,
        ssh={"user": sshd.user, "key_file": str(sshd.key_file), "known_hosts": str(sshd.known_hosts)},
        inventory=[{"match": "*", "address": "127.0.0.1", "port": sshd.port}],
        workers={"concurrency": 8, "poll_interval": "200ms"},
    )
    logs: dict[tuple[str, bool], Path] = {}
    run_ids: dict[tuple[str, bool], int] = {}
    for phase, idem in CASES:
        suffix = f"{phase}-{'idem' if idem else 'once'}"
        logs[(phase, idem)] = log = tmp_path / f"{suffix}.log"
        alert = am_alert(f"Crash-{suffix}", fingerprint=f"crash-{suffix}", instance=f"host-{suffix}")
        alert["annotations"]["log"] = str(log)
        response = daemon.post("alertmanager", am_body(alert))
        assert response.status_code == 202, response.text
        [run_ids[(phase, idem)]] = response.json()["runs_queued"]

    def blocked_in_phase() -> bool:
        return all(
            Path(f"{log}.blocked").exists() and log.read_text().split() == _UP_TO[phase]
            for (phase, _), log in logs.items()
        )

    wait_for(blocked_in_phase, timeout=30, interval=0.1)
    daemon.kill()
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    assert {r["id"]: r["status"] for r in run_rows(db_url)} == {i: "running" for i in run_ids.values()}

    restarted = _restart(daemon)
    try:
        for (phase, idem), run_id in run_ids.items():
            if not idem:
                continue
            run = wait_for(
                lambda run_id=run_id: (r := restarted.get(f"/api/v1/runs/{run_id}"))["finished_at"] and r,
                timeout=30,
                interval=0.2,
            )
            assert run["status"] == _FINAL[phase], (phase, run)
            # The pass that was killed, then exactly one complete pass more.
            assert logs[(phase, idem)].read_text().split() == _UP_TO[phase] * 2, phase
            timeline = [
                t["kind"] for t in restarted.get(f"/api/v1/incidents/{run['incident_id']}")["timeline"]
            ]
            assert timeline.count("run_requeued") == 1, timeline
        time.sleep(1.0)  # several worker polls: a wrongly re-queued run would have started by now
        for (phase, idem), run_id in run_ids.items():
            if idem:
                continue
            run = restarted.get(f"/api/v1/runs/{run_id}")
            assert run["status"] == "interrupted", (phase, run)
            assert "interrupted" in run["error"] and run["finished_at"] is not None
            timeline = [
                t["kind"] for t in restarted.get(f"/api/v1/incidents/{run['incident_id']}")["timeline"]
            ]
            assert "run_interrupted" in timeline and "run_requeued" not in timeline, timeline
            assert logs[(phase, idem)].read_text().split() == _UP_TO[phase], f"{phase}: a command ran twice"
        assert restarted.get("/healthz") is not None
    finally:
        restarted.stop()
    assert "Traceback" not in restarted.log()
