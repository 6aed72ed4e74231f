"""What a silence or a maintenance window applies to: `KEY=REGEX` matchers over an incident's facts.

DESIGN.md: the keys are `code`, `target`, `severity`, `source`, `alertname` and `labels.NAME`; values
are regular expressions matched in full. Every matcher must match (an empty set matches nothing:
a silence of everything is the global pause, not a silence). Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import InvalidArgument

#: The keys a matcher may name besides `labels.NAME`.
FACT_KEYS = ("code", "target", "severity", "source", "alertname")
LABEL_PREFIX = "labels."


@dataclass(frozen=True, slots=True)
class Subject:
    """The facts of one incident (or of the alert that would open it) that matchers look at."""

    code: str
    target: str
    severity: str
    source: str
    alertname: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        if key.startswith(LABEL_PREFIX):
            return self.labels.get(key[len(LABEL_PREFIX) :])
        return str(getattr(self, key))


@dataclass(frozen=True, slots=True)
class Matchers:
    """Compiled matchers; `source` keeps them as written (stored, shown, compared)."""

    source: tuple[tuple[str, str], ...]
    patterns: tuple[tuple[str, re.Pattern[str]], ...]

    def as_dict(self) -> dict[str, str]:
        return dict(self.source)

    def matches(self, subject: Subject) -> bool:
        """Every matcher matches in full; a missing label never matches."""
        if not self.patterns:
            return False
        for key, pattern in self.patterns:
            value = subject.value(key)
            if value is None or pattern.fullmatch(value) is None:
                return False
        return True


def check_key(key: str) -> None:
    if key in FACT_KEYS:
        return
    if key.startswith(LABEL_PREFIX) and len(key) > len(LABEL_PREFIX):
        return
    allowed = ", ".join((*FACT_KEYS, "labels.NAME"))
    raise InvalidArgument(f"matcher key {key!r} is not one of {allowed}")


def compile_matchers(given: Mapping[str, str], where: str = "match") -> Matchers:
    """Check and compile `{key: regex}`; an unknown key or a bad regex is an `InvalidArgument`
    naming `where` and the key."""
    if not given:
        raise InvalidArgument(f"{where}: at least one matcher is needed (KEY=REGEX)")
    source: list[tuple[str, str]] = []
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for key, regex in sorted(given.items()):
        try:
            check_key(key)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        if not isinstance(regex, str):
            raise InvalidArgument(f"{where}.{key}: the value must be a regular expression (a string)")
        try:
            patterns.append((key, re.compile(regex)))
        except re.error as exc:
            raise InvalidArgument(f"{where}.{key}: not a regular expression: {exc}") from None
        source.append((key, regex))
    return Matchers(tuple(source), tuple(patterns))


def parse_pairs(pairs: list[str] | tuple[str, ...], where: str = "--match") -> dict[str, str]:
    """`["code=DISK-.*", "labels.team=db"]` as a dict; `KEY=REGEX` is split at the first `=`."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, regex = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{where} {pair!r}: expected KEY=REGEX")
        found[key.strip()] = regex
    return found
