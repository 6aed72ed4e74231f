"""The benchmark runs end to end on tiny sizes and reports every figure.

Correctness only: no assertion here depends on how fast this machine is.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "ingest: durable alerts/s",
    "ingest: ceiling alerts/s",
    "ingest: share of ceiling",
    "ingest: webhook p50, full load",
    "ingest: webhook p99, full load",
    "ingest: webhook p99, half load",
    "ingest: bodies not answered 202",
    "latency: send to first step, p50",
    "latency: send to first step, p99",
    "latency: queued_at to first step, p50",
    "latency: alerts without a first step",
    "storm: all stored and every run finished",
    "storm: incidents",
    "storm: runs",
    "storm: runs succeeded",
    "storm: alerts stored",
    "storm: 5xx or connection errors",
    "storm: daemon peak RSS (VmHWM)",
    "footprint: serve start to /readyz 200",
    "footprint: idle RSS after start",
    "footprint: RSS after the storm",
}


def test_bench_all_quick_json() -> None:
    """Every scenario runs at tiny size and reports every figure; the storm stores exactly its alerts."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    document = orjson.loads(done.stdout)
    figures = {f["name"]: f for f in document["figures"]}
    assert EXPECTED <= set(figures), EXPECTED - set(figures)
    for name, figure in figures.items():
        assert figure["runs"] >= 1, name
        for key in ("median", "min", "max"):
            value = figure[key]
            assert isinstance(value, int | float) and math.isfinite(value), (name, key, value)
        assert all(isinstance(v, int | float) for v in figure["values"]), name

    sizes = document["sizes"]
    fingerprints = sizes["storm_fingerprints"]
    for name in ("storm: incidents", "storm: runs", "storm: runs succeeded"):
        assert figures[name]["values"] == [fingerprints] * figures[name]["runs"], name
    assert figures["storm: alerts stored"]["median"] == sizes["storm_alerts"]
    assert figures["storm: 5xx or connection errors"]["max"] == 0
    assert figures["ingest: bodies not answered 202"]["max"] == 0
    assert figures["latency: alerts without a first step"]["max"] == 0


HISTORY_EXPECTED = {
    f"history[sqlite]: {name}"
    for name in (
        "fill the store",
        "count the past hours",
        "stats --since 30d",
        "incidents page 1 (top code, 90d)",
        "incidents page 50 (top code, 90d)",
        "incidents page 50 / page 1",
        "runs page 1 (succeeded)",
        "runs page 50 (succeeded)",
        "get_incident (random)",
        "incidents show (get_incident + previous 3)",
        "report handover --since 7d",
        "console /incidents (open, newest 200)",
        "console /incidents?code=top&since=30d",
        "console /incidents/{id} (random)",
        "console /dashboard, first count of 30d",
        "console /dashboard (30d board kept)",
        "ingest into the filled store",
        "ingest into an empty store",
        "ingest filled / empty",
    )
}


def test_bench_history_quick_sqlite_json() -> None:
    """The history scenario fills a small SQLite store, times every read and both ingests, and
    reports each figure with a finite value."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "history", "--quick", "--backend", "sqlite", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    document = orjson.loads(done.stdout)
    assert document["scenario"] == "history"
    assert document["machine"]["history_sizes"]["incidents"] == 1000
    figures = {f["name"]: f for f in document["figures"]}
    assert set(figures) == HISTORY_EXPECTED, HISTORY_EXPECTED ^ set(figures)
    for name, figure in figures.items():
        assert figure["runs"] >= 1, name
        for key in ("median", "min", "max"):
            value = figure[key]
            assert isinstance(value, int | float) and math.isfinite(value), (name, key, value)
        assert all(isinstance(v, int | float) and math.isfinite(v) for v in figure["values"]), name


def test_bench_replay_quick_json() -> None:
    """The replay scenario fills a small store of 30 days and replays it with the real CLI: the
    replay's time, the alerts it read (three an incident) and its peak memory."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "replay", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    figures = {f["name"]: f for f in orjson.loads(done.stdout)["figures"]}
    assert set(figures) == {
        "replay: fill the store",
        "replay: suture replay --since 30d --step 1m",
        "replay: peak memory (--step 1m)",
        "replay: suture replay --since 30d --step 10m",
        "replay: peak memory (--step 10m)",
    }
    assert figures["replay: suture replay --since 30d --step 1m"]["note"].startswith("3,000 alerts, ")
    assert all(math.isfinite(f["median"]) and f["median"] > 0 for f in figures.values())
