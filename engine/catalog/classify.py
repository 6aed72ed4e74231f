"""Which code an alert belongs to: pure logic over the catalog, compiled once per catalog."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.catalog.loader import Catalog
from engine.models import Alert, Code


@dataclass(frozen=True)
class _Rule:
    code: Code
    source: re.Pattern[str] | None
    alertname: re.Pattern[str] | None
    labels: tuple[tuple[str, re.Pattern[str]], ...]
    annotations: tuple[tuple[str, re.Pattern[str]], ...]

    def names_match(self, source: str, alertname: str) -> bool:
        """The source and alert name patterns: what decides for most alerts, and is the same for
        every alert of one name."""
        if self.source is not None and not self.source.fullmatch(source):
            return False
        return self.alertname is None or self.alertname.fullmatch(alertname) is not None

    def details_match(self, alert: Alert) -> bool:
        for key, pattern in self.labels:
            value = alert.labels.get(key)
            if value is None or not pattern.fullmatch(value):
                return False
        for key, pattern in self.annotations:
            value = alert.annotations.get(key)
            if value is None or not pattern.fullmatch(value):
                return False
        return True


#: (source, alert name) pairs whose candidate rules are kept; past that the memory starts afresh
#: (the names come from alerts, so their number is not the catalog's to bound).
NAMES_KEPT = 4096


class Classifier:
    """First matching code wins, in catalog order. A missing label never matches.

    The rules whose source and name patterns match are worked out once per (source, alert name)
    and kept: most alerts are told apart by those alone, and a catalog of many codes would
    otherwise try every code's patterns on every alert."""

    def __init__(self, catalog: Catalog) -> None:
        self._rules = [
            _Rule(
                code=entry.code,
                source=_compile(entry.code.match.source),
                alertname=_compile(entry.code.match.alertname),
                labels=tuple((k, re.compile(v)) for k, v in entry.code.match.labels.items()),
                annotations=tuple((k, re.compile(v)) for k, v in entry.code.match.annotations.items()),
            )
            for entry in catalog.codes
        ]
        self._by_name: dict[tuple[str, str], tuple[_Rule, ...]] = {}

    def classify(self, alert: Alert) -> Code | None:
        key = (alert.source, alert.name)
        candidates = self._by_name.get(key)
        if candidates is None:
            if len(self._by_name) >= NAMES_KEPT:
                self._by_name.clear()
            candidates = tuple(rule for rule in self._rules if rule.names_match(*key))
            self._by_name[key] = candidates
        for rule in candidates:
            if rule.details_match(alert):
                return rule.code
        return None


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None
