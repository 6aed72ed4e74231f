"""Circuit breakers per playbook version (`policy.breaker: {failures: N}`).

A version that failed (or did not help) N times in a row is probably wrong, not unlucky: after
the Nth consecutive bad run its breaker opens and automatic runs of that version are held until
a person resets it. The counting rule is `after_run`; engine/store/breakers.py applies the same
rule inside the transaction that finishes the run (the store cannot import this layer).
"""

from __future__ import annotations

from datetime import datetime

from engine.policy.decisions import ALLOW, Decision, Hold
from engine.policy.request import RunHistory, RunRequest


def after_run(failures: int, threshold: int, bad: bool) -> tuple[int, bool]:
    """The consecutive count after one more run, and whether a closed breaker opens now.

    A good run sets the count to 0; a bad one adds 1, and the breaker opens when the count
    reaches `threshold`."""
    count = failures + 1 if bad else 0
    return count, bad and count >= threshold


def breaker(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """No automatic run of a playbook version whose breaker is open."""
    why = history.open_breakers.get((request.playbook, request.version))
    if why is None:
        return ALLOW
    return Hold(f"breaker open for {request.playbook}@{request.version}: {why}", gate="breaker")
