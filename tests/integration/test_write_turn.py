"""SQLite writers of different processes take turns on a lock file next to the database."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from tests.conftest import ROOT


def test_sqlite_writers_of_two_processes_take_turns(tmp_path: Path) -> None:
    """`WriteTurn` holds other processes off until released (flock next to the database)."""
    database = tmp_path / "turns.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""\
                import sys
                from engine.store.db import WriteTurn
                turn = WriteTurn({str(database)!r})
                with turn:
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        from engine.store.db import WriteTurn

        taken = threading.Event()

        def take() -> None:
            with WriteTurn(str(database)):
                taken.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        assert not taken.wait(0.5), "took the turn while another process held it"
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert taken.wait(10), "did not take the turn after the other process released it"
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
