"""`python -m bench [ingest|latency|storm|footprint|all] [--json] [--quick] [--sqlite-synchronous S]
[--dead-channel EVENTS] [--gates] [--db sqlite|postgresql] [--load realistic|sequential]`,
`python -m bench history [--quick] [--backend sqlite|postgresql|both]`
and `python -m bench replay [--quick]` (not part of `all`: they fill stores of a million rows)."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import scenarios
from bench.report import Figure, table

#: What `all` runs; `history` and `replay` are only run by name.
ALL = ("ingest", "latency", "storm", "footprint")
CHOICES = (*ALL, "history", "replay", "all")


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its reaped children)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system


def run(
    which: str,
    sizes: scenarios.Sizes,
    work: Path,
    info: dict[str, Any],
    synchronous: str = "full",
    backend: str = "both",
    quick: bool = False,
    db: str = "sqlite",
    load: str = "realistic",
) -> list[Figure]:
    """Run the scenarios; `info["foreign_cpu_cores"]` gets, per scenario, the average number of cores
    that processes outside the benchmark used meanwhile (other work on the machine skews the figures)."""
    figures: list[Figure] = []
    storms: list[scenarios.StormOutcome] = []
    wanted = ALL if which == "all" else (which,)
    foreign: dict[str, float] = info.setdefault("foreign_cpu_cores", {})
    for name in wanted:
        began = time.monotonic()
        busy0, own0 = _cpu_seconds()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        if name == "ingest":
            figures += scenarios.ingest(sizes, work, synchronous, db, load)
            figures += scenarios.lookup(sizes, work, synchronous)
        elif name == "latency":
            figures += scenarios.latency(sizes, work, synchronous)
        elif name == "history":
            figures += scenarios.history(work, backend, quick, info)
        elif name == "replay":
            from bench.replay import replay

            figures += replay(work, quick)
        elif name == "storm":
            storm_figures, storms = scenarios.storm(sizes, work, synchronous)
            figures += storm_figures
        else:
            figures += scenarios.footprint(sizes, work, storms, synchronous)
        wall = time.monotonic() - began
        busy1, own1 = _cpu_seconds()
        foreign[name] = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 2)
        print(f"bench: {name} done in {wall:.1f} s", file=sys.stderr, flush=True)
    return figures


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", nargs="?", default="all", choices=CHOICES)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=("full", "normal"),
        default="full",
        help="database.sqlite_synchronous for Suture and the ceiling (default: full, Suture's default)",
    )
    parser.add_argument(
        "--dead-channel",
        metavar="EVENTS",
        help="configure a notification channel nobody answers, hearing of EVENTS (e.g. all, or escalation)",
    )
    parser.add_argument(
        "--gates",
        action="store_true",
        help="give the automatic bench code every guard rail (storm, flapping, breaker, budgets, a"
        " maintenance window that matches nothing), set loose enough to hold nothing",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="history only: the store to fill (PostgreSQL at 127.0.0.1:5432, user postgres; default: both)",
    )
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="ingest only: the backend of Suture and its ceiling (PostgreSQL at 127.0.0.1:5432, user"
        " postgres, a throwaway database each; default: sqlite)",
    )
    parser.add_argument(
        "--load",
        choices=("realistic", "sequential"),
        default="realistic",
        help="ingest only: realistic (random fingerprints, node-exporter labels) or the older"
        " sequential fingerprints (default: realistic)",
    )
    args = parser.parse_args(argv)
    if args.dead_channel:
        from bench.daemon import DEAD_CHANNEL_ENV

        os.environ[DEAD_CHANNEL_ENV] = args.dead_channel
    if args.gates:
        from bench.daemon import GATES_ENV

        os.environ[GATES_ENV] = "1"
    sizes = (
        scenarios.QUICK if args.quick else scenarios.FULL_PG if args.db == "postgresql" else scenarios.FULL
    )
    info = machine()
    info["sqlite_synchronous"] = args.sqlite_synchronous
    info["dead_channel"] = args.dead_channel
    info["gates"] = args.gates
    info["ingest_db"] = args.db
    info["ingest_load"] = args.load
    tmp = tempfile.mkdtemp(prefix="suture-bench-")
    if args.keep:
        print(f"bench: working in {tmp}", file=sys.stderr)
    began = time.monotonic()
    try:
        figures = run(
            args.scenario,
            sizes,
            Path(tmp),
            info,
            args.sqlite_synchronous,
            args.backend,
            args.quick,
            args.db,
            args.load,
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    info["seconds"] = round(time.monotonic() - began, 1)
    info["loadavg_after"] = os.getloadavg()
    if args.json:
        document = {
            "scenario": args.scenario,
            "quick": args.quick,
            "sizes": sizes.__dict__,
            "machine": info,
            "figures": [f.as_json() for f in figures],
            "all_met": all(f.met is not False for f in figures),
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(table(figures))
        others = ", ".join(f"{k} {v:.2f}" for k, v in info["foreign_cpu_cores"].items())
        print(f"\nCPU cores used by other processes meanwhile (average): {others}")
        if args.scenario in ("ingest", "all"):
            print(f"ingest: database {args.db}, load {args.load}")
        print(
            f"{info['cpus']} CPUs, Python {info['python']}, SQLite synchronous={info['sqlite_synchronous']}, "
            f"{info['seconds']} s, "
            f"load average before {info['loadavg_before'][0]:.2f}, after {info['loadavg_after'][0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
