"""From normalised alerts to committed incidents: classify, then group-commit on one writer.

One writer thread owns every intake write. Requests hand it a Submission and wait for the
commit that holds it, so concurrent webhooks share transactions instead of fighting over
SQLite's lock (see shared/PERFORMANCE.md: one writer with grouped commits has the best tail).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import structlog

from engine.catalog import Catalog
from engine.classify import Classifier
from engine.errors import StoreUnavailable, TemplateError
from engine.models import UNCLASSIFIED, Alert, Mode, Severity
from engine.store import Store
from engine.store.ingest import ClassifiedAlert, Receipt, Submission
from engine.templating import Renderer

log = structlog.get_logger("suture.intake")

MAX_BATCH = 256
TARGET_CACHE_SIZE = 8192


@dataclass(frozen=True)
class CatalogView:
    """The catalog in force plus what intake derives from it; swapped whole on reload."""

    catalog: Catalog
    classifier: Classifier
    #: The (name, version) each code runs, looked up once: `Catalog.playbook_for` scans every
    #: playbook version, and intake asks for each alert.
    playbooks: dict[str, tuple[str, int] | None]

    @classmethod
    def of(cls, catalog: Catalog) -> CatalogView:
        playbooks: dict[str, tuple[str, int] | None] = {}
        for entry in catalog.codes:
            found = catalog.playbook_for(entry.code)
            playbooks[entry.code.code] = (found.playbook.name, found.playbook.version) if found else None
        return cls(catalog, Classifier(catalog), playbooks)


class IntakeWriter:
    """The writer thread alone: what an intake helper process runs (the daemon classifies)."""

    def __init__(self, store: Store, on_runs_queued: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_runs_queued = on_runs_queued
        self._queue: queue.Queue[tuple[Submission, Future[Receipt]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suture-intake-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, submission: Submission) -> Future[Receipt]:
        """Queue for the writer; the future completes once the submission is committed."""
        future: Future[Receipt] = Future()
        if self._thread is None:
            future.set_exception(StoreUnavailable("intake writer is not running"))
        else:
            self._queue.put((submission, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[Submission, Future[Receipt]]]) -> None:
        outcomes = self.commit([submission for submission, _ in batch])
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Receipt):
                future.set_result(outcome)
            else:
                future.set_exception(outcome)
        self.after_commit([outcome for outcome in outcomes if isinstance(outcome, Receipt)])

    def commit(self, batch: list[Submission]) -> list[Receipt | StoreUnavailable]:
        """Store the batch in one transaction: a receipt per submission, or why it was not stored."""
        try:
            return list(self.store.ingest(batch))
        except Exception as exc:  # noqa: BLE001 - every sender must hear the outcome
            if len(batch) > 1:
                # One poisoned submission must not fail its neighbours: retry one by one.
                return [outcome for submission in batch for outcome in self.commit([submission])]
            log.error("intake_write_failed", error=str(exc), source=batch[0].source)
            if isinstance(exc, StoreUnavailable):
                return [exc]
            return [StoreUnavailable(f"could not store alerts: {exc}")]

    def after_commit(self, receipts: list[Receipt]) -> None:
        """Log what was stored and wake the workers if runs were queued."""
        for receipt in receipts:
            log.info(
                "event_stored",
                event_id=receipt.event_id,
                alerts=receipt.alerts,
                opened=receipt.opened,
                resolved=receipt.resolved,
                runs_queued=receipt.runs_queued,
            )
        if self._on_runs_queued is not None and any(r.runs_queued for r in receipts):
            self._on_runs_queued()


class Intake(IntakeWriter):
    """Classification against the catalog in force, plus the writer."""

    def __init__(
        self, store: Store, view: CatalogView, on_runs_queued: Callable[[], None] | None = None
    ) -> None:
        super().__init__(store, on_runs_queued)
        self.view = view
        self._renderer = Renderer()
        self._targets: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def classify(self, alert: Alert) -> ClassifiedAlert:
        view = self.view
        code = view.classifier.classify(alert)
        if code is None:
            return ClassifiedAlert(
                alert=alert,
                code=UNCLASSIFIED,
                title=alert.name,
                severity=Severity.medium,
                target=_fallback_target(alert),
                mode=Mode.manual,
                playbook=None,
            )
        return ClassifiedAlert(
            alert=alert,
            code=code.code,
            title=code.title,
            severity=code.severity,
            target=self._target(code.target, alert) if code.target else _fallback_target(alert),
            mode=code.mode,
            playbook=view.playbooks[code.code],
            dry_run=code.dry_run,
            policy=code.policy,
        )

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
            log.warning("target_template_failed", fingerprint=alert.fingerprint, error=str(exc))
            target = _fallback_target(alert)
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
