"""From normalised alerts to classified submissions: code, severity, target, playbook.

`Intake` decides everything about an alert before its write (the writer only commits), so
the daemon and its helper processes share one classification."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.zabbix import SUTURE_SEVERITY as ZABBIX_SEVERITY
from engine.catalog.classify import Classifier
from engine.catalog.loader import Catalog
from engine.config import EscalationConfig
from engine.errors import TemplateError
from engine.hooks import NO_HOOKS, Hooks
from engine.intake.writer import IntakeWriter
from engine.logging import get_logger
from engine.models import (
    UNCLASSIFIED,
    Alert,
    ClassifiedAlert,
    Deadlines,
    EscalationOverride,
    Mode,
    Severity,
    Submission,
)
from engine.policy.guards import NO_RAILS, Rails
from engine.store import Store
from engine.templating import Renderer

log = get_logger("suture.intake")


TARGET_CACHE_SIZE = 8192


@dataclass(frozen=True)
class CatalogView:
    """The catalog in force plus what intake derives from it; swapped whole on reload."""

    catalog: Catalog
    classifier: Classifier
    #: The (name, version) each code runs, looked up once: `Catalog.playbook_for` scans every
    #: playbook version, and intake asks for each alert.
    playbooks: dict[str, tuple[str, int] | None]
    #: Each code's first-response and resolve deadlines: the config's for its severity, or its own.
    deadlines: dict[str, Deadlines]
    #: The deadlines of an alert no code matches, by the severity it is given (`unclassified_severity`).
    unclassified: dict[Severity, Deadlines]
    #: The codes with a canary: its version and the share of incidents that run it.
    canaries: dict[str, tuple[tuple[str, int], float]] = field(default_factory=dict)

    @classmethod
    def of(cls, catalog: Catalog, escalation: EscalationConfig | None = None) -> CatalogView:
        escalation = escalation or EscalationConfig()
        playbooks: dict[str, tuple[str, int] | None] = {}
        deadlines: dict[str, Deadlines] = {}
        for entry in catalog.codes:
            code = entry.code
            found = catalog.playbook_for(code)
            playbooks[code.code] = (found.playbook.name, found.playbook.version) if found else None
            deadlines[code.code] = _deadlines(escalation, code.severity, code.escalation)
        unclassified = {severity: _deadlines(escalation, severity, None) for severity in Severity}
        canaries = {
            entry.code.code: (entry.code.canary.version, entry.code.canary.share)
            for entry in catalog.codes
            if entry.code.canary is not None
        }
        return cls(catalog, Classifier(catalog), playbooks, deadlines, unclassified, canaries)


def in_share(alert: Alert, share: float) -> bool:
    """Whether this alert's incident is among `share` of all, chosen by the incident (its
    fingerprint and start), so every delivery of it and every replay choose alike."""
    start = alert.starts_at.isoformat() if alert.starts_at is not None else ""
    digest = hashlib.sha256(f"{alert.fingerprint}|{start}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def unclassified_severity(alert: Alert) -> Severity:
    """The severity of an alert no code matches: a Zabbix severity mapped to Suture's, a `severity`
    label that already names one of Suture's, else medium."""
    given = (alert.labels.get("severity") or "").strip().lower()
    named = ZABBIX_SEVERITY.get(given) if alert.source == "zabbix" else given
    try:
        return Severity(named) if named else Severity.medium
    except ValueError:
        return Severity.medium


def _deadlines(
    escalation: EscalationConfig, severity: Severity, override: EscalationOverride | None
) -> Deadlines:
    respond = escalation.respond_within.get(severity.value)
    resolve = escalation.resolve_within.get(severity.value)
    if override is not None:
        respond = override.respond_within or respond
        resolve = override.resolve_within or resolve
    return Deadlines(respond, resolve)


class Intake(IntakeWriter):
    """Classification against the catalog in force, plus the writer."""

    def __init__(
        self,
        store: Store,
        view: CatalogView,
        on_runs_queued: Callable[[], None] | None = None,
        hooks: Hooks = NO_HOOKS,
        rails: Rails = NO_RAILS,
    ) -> None:
        super().__init__(store, on_runs_queued, hooks, rails)
        self.view = view
        self._renderer = Renderer()
        self._targets: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def classify(self, alert: Alert) -> ClassifiedAlert:
        view = self.view
        code = view.classifier.classify(alert)
        if code is None:
            severity = unclassified_severity(alert)
            return ClassifiedAlert(
                alert=alert,
                code=UNCLASSIFIED,
                title=alert.name,
                severity=severity,
                target=_fallback_target(alert),
                mode=Mode.manual,
                playbook=None,
                deadlines=view.unclassified[severity],
            )
        return ClassifiedAlert(
            alert=alert,
            code=code.code,
            title=code.title,
            severity=code.severity,
            target=self._target(code.target, alert) if code.target else _fallback_target(alert),
            mode=code.mode,
            playbook=self._version(code.code, alert),
            dry_run=code.dry_run,
            policy=code.policy,
            deadlines=view.deadlines[code.code],
            shadow=code.shadow_version,
        )

    def _version(self, code: str, alert: Alert) -> tuple[str, int] | None:
        """The playbook version this alert's incident runs: the code's, or its canary's for the
        canary's share of incidents."""
        canary = self.view.canaries.get(code)
        if canary is not None and in_share(alert, canary[1]):
            return canary[0]
        return self.view.playbooks[code]

    def _target(self, template: str, alert: Alert) -> str:
        """Render a code's target template; a repeat of the same labels reuses the last answer."""
        simple = _simple_target(template, alert.labels)
        if simple is not None:
            return simple
        labels_only = "annotations" not in template and "alert" not in template
        key = (template, tuple(alert.labels.items()))
        if labels_only and (cached := self._targets.get(key)) is not None:
            return cached
        context = {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "alert": alert.model_dump(mode="json"),
        }
        try:
            target = self._renderer.render(template, context).strip()
        except TemplateError as exc:
            # Never another host: a guess could send a remediation to the wrong machine. The
            # incident has no target and its run is held (engine.intake.runs: `target` gate).
            log.warning("target_template_failed", fingerprint=alert.fingerprint, error=str(exc))
            target = ""
        if labels_only:
            if len(self._targets) >= TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[key] = target
        return target

    def prepare(self, source: str, body: str, alerts: list[Alert]) -> Submission:
        return Submission(source=source, body=body, alerts=[self.classify(a) for a in alerts])


#: `{{ labels.x }}` and `{{ labels.x.split(':')[0] }}`: the shapes nearly every code uses,
#: evaluated directly (same result as the sandboxed render) because intake renders per alert.
_SIMPLE_TARGET = re.compile(r"^\{\{\s*labels\.([A-Za-z_][A-Za-z0-9_]*)(\.split\(':'\)\[0\])?\s*\}\}$")


def _simple_target(template: str, labels: dict[str, str]) -> str | None:
    match = _SIMPLE_TARGET.match(template)
    if match is None or match.group(1) not in labels:
        return None  # not simple, or missing: let the real render decide (and report)
    value = labels[match.group(1)]
    return (value.split(":")[0] if match.group(2) else value).strip()


def _fallback_target(alert: Alert) -> str:
    for key in ("instance", "host", "hostname", "target", "node"):
        if value := alert.labels.get(key):
            return value.split(":")[0] if key == "instance" else value
    return ""
