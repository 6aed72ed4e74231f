"""`suture doctor` as a new user runs it before the first real alert: a real sshd, a real SQLite
database, a real HTTP and SMTP server on loopback; every problem named with its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller

from engine.store.db import HEAD_REVISION, MIGRATIONS, open_database
from tests.conftest import ROOT, free_port, write_config
from tests.support.httpserver import TestHttpServer
from tests.support.sshd import SshServer

SUDO_PLAYBOOK = """\
name: needs-root
version: 1
steps:
  - name: as root
    ssh: {command: "id -u", sudo: true}
"""


class _Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


def _doctor(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "doctor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _ssh(sshd: SshServer, known_hosts: Path) -> dict[str, Any]:
    return {
        "user": sshd.user,
        "key_file": str(sshd.key_file),
        "known_hosts": str(known_hosts),
        "connect_timeout": "3s",
    }


def _migrate(url: str, revision: str = "head") -> None:
    """Build the schema in-process (a subprocess would cost seconds of imports)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    db = open_database(url)
    try:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
    finally:
        db.dispose()


def test_everything_in_order_passes_and_sends_nothing(
    sshd: SshServer, http_server: TestHttpServer, smtp: tuple[int, _Mailbox], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'suture.db'}"
    config = write_config(
        tmp_path / "site",
        url,
        ssh=_ssh(sshd, sshd.known_hosts),
        inventory=[{"match": "sshhost", "address": "127.0.0.1", "port": sshd.port}],
        http={"allowed_hosts": ["127.0.0.1", "localhost", "10.0.0.0/8"]},
        secrets={"HOOK": {"env": "DOCTOR_HOOK_URL"}},
        notifications=[
            {"name": "ops-hook", "kind": "webhook", "url_secret": "HOOK", "events": ["all"]},
            {
                "name": "ops-mail",
                "kind": "email",
                "events": ["escalation"],
                "smtp": {"host": "127.0.0.1", "port": smtp[0]},
                "from": "suture@example.org",
                "to": ["oncall@example.org"],
            },
        ],
    )
    (config.parent / "playbooks" / "needs-root.yaml").write_text(SUDO_PLAYBOOK)
    _migrate(url)

    result = _doctor(config, "--json", env={"DOCTOR_HOOK_URL": http_server.url_for("/hook?token=s3cr3t")})

    assert result.returncode == 0, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert report["ok"] is True
    by_check = {(c["check"], c["subject"]): c for c in report["checks"]}
    assert all(c["ok"] and c["fix"] is None for c in report["checks"]), report
    assert by_check[("database", url)]["detail"] == f"at revision {HEAD_REVISION}"
    assert "catalog" in {c["check"] for c in report["checks"]}
    assert f"127.0.0.1:{sshd.port} as {sshd.user}" in by_check[("ssh", "sshhost")]["detail"]
    assert "needs-root@1" in by_check[("sudo", "sshhost")]["detail"]
    assert by_check[("allowed_host", "localhost")]["detail"].startswith("resolves to ")
    assert "suture notify test ops-hook" in by_check[("channel", "ops-hook")]["detail"]
    assert "EHLO and NOOP" in by_check[("channel", "ops-mail")]["detail"]
    # only connected to: no message went out, and the secret URL's token is printed nowhere
    assert http_server.requests == [] and smtp[1].envelopes == []
    assert "s3cr3t" not in result.stdout + result.stderr
    assert result.stderr == ""


def test_each_problem_is_named_with_its_fix(sshd: SshServer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'suture.db'}"
    _migrate(url, "0005")  # a database an older Suture left behind
    closed = free_port()
    empty = sshd.empty_known_hosts()
    config = write_config(
        tmp_path / "site",
        url,
        ssh=_ssh(sshd, empty),
        inventory=[
            {"match": "sshhost", "address": "127.0.0.1", "port": sshd.port},
            {"match": "deadhost", "address": "127.0.0.1", "port": closed},
            {"match": "web-*"},
        ],
        http={"allowed_hosts": ["127.0.0.1", "nowhere.invalid"]},
        secrets={"HOOK": {"env": "DOCTOR_UNSET_HOOK"}},
        notifications=[
            {
                "name": "closed-hook",
                "kind": "webhook",
                "url": f"http://127.0.0.1:{closed}/x",
                "events": ["all"],
            },
            {"name": "unset-hook", "kind": "slack", "url_secret": "HOOK", "events": ["all"]},
        ],
    )
    env = {"DOCTOR_UNSET_HOOK": ""}

    text = _doctor(config, env=env)

    assert text.returncode == 1, text.stdout + text.stderr
    assert "Traceback" not in text.stderr
    lines = text.stdout.splitlines()
    known = str(empty)

    def line(prefix: str) -> str:
        found = [shown for shown in lines if shown.startswith(prefix)]
        assert len(found) == 1, (prefix, text.stdout)
        return found[0]

    assert "at revision 0005" in line("FAIL database: ") and "run: suture db upgrade" in line(
        "FAIL database: "
    )
    assert line("ok   catalog ")
    assert line("FAIL ssh sshhost: ").endswith(
        f"— run: ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known}"
        " (then compare its fingerprint with the host's own, `ssh-keygen -lf` on the host)"
    )
    assert f"host key for 127.0.0.1:{sshd.port} not in {known}" in line("FAIL ssh sshhost: ")
    assert f"cannot connect to 127.0.0.1:{closed}: Connection refused" in line("FAIL ssh deadhost: ")
    assert "`suture doctor --target HOST`" in line("skip ssh web-*: ")
    assert "does not resolve" in line("FAIL allowed_host nowhere.invalid: ")
    assert f"cannot connect to 127.0.0.1:{closed}" in line("FAIL channel closed-hook: ")
    assert "DOCTOR_UNSET_HOOK" in line("FAIL channel unset-hook: ")
    assert lines[-1] == "6 problems"
    # nothing was learnt behind the user's back: the empty known_hosts stays empty
    assert empty.read_text() == ""

    only = _doctor(config, "--json", "--target", "deadhost", env=env)

    assert only.returncode == 1
    report = orjson.loads(only.stdout)
    assert report["ok"] is False
    ssh = [c for c in report["checks"] if c["check"] == "ssh"]
    assert [(c["subject"], c["ok"]) for c in ssh] == [("deadhost", False)]
    assert "sshd listens on 127.0.0.1:" in ssh[0]["fix"]
    assert {c["check"] for c in report["checks"]} >= {"database", "catalog", "allowed_host", "channel"}
    assert set(report["checks"][0]) == {"check", "subject", "ok", "detail", "fix"}


def test_a_changed_host_key_a_refused_key_and_an_unknown_name_say_what_to_do(
    sshd: SshServer, tmp_path: Path
) -> None:
    """In-process (no subprocess start-up): the login stages past TCP, as `--target` resolves them."""
    from engine.config import load_config
    from engine.execution.doctor.targets import check_targets

    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    inventory = [
        {"match": "sshhost", "address": "127.0.0.1", "port": sshd.port},
        {"match": "stranger", "address": "127.0.0.1", "port": sshd.port, "key_file": str(stranger)},
    ]
    changed = load_config(
        write_config(
            tmp_path / "a", "sqlite:///x.db", ssh=_ssh(sshd, sshd.wrong_known_hosts()), inventory=inventory
        )
    )
    known = load_config(
        write_config(tmp_path / "b", "sqlite:///x.db", ssh=_ssh(sshd, sshd.known_hosts), inventory=inventory)
    )

    [moved] = check_targets(changed, "sshhost", [])
    [refused] = check_targets(known, "stranger", [])
    [nowhere] = check_targets(known, "web-9.invalid", [])

    assert not moved.ok and "CHANGED" in moved.detail and "man-in-the-middle" in moved.detail
    assert moved.fix is not None and moved.fix.startswith(
        f"if sshhost was reinstalled: ssh-keygen -R '[127.0.0.1]:{sshd.port}'"
    )
    assert not refused.ok and "authentication" in refused.detail
    assert refused.fix == (
        f"add {stranger}.pub to ~{sshd.user}/.ssh/authorized_keys on stranger, e.g. "
        f"ssh-copy-id -i {stranger}.pub -p {sshd.port} {sshd.user}@127.0.0.1"
    )
    assert not nowhere.ok and "cannot resolve web-9.invalid" in nowhere.detail
    assert "no inventory entry matches" in nowhere.detail
