"""Hostile YAML (tags, alias bombs, deep nesting, bad bytes): `file:line: message`, never a traceback."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, wait_for, write_config

TAGGED_PLAYBOOK = """\
name: tagged
version: 1
steps:
  - name: pause
    wait: !!python/name:os.system ''
"""

#: Nine levels of nine aliases each: 9**9 values once expanded.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)

HOSTILE_PLAYBOOKS = {
    "python-tag": (TAGGED_PLAYBOOK, 5, "YAML tag '!!python/name:os.system' is not allowed"),
    "custom-tag": (
        "name: custom\nversion: 1\nsteps:\n  - wait: !custom 1s\n",
        4,
        "YAML tag '!custom' is not allowed",
    ),
    "python-object": (
        "name: obj\nversion: 1\nsteps:\n  - wait: !!python/object/apply:os.system [id]\n",
        4,
        "YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    "binary-tag": ("name: bin\nversion: 1\ndescription: !!binary aGk=\nsteps: []\n", 3, "'!!binary'"),
    "bad-date": ("name: date\nversion: 1\ndescription: 2020-13-45\nsteps: []\n", 3, "month must be in"),
    "alias-bomb": ("name: bomb\nversion: 1\n" + BOMB + "steps: []\n", None, "aliases expanding too far"),
    "recursive-alias": ("name: loop\nversion: 1\nsteps: &s [*s]\n", 3, "refers to the value that contains"),
    "too-deep": ("name: deep\nversion: 1\ndescription: " + "[" * 5000 + "]" * 5000 + "\n", 3, "nested"),
    "merge-key": (
        "name: merge\nversion: 1\nbase: &b {wait: 1s}\nsteps:\n  - <<: *b\n",
        5,
        "merge keys (<<) are not supported",
    ),
    "duplicate-key": ("name: dup\nversion: 1\nname: again\nsteps: []\n", 3, "duplicate key 'name'"),
}


def _site(tmp_path: Path) -> Path:
    return write_config(tmp_path / "site", f"sqlite:///{tmp_path / 'v.db'}")


@pytest.mark.parametrize("case", sorted(HOSTILE_PLAYBOOKS))
def test_validate_reports_hostile_playbook_as_file_line(tmp_path: Path, case: str) -> None:
    """`suture validate` on a hostile playbook: exit 1, `file:line: message`, no traceback."""
    text, line, message = HOSTILE_PLAYBOOKS[case]
    config = _site(tmp_path)
    playbook = config.parent / "playbooks" / f"{case}.yaml"
    playbook.write_text(text)
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    problems = [p for p in result.stderr.splitlines() if p.startswith(str(playbook))]
    assert len(problems) == 1, result.stderr
    where = f"{playbook}:{line}: " if line is not None else f"{playbook}:"
    assert problems[0].startswith(where), problems[0]
    assert message in problems[0]
    assert result.stderr.strip().endswith("catalog invalid: 1 problem(s)")


def test_validate_reports_tagged_code_file(tmp_path: Path) -> None:
    """A tag in a codes file is one `file:line` problem, exit 1."""
    config = _site(tmp_path)
    codes = config.parent / "codes" / "zz-tagged.yaml"
    codes.write_text("- code: TAG-001\n  title: !!python/object:builtins.object {}\n  severity: low\n")
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{codes}:2: YAML tag '!!python/object:builtins.object' is not allowed" in result.stderr


def test_validate_reports_non_utf8_file_with_its_line(tmp_path: Path) -> None:
    """Latin-1 bytes in a playbook name the file and the line of the first bad byte."""
    config = _site(tmp_path)
    playbook = config.parent / "playbooks" / "latin1.yaml"
    playbook.write_bytes(b"name: latin1\nversion: 1\ndescription: caf\xe9\nsteps: []\n")
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{playbook}:3: not UTF-8 text (byte 0xe9)" in result.stderr


def test_tagged_config_is_one_line_exit_2(tmp_path: Path) -> None:
    """A tag in config.yaml: exit 2 and one `config error: file:line: message` line."""
    config = _site(tmp_path)
    config.write_text(config.read_text() + "http: {timeout: !!python/name:os.system ''}\n")
    line = config.read_text().count("\n")
    result = run_cli("validate", config=config, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"config error: {config}:{line}: YAML tag '!!python/name:os.system' is not allowed here; "
        "write a plain value"
    )


def test_sighup_with_tagged_playbook_is_refused_and_reload_keeps_working(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """A tagged playbook on SIGHUP is refused with file:line; the old catalog serves; a later fix loads."""
    daemon = daemon_factory(f"sqlite:///{tmp_path / 'r.db'}")
    assert daemon.proc is not None
    playbooks = daemon.config_path.parent / "playbooks"
    before = sorted(c["code"] for c in daemon.get("/api/v1/codes")["items"])
    (playbooks / "tagged.yaml").write_text(TAGGED_PLAYBOOK)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "catalog_reload_refused" in daemon.log())
    log = daemon.log()
    assert "tagged.yaml:5: YAML tag '!!python/name:os.system' is not allowed" in log
    assert "Traceback" not in log
    assert sorted(c["code"] for c in daemon.get("/api/v1/codes")["items"]) == before

    (playbooks / "tagged.yaml").unlink()
    codes = daemon.config_path.parent / "codes" / "zz-new.yaml"
    codes.write_text("- code: NEW-001\n  title: New\n  severity: low\n  match: {alertname: BrandNew}\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "NEW-001" in [c["code"] for c in daemon.get("/api/v1/codes")["items"]])
    assert daemon.proc.poll() is None
