"""`python -m bench replay`: 30 days of a 1,000,000-alert history (bench/history.py's generator: 50
codes, 5,000 targets, three alerts an incident) replayed with the real CLI, `suture replay --since
30d --json`, on SQLite: its wall time and the replaying process's peak memory, which must not grow
with the history (the alerts are streamed)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml

from bench.history import SEVERITIES, Generator, HistorySizes, code_name, fill_sqlite
from bench.report import Figure

#: 333,334 incidents of three alerts: 1,000,002 alerts in 30 days.
FULL = HistorySizes(incidents=333_334, days=30)
QUICK = HistorySizes(incidents=1000, days=30, targets=50, chunk=500)
PLAYBOOK = (
    "name: {name}\nversion: {version}\ndescription: Does nothing.\nsteps:\n  - name: pause\n    wait: 0s\n"
)


def write_site(folder: Path, sizes: HistorySizes) -> Path:
    """The history's catalog as files (each code auto on its own playbook, versions 1 and 2)."""
    (folder / "codes").mkdir(parents=True, exist_ok=True)
    (folder / "playbooks").mkdir(parents=True, exist_ok=True)
    codes = [
        {
            "code": code_name(k),
            "title": f"Synthetic problem {k}",
            "severity": SEVERITIES[k % 4],
            "match": {"source": "alertmanager", "alertname": f"Alert{k:03d}"},
            "target": "{{ labels.instance.split(':')[0] }}",
            "playbook": f"pb-{k:03d}",
            "mode": "auto",
            "policy": {"cooldown": "30m", "max_runs": 3, "per": "1h"},
        }
        for k in range(sizes.codes)
    ]
    (folder / "codes" / "history.yaml").write_text(yaml.safe_dump(codes, sort_keys=False))
    for k in range(sizes.codes):
        for version in (1, 2):
            name = f"pb-{k:03d}"
            (folder / "playbooks" / f"{name}-{version}.yaml").write_text(
                PLAYBOOK.format(name=name, version=version)
            )
    config = {
        "database": {"url": "sqlite:///suture.db"},
        "catalog": {"codes_dir": "codes", "playbooks_dir": "playbooks"},
        "logging": {"level": "warning", "format": "json"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def replay(work: Path, quick: bool) -> list[Figure]:
    from engine.store import open_database

    sizes = QUICK if quick else FULL
    folder = work / "replay"
    config = write_site(folder, sizes)
    now = datetime.now(UTC).replace(microsecond=0)
    began = time.monotonic()
    open_database(f"sqlite:///{folder / 'suture.db'}", upgrade=True).dispose()
    gen = Generator(sizes, now.timestamp())
    fill_sqlite(folder / "suture.db", gen)
    filled = time.monotonic() - began
    print(f"bench: replay filled {gen.alerts:,} alerts in {filled:.0f} s", file=sys.stderr, flush=True)
    figures = [Figure("replay: fill the store", "s", [filled], note=f"{gen.alerts:,} alerts over 30 days")]
    for step, target in (("1m", 60.0), ("10m", None)):
        figures += _replay(config, step, target)
    return figures


def _replay(config: Path, step: str, target: float | None) -> list[Figure]:
    """One `suture replay --since 30d --step STEP`, timed, in a process of its own."""
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "replay",
            "--since",
            "30d",
            "--step",
            step,
            "--json",
            "--config",
            str(config),
        ],
        capture_output=True,
        timeout=1800,
        check=False,
    )
    took = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"suture replay failed: {done.stderr.decode()[-2000:]}")
    report = orjson.loads(done.stdout)
    # ru_maxrss of the children is the largest of them: each replay is measured alone.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    incidents = sum(c["replayed"]["incidents"] for c in report["codes"])
    note = (
        f"{report['alerts']:,} alerts, {incidents:,} incidents replayed, "
        f"{report['decisions_changed_total']:,} decisions changed"
    )
    op = None if target is None else "<="
    return [
        Figure(
            f"replay: suture replay --since 30d --step {step}", "s", [took], op=op, target=target, note=note
        ),
        Figure(
            f"replay: peak memory (--step {step})",
            "MB",
            [peak_mb],
            note="the largest CLI process so far, ru_maxrss",
        ),
    ]
