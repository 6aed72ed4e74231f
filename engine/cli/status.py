"""`suture status`: what on-call checks first, read from the database without migrating."""

from __future__ import annotations

import click

from engine.cli.common import config_option, dump, handle_errors, json_option, open_store
from engine.config import load_config


@click.command()
@config_option
@json_option
@handle_errors
def status(config_path: str, as_json: bool) -> None:
    """Paused?, queue depth, running, awaiting approval, open and overdue incidents, notifications."""
    from datetime import UTC, datetime

    from engine.store.catalog_history import CatalogHistory

    now = datetime.now(UTC)
    current = CatalogHistory(open_store(load_config(config_path)).db).status(now)
    if as_json:
        dump(current)
        return
    lines = [
        ("paused", "YES: no automatic run starts (`suture resume`)" if current.paused else "no"),
        ("queue depth", f"{current.queued} queued"),
        ("running", str(current.running)),
        ("awaiting approval", str(current.awaiting_approval)),
        ("open incidents", f"{current.open_incidents} ({current.overdue_incidents} overdue)"),
        (
            "notifications",
            f"{current.notifications_pending} pending, {current.notifications_failed} failed",
        ),
        ("open breakers", ", ".join(map(str, current.open_breakers)) or "none"),
        ("active silences", ", ".join(map(str, current.active_silences)) or "none"),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':19} {value}")
