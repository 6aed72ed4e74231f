"""`suture run PLAYBOOK --alert FILE.json`: a run by hand, recorded like any other."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from connectors import get_connector
from engine.catalog.versions import stored_versions
from engine.cli.common import checked_catalog
from engine.config import Config
from engine.errors import InvalidPayload, NotFound, SutureError
from engine.execution.runner import Runner
from engine.intake.classify import CatalogView, Intake
from engine.intake.runs import run_context
from engine.models import Alert, RunStatus
from engine.store import Store, open_database
from engine.templating import Renderer


def read_alert(path: Path, config: Config) -> Alert:
    """An Alertmanager body, a generic body, or a single generic alert object."""
    try:
        payload = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SutureError(f"{path}: cannot read alert JSON: {exc}") from exc
    if isinstance(payload, dict) and "alerts" in payload:
        source = "alertmanager" if "version" in payload else "generic"
    else:
        source, payload = "generic", {"alerts": [payload]}
    try:
        alerts = get_connector(source).parse(payload, config.source(source), datetime.now(UTC))
    except InvalidPayload as exc:
        raise SutureError(f"{path}: {exc.field}: {exc.message}") from exc
    return alerts[0]


def run_by_hand(
    config: Config, ref: str, alert_file: Path, *, dry_run: bool, echo: Callable[[dict[str, Any]], None]
) -> RunStatus:
    store = Store(
        open_database(
            config.database_url, upgrade="if_behind", sqlite_synchronous=config.database.sqlite_synchronous
        )
    )
    # A rehearsal publishes nothing: the playbook as it is on disk, not compared with nor stored
    # as a version, so editing it afterwards needs no new version number.
    catalog = checked_catalog(config, None if dry_run else store)
    if not dry_run:
        store.sync_catalog(*stored_versions(catalog))
    entry = catalog.get_playbook(ref)
    if entry is None:
        raise NotFound(f"playbook {ref!r} is not in the catalog")
    alert = read_alert(alert_file, config)
    classified = Intake(store, CatalogView.of(catalog)).classify(alert)
    context = run_context(classified, 0, datetime.now(UTC))
    context["incident"]["id"] = None
    run_id = store.create_manual_run(
        entry.playbook.name, entry.playbook.version, context, dry_run=dry_run, status=RunStatus.running
    )

    def record(step: dict[str, Any]) -> None:
        store.record_step(run_id, step)
        echo(step)

    code = (context.get("code") or {}).get("code")
    outcome = Runner(config, Renderer(config.secret_values())).execute(
        entry.playbook,
        context,
        dry_run=dry_run,
        record=record,
        patterns=catalog.match_patterns(code) if code else {},
    )
    store.finish_run(run_id, outcome.status, outcome.error, remediated=False)
    return outcome.status
