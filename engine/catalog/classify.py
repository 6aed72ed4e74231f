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

    def matches(self, alert: Alert) -> bool:
        if self.source is not None and not self.source.fullmatch(alert.source):
            return False
        if self.alertname is not None and not self.alertname.fullmatch(alert.name):
            return False
        for key, pattern in self.labels:
            value = alert.labels.get(key)
            if value is None or not pattern.fullmatch(value):
                return False
        for key, pattern in self.annotations:
            value = alert.annotations.get(key)
            if value is None or not pattern.fullmatch(value):
                return False
        return True


class Classifier:
    """First matching code wins, in catalog order. A missing label never matches."""

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

    def classify(self, alert: Alert) -> Code | None:
        for rule in self._rules:
            if rule.matches(alert):
                return rule.code
        return None


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None
