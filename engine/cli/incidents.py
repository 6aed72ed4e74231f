"""`suture incidents list|show`: coded incidents, read without migrating."""

from __future__ import annotations

import json

import click

from engine.cli.common import cell, config_option, dump, handle_errors, json_option, open_store, table
from engine.config import load_config
from engine.records import Incident


@click.group()
def incidents() -> None:
    """Coded incidents."""


@incidents.command("list")
@click.option("--status", type=click.Choice(["open", "resolved"]))
@click.option("--code")
@click.option("--since", help="e.g. 7d, 12h, or an ISO 8601 time")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@config_option
@json_option
@handle_errors
def incidents_list(
    status: str | None, code: str | None, since: str | None, limit: int, config_path: str, as_json: bool
) -> None:
    """List incidents, newest first."""
    from engine.durations import parse_since

    store = open_store(load_config(config_path))
    rows = store.list_incidents(status=status, code=code, since=parse_since(since), limit=limit)
    if as_json:
        dump(rows)
    else:
        table(
            rows,
            [
                "id",
                "code",
                "status",
                "severity",
                "target",
                "occurrences",
                "opened_at",
                "due_at",
                "resolution",
            ],
        )


@incidents.command("show")
@click.argument("incident_id", type=int)
@config_option
@json_option
@handle_errors
def incidents_show(incident_id: int, config_path: str, as_json: bool) -> None:
    """One incident with its alerts, runs and timeline."""
    store = open_store(load_config(config_path))
    incident = store.get_incident(incident_id)
    if as_json:
        dump(incident)
        return
    for key in Incident.field_names():
        click.echo(f"{key + ':':15} {cell(getattr(incident, key))}")
    click.echo(f"{'labels:':15} {json.dumps(incident.labels, ensure_ascii=False)}")
    click.echo("\nRuns:")
    runs = ["id", "playbook", "playbook_version", "status", "queued_at", "finished_at", "error"]
    table(incident.runs, runs)
    click.echo("\nTimeline:")
    table(incident.timeline, ["at", "kind", "message"])
