"""`python -m bench replay`: 30 days of a 1,000,000-alert history (bench/history.py's generator: 50
codes, 5,000 targets, three alerts an incident) replayed with the real CLI, `suture replay --since
30d --json`, on SQLite: its wall time and the replaying process's peak memory, which must not grow
with the history (the alerts are streamed)."""

from __future__ import annotations

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


def _high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _replay(config: Path, step: str, target: float | None) -> list[Figure]:
    """One `suture replay --since 30d --step STEP`, timed, in a process of its own."""
    began = time.monotonic()
    argv = [sys.executable, "-m", "engine", "replay", "--since", "30d", "--step", step, "--json"]
    with subprocess.Popen(
        [*argv, "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        peak_kb, output = 0, None
        while output is None:
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            try:
                output = proc.communicate(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
        stdout, stderr = output
    took = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError(f"suture replay failed: {stderr.decode()[-2000:]}")
    peak_mb = peak_kb / 1024
    report = orjson.loads(stdout)
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
            note="VmHWM of the CLI process, read while it ran",
        ),
    ]
