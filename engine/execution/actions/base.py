"""The one interface every step action implements, and what actions share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from engine.config import Config
from engine.models import ActionResult


class RunResources:
    """Things an action may keep for the rest of one run (SSH connections); closed at its end."""

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must never fail a run
                pass


@dataclass
class ActionContext:
    config: Config
    #: The incident's target host, already rendered (e.g. "web-1").
    target: str
    #: Wall-clock budget for this attempt, in seconds.
    timeout_seconds: float
    #: Cap for stdout and stderr each, in bytes.
    output_limit_bytes: int
    resources: RunResources = field(default_factory=RunResources)


class Action(Protocol):
    """`params` is the step's model (SshStep, HttpStep, timedelta) with every template rendered."""

    name: ClassVar[str]

    def execute(self, params: Any, ctx: ActionContext) -> ActionResult: ...


TRUNCATION_MARKER = "\n[... output truncated by suture: {omitted} more bytes ...]"


def cap_output(data: bytes | str, limit: int) -> str:
    """Decode and cut output to `limit` bytes, saying how much was cut."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if len(raw) <= limit:
        return raw.decode("utf-8", "replace")
    kept = raw[:limit].decode("utf-8", "ignore")
    return kept + TRUNCATION_MARKER.format(omitted=len(raw) - limit)
