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
