"""`suture rollout status CODE`: a code's playbook versions side by side (the live one, its canary,
and any other that ran in the window), with a plain-words verdict on the canary, and how its
shadow version rendered beside the live runs.

Effectiveness (effective runs / runs that started, DESIGN.md) is compared by its 95 % Wilson score
interval: a canary is better or worse only when the two intervals do not overlap, which for small
counts is what "not enough evidence yet" means. Pure: it reads the window's run tallies."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.models import Code
from engine.store.history import ShadowTally
from engine.store.tallies import RunTally

#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959964


def wilson(hits: int, tries: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion hits/tries; None without tries."""
    if tries <= 0:
        return None
    p = hits / tries
    denominator = 1 + z * z / tries
    centre = (p + z * z / (2 * tries)) / denominator
    spread = z * math.sqrt(p * (1 - p) / tries + z * z / (4 * tries * tries)) / denominator
    return round(max(0.0, centre - spread), 4), round(min(1.0, centre + spread), 4)


@dataclass(frozen=True)
class Version:
    playbook: str
    version: int
    role: str  # live | canary | earlier
    runs: int
    succeeded: int
    effective: int
    durations_us: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        median = statistics.median(self.durations_us) / 1_000_000 if self.durations_us else None
        return {
            "playbook": self.playbook,
            "version": self.version,
            "role": self.role,
            "runs": self.runs,
            "succeeded": self.succeeded,
            "success_rate": round(self.succeeded / self.runs, 4) if self.runs else None,
            "effective": self.effective,
            "effectiveness": round(self.effective / self.runs, 4) if self.runs else None,
            "effectiveness_interval": wilson(self.effective, self.runs),
            "median_duration_seconds": None if median is None else round(median, 3),
        }


def versions(code: Code, live: tuple[str, int] | None, tallies: Sequence[RunTally]) -> list[Version]:
    """Every version of the code's playbook that ran for it in the window, and the live and canary
    ones even without runs; live first, then canary, the others newest first. (A shadow version
    never runs: `shadow_report` says how it rendered.)"""
    roles: dict[tuple[str, int], str] = {}
    if live is not None:
        roles[live] = "live"
    if code.canary is not None:
        roles.setdefault(code.canary.version, "canary")
    found: dict[tuple[str, int], list[RunTally]] = {key: [] for key in roles}
    for tally in tallies:
        if tally.code == code.code:
            found.setdefault((tally.playbook, tally.version), []).append(tally)
    order = {"live": 0, "canary": 1, "earlier": 2}
    shown = [
        Version(
            playbook,
            version,
            roles.get((playbook, version), "earlier"),
            sum(t.runs for t in group),
            sum(t.succeeded for t in group),
            sum(t.effective for t in group),
            tuple(us for t in group for us in t.durations_us),
        )
        for (playbook, version), group in found.items()
    ]
    return sorted(shown, key=lambda v: (order[v.role], -v.version))


def verdict(shown: Sequence[Version]) -> str:
    """The canary against the live version, in plain words."""
    live = next((v for v in shown if v.role == "live"), None)
    canary = next((v for v in shown if v.role == "canary"), None)
    if live is None:
        return "the code runs no playbook"
    if canary is None:
        return f"no canary: every incident runs {live.playbook}@{live.version}"
    new, old = f"v{canary.version}", f"v{live.version}"
    evidence = f"{new} fixed {canary.effective} of {canary.runs}, {old} fixed {live.effective} of {live.runs}"
    ours, theirs = wilson(canary.effective, canary.runs), wilson(live.effective, live.runs)
    if ours is None or theirs is None:
        return f"{evidence}: not enough evidence yet"
    if ours[0] > theirs[1]:
        return f"{new} is better: promote by setting playbook: {canary.playbook}@{canary.version}"
    if ours[1] < theirs[0]:
        return f"{new} is worse: remove the canary and keep playbook: {live.playbook}@{live.version}"
    return f"{evidence}: not enough evidence yet"


def shadow_report(code: Code, tallies: Sequence[ShadowTally]) -> dict[str, Any] | None:
    """The code's shadow version rendered beside its live runs in the window: how often, and how
    often it would have failed before doing anything (a template or `when` error). None: no
    shadow is set and none was rendered."""
    wanted = code.shadow_version
    if wanted is not None:
        found = next((t for t in tallies if (t.playbook, t.version) == wanted), None)
        shown = wanted
    elif tallies:  # no shadow now: the one rendered last in the window
        found = tallies[-1]
        shown = (found.playbook, found.version)
    else:
        return None
    playbook, version = shown
    rendered, failed = (0, 0) if found is None else (found.rendered, found.failed)
    name = f"{playbook}@{version}"
    if not rendered:
        said = f"{name} has not been rendered yet: no incident of {code.code} since"
    elif failed:
        said = f"{name} failed to render {failed} of {rendered} times: fix it before promoting"
    else:
        said = f"{name} rendered cleanly beside the live run every time ({rendered} of {rendered})"
    return {
        "playbook": playbook,
        "version": version,
        "in_force": wanted == (playbook, version),
        "rendered": rendered,
        "failed": failed,
        "last_error": found.last_error if found is not None else None,
        "said": said,
    }
