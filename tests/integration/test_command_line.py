"""The command line: a list command imports only what reading needs (no SQLAlchemy, no structlog,
no executor); a failing hook subscriber is logged on stderr, not raised."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from engine.store.revision import HEAD_REVISION


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_a_list_command_reads_without_importing_sqlalchemy_or_structlog(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("database:\n  url: sqlite:///suture.db\n")
    assert _python("from engine.cli.main import main; main(['db', 'upgrade'])", tmp_path).returncode == 0
    done = _python(
        """
        import sys
        from engine.cli.main import main
        try:
            main(["incidents", "list"])
        except SystemExit as exit:
            assert not exit.code, exit.code
        try:
            main(["runs", "list"])
        except SystemExit as exit:
            assert not exit.code, exit.code
        print(*(name in sys.modules for name in (
            "structlog", "engine.execution.runner", "sqlalchemy", "alembic"
        )))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["(none)", "(none)", "False False False False"]


def test_a_list_command_on_a_database_not_made_yet_makes_it_through_the_store(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("database:\n  url: sqlite:///suture.db\n")
    done = _python("from engine.cli.main import main; main(['incidents', 'list'])", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(none)\n"
    with sqlite3.connect(tmp_path / "suture.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]


def test_a_failing_hook_subscriber_is_logged_on_stderr_and_the_others_still_hear(tmp_path: Path) -> None:
    done = _python(
        """
        from engine.hooks import Hooks, WorkersBusy
        heard = []
        def broken(event):
            raise RuntimeError("subscriber broke")
        hooks = Hooks()
        hooks.subscribe(WorkersBusy, broken)
        hooks.subscribe(WorkersBusy, heard.append)
        hooks.emit(WorkersBusy(busy=1))
        print("heard", len(heard))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "heard 1\n"
    assert "hook_failed" in done.stderr and "hook_event=WorkersBusy" in done.stderr
    assert "RuntimeError: subscriber broke" in done.stderr


def test_each_partial_index_has_the_same_where_on_postgresql_as_on_sqlite() -> None:
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex

    from engine.store.tables import declare_for_postgresql, metadata

    declare_for_postgresql()
    partial = 0
    for table in metadata.tables.values():
        for index in table.indexes:
            on_sqlite = str(CreateIndex(index).compile(dialect=sqlite.dialect()))
            on_postgresql = str(CreateIndex(index).compile(dialect=postgresql.dialect()))
            assert on_sqlite.partition(" WHERE ")[2] == on_postgresql.partition(" WHERE ")[2], index.name
            partial += " WHERE " in on_postgresql
    assert partial == 7
