"""Which channels hear of an event: pure, over the channels' `events` and `match`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.config import ChannelConfig


@dataclass(frozen=True, slots=True)
class Facts:
    """What a channel's `match` may look at."""

    severity: str
    code: str
    owner: str
    target: str


class Router:
    def __init__(self, channels: Sequence[ChannelConfig]) -> None:
        self._routes = [(channel, _compiled(channel)) for channel in channels]

    def channels_for(self, event: str, facts: Facts) -> list[str]:
        """The names of the channels that hear of `event` about an incident with these facts."""
        return [
            channel.name
            for channel, patterns in self._routes
            if channel.hears(event)
            and all(pattern.fullmatch(getattr(facts, key)) for key, pattern in patterns.items())
        ]


def _compiled(channel: ChannelConfig) -> dict[str, re.Pattern[str]]:
    match = channel.match
    given = {"severity": match.severity, "code": match.code, "owner": match.owner, "target": match.target}
    return {key: re.compile(value) for key, value in given.items() if value is not None}
