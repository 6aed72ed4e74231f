"""Config and catalog mistakes: one clear message with file and line, the right exit code, no traceback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from tests.conftest import ROOT, TEST_CATALOG, free_port, run_cli, write_config


def _suture(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_wrong_type_names_file_line_key_and_expectation(tmp_path: Path) -> None:
    """A string where an integer belongs: exit 2, one line with file:line, the key and what was expected."""
    config = tmp_path / "config.yaml"
    config.write_text("database: {url: 'sqlite:///x.db'}\nworkers:\n  concurrency: lots\n")
    result = _suture("db", "upgrade", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"config error: {config}:3: workers.concurrency: "
        "Input should be a valid integer, unable to parse string as an integer (got 'lots')"
    )
    assert "Traceback" not in result.stderr


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key (`wokers`) is an error naming it, not silently ignored."""
    config = tmp_path / "config.yaml"
    config.write_text("server: {host: 127.0.0.1}\nwokers: {concurrency: 2}\n")
    with pytest.raises(ConfigError, match=rf"^{config}:2: wokers: unknown key$"):
        load_config(config)


def test_bad_duration_and_yaml_syntax(tmp_path: Path) -> None:
    """A malformed duration and broken YAML both name the line."""
    config = tmp_path / "config.yaml"
    config.write_text("ssh:\n  connect_timeout: soon\n")
    with pytest.raises(ConfigError, match=r":2: ssh.connect_timeout: expected a duration like 30s"):
        load_config(config)
    config.write_text("server:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: invalid YAML"):
        load_config(config)


def test_a_lease_shorter_than_a_second_is_one_line_naming_it(tmp_path: Path) -> None:
    """`workers.lease` renewed every third of it: under 1 s it could not be kept; the line says so."""
    config = tmp_path / "config.yaml"
    config.write_text("workers:\n  concurrency: 2\n  lease: 500ms\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == f"{config}:3: workers.lease: must be at least 1s (got '500ms')"


def test_serve_refuses_bad_config_with_exit_2(tmp_path: Path) -> None:
    """`suture serve` on a config with a wrong value stops at once with exit 2 and no traceback."""
    config = tmp_path / "config.yaml"
    config.write_text("server: {port: 99999}\n")
    result = _suture("serve", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}:1: server.port:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", [None, "too-short"], ids=["unset", "short"])
def test_serve_refuses_a_console_session_key_that_cannot_sign(tmp_path: Path, value: str | None) -> None:
    """A named session key that is unset or short would let anyone forge a sign-in: one line, exit 2."""
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path}/s.db",
        port=free_port(),
        console={"session_secret_env": "SUTURE_TEST_CONSOLE_KEY"},
    )
    env = {} if value is None else {"SUTURE_TEST_CONSOLE_KEY": value}
    result = _suture("serve", "--config", str(config), env=env)
    assert result.returncode == 2, result.stderr
    assert "console.session_secret_env: the environment variable SUTURE_TEST_CONSOLE_KEY" in result.stderr
    assert "Traceback" not in result.stderr and (value is None or value not in result.stderr)


def test_read_commands_need_no_secret_and_serve_needs_them_all(tmp_path: Path) -> None:
    """A required token's variable unset: reads work (they read no secret), serve exits 2 in one line."""
    config = write_config(
        tmp_path / "site",
        f"sqlite:///{tmp_path / 'site' / 'suture.db'}",
        port=free_port(),
        sources={"generic": {"token_env": "SUTURE_TEST_UNSET_SOURCE"}},
        access={"tokens": [{"name": "chatops", "token_env": "SUTURE_TEST_UNSET_OPS", "role": "operate"}]},
    )
    assert "SUTURE_TEST_UNSET_OPS" not in os.environ
    run_cli("db", "upgrade", config=config)
    for command in (("incidents", "list"), ("runs", "list"), ("validate",)):
        result = _suture(*command, "--config", str(config))
        assert result.returncode == 0 and result.stderr == "", (command, result.stderr)
    result = _suture("serve", "--config", str(config))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert re.fullmatch(
        rf"config error: {re.escape(str(config))}:\d+: access\.tokens\.0\.token_env: environment variable "
        r"SUTURE_TEST_UNSET_OPS is not set \(the token for chatops\)",
        line,
    ), line


def _site(tmp_path: Path) -> Path:
    return write_config(tmp_path / "site", f"sqlite:///{tmp_path / 'site' / 'suture.db'}", port=free_port())


def test_validate_accepts_the_test_catalog(tmp_path: Path) -> None:
    """`suture validate` on a good catalog prints a summary and exits 0."""
    config = _site(tmp_path)
    result = run_cli("validate", config=config)
    assert result.returncode == 0
    assert result.stdout.startswith("ok: 4 codes, 2 playbook versions")
    assert run_cli("validate", "--json", config=config) == {"ok": True, "codes": 4, "playbook_versions": 2}
    assert run_cli("db", "upgrade", "--json", config=config) == {"ok": True, "revision": "0009"}


def test_validate_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    """Unknown keys, bad regex, missing playbook, bad template, duplicate codes: each listed as file:line."""
    config = _site(tmp_path)
    codes = config.parent / "codes" / "zz-broken.yaml"
    codes.write_text(
        "- code: BAD-001\n"  # 1
        "  title: Bad regex\n"  # 2
        "  severity: high\n"  # 3
        "  match: {alertname: 'Node(('}\n"  # 4
        "- code: BAD-002\n"  # 5
        "  title: Missing playbook\n"  # 6
        "  severity: high\n"  # 7
        "  match: {alertname: X}\n"  # 8
        "  playbook: nowhere\n"  # 9
        "  mode: auto\n"  # 10
        "- code: DISK-001\n"  # 11
        "  title: Duplicate\n"  # 12
        "  severity: high\n"  # 13
        "  match: {alertname: Y}\n"  # 14
        "- code: BAD-003\n"  # 15
        "  title: Unknown key\n"  # 16
        "  severity: high\n"  # 17
        "  colour: red\n"  # 18
        "  match: {alertname: Z}\n"  # 19
        "- code: BAD-004\n"  # 20
        "  title: Bad target template\n"  # 21
        "  severity: high\n"  # 22
        "  match: {alertname: W}\n"  # 23
        "  target: '{{ labels.instance '\n"  # 24
        "- code: BAD-005\n"  # 25
        "  title: Pinned version that does not exist\n"  # 26
        "  severity: low\n"  # 27
        "  match: {alertname: V}\n"  # 28
        "  playbook: noop@7\n"  # 29
    )
    as_json = run_cli("validate", "--json", config=config, check=False)
    assert as_json["ok"] is False and len(as_json["problems"]) == 6
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[:-1] == as_json["problems"]
    assert (
        f"{codes}:4: bad regular expression 'Node((': missing ), unterminated subpattern at position 5"
        in lines
    )
    assert f"{codes}:9: playbook 'nowhere' not found in the catalog" in lines
    assert any(line.startswith(f"{codes}:11: duplicate code DISK-001") for line in lines)
    assert f"{codes}:18: 18.colour: unknown key".replace("18.colour", "3.colour") in lines
    assert any(line.startswith(f"{codes}:24: target: ") for line in lines)
    assert f"{codes}:29: playbook noop@7 not found in the catalog" in lines
    assert lines[-1] == "catalog invalid: 6 problem(s)"
    assert "Traceback" not in result.stderr


def test_playbook_errors_and_changed_stored_version(tmp_path: Path) -> None:
    """A bad step and a playbook changed under an already stored version are errors with file:line."""
    config = _site(tmp_path)
    run_cli("db", "upgrade", config=config)
    run_cli("validate", config=config)  # stores nothing by itself
    # Serving stores the versions; do that through the same path the daemon uses.
    from engine.catalog.versions import stored_versions
    from engine.daemon import load_checked_catalog
    from engine.store import Store, open_database

    cfg = load_config(config)
    store = Store(open_database(cfg.database_url, upgrade=True))
    store.sync_catalog(*stored_versions(load_checked_catalog(cfg, store)))
    noop = config.parent / "playbooks" / "noop.yaml"
    noop.write_text(noop.read_text().replace("wait: 0s", "wait: 1s"))
    broken = config.parent / "playbooks" / "broken.yaml"
    broken.write_text(
        "name: broken\nversion: 1\nsteps:\n  - name: two actions\n    wait: 1s\n    ssh: {command: ls}\n"
    )
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{broken}:4: steps.0: a step needs exactly one of ssh, http or wait" in lines
    assert (
        f"{noop}:2: playbook noop@1 changed but version 1 is already stored; "
        "raise `version` to publish a change" in lines
    )


def test_serve_refuses_invalid_catalog(tmp_path: Path) -> None:
    """The daemon does not start on an invalid catalog and says why."""
    config = _site(tmp_path)
    (config.parent / "codes" / "zz.yaml").write_text(
        "- code: lower-case\n  title: x\n  severity: high\n  match: {}\n"
    )
    result = _suture("serve", "--config", str(config))
    assert result.returncode == 1
    assert "zz.yaml:1: 0.code: String should match pattern" in result.stderr
    assert "Traceback" not in result.stderr


def test_shipped_config_and_catalog_validate(tmp_path: Path) -> None:
    """The repository's own config.yaml and starting library validate cleanly."""
    site = tmp_path / "shipped"
    shutil.copytree(ROOT / "codes", site / "codes")
    shutil.copytree(ROOT / "playbooks", site / "playbooks")
    shutil.copy(ROOT / "config.yaml", site / "config.yaml")
    result = _suture("validate", "--config", str(site / "config.yaml"))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[1]) >= 6


assert TEST_CATALOG.exists()
