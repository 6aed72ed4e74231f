"""What a user sees when the input is wrong: one line naming what is wrong, a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine.cli.common import handle_errors
from engine.cli.main import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: sqlite:///{tmp_path / 'suture.db'}\n")
    return path


@pytest.mark.parametrize(
    ("command", "since", "message"),
    [
        ("incidents", "nonsense", "since: expected a duration like 7d or an ISO 8601 time, got 'nonsense'"),
        ("runs", "yesterday", "since: expected a duration like 7d or an ISO 8601 time, got 'yesterday'"),
        ("runs", "999999999d", "since: '999999999d' reaches back further than any date"),
    ],
)
def test_bad_since_is_one_line_and_exit_1(config: Path, command: str, since: str, message: str) -> None:
    """`--since` that is neither a duration nor a time: `error: since: ...` on stderr, exit 1."""
    result = CliRunner().invoke(main, [command, "list", "--since", since, "--config", str(config)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("stdin", "message"),
    [(b"", "the password is empty"), (b"\n", "the password is empty"), (b"\xff\xfe", "not UTF-8")],
)
def test_access_hash_refuses_what_is_no_password(stdin: bytes, message: str) -> None:
    """`suture access hash` with an empty or undecodable password says so and exits 1."""
    result = CliRunner().invoke(main, ["access", "hash"], input=stdin)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stdout == ""


def test_bad_yaml_in_config_names_file_and_line(tmp_path: Path) -> None:
    """A config.yaml that is not YAML: `config error: FILE:LINE: invalid YAML: ...`, exit 2."""
    path = tmp_path / "config.yaml"
    path.write_text("database:\n  url: sqlite:///x.db\nserver: [unclosed\n")
    result = CliRunner().invoke(main, ["incidents", "list", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"config error: {path}:")
    assert "invalid YAML" in result.stderr and "Traceback" not in result.stderr


def test_a_bug_is_not_dressed_as_a_user_error() -> None:
    """A ValueError from a bug keeps its traceback: it is never printed as `error: ...` with exit 1."""

    @click.command()
    @handle_errors
    def broken() -> None:
        raise ValueError("a bug")

    result = CliRunner().invoke(broken, [])
    assert isinstance(result.exception, ValueError)
    assert "error: a bug" not in result.stderr
