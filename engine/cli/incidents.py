"""`suture incidents list|show`: coded incidents, read without migrating."""

from __future__ import annotations

import json

import click

from engine.cli.common import (
    cell,
    config_option,
    dump,
    handle_errors,
    json_option,
    open_store,
    table,
    user_name,
)
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
    click.echo("\nNotes:")
    table(incident.notes, ["at", "by", "text"])
    click.echo("\nTimeline:")
    table(incident.timeline, ["at", "kind", "actor", "message"])


by_option = click.option("--by", default=None, help="Who does this (default: your login name).")


@incidents.command("ack")
@click.argument("incident_id", type=int)
@by_option
@config_option
@json_option
@handle_errors
def incidents_ack(incident_id: int, by: str | None, config_path: str, as_json: bool) -> None:
    """Acknowledge an incident (first response): stops response escalation."""
    incident = open_store(load_config(config_path)).acknowledge(incident_id, by or user_name())
    if as_json:
        dump(incident)
    else:
        click.echo(f"incident {incident.id} acknowledged by {incident.acknowledged_by}")


@incidents.command("note")
@click.argument("incident_id", type=int)
@click.argument("text")
@by_option
@config_option
@json_option
@handle_errors
def incidents_note(incident_id: int, text: str, by: str | None, config_path: str, as_json: bool) -> None:
    """Add a note to an incident; it stays with the code's history."""
    _require_text(text, "TEXT")
    note = open_store(load_config(config_path)).add_note(incident_id, by or user_name(), text)
    if as_json:
        dump(note)
    else:
        click.echo(f"note added to incident {incident_id} by {note.by}")


@incidents.command("resolve")
@click.argument("incident_id", type=int)
@by_option
@click.option("--note", default=None, help="Why or how it was resolved; kept as a note.")
@config_option
@json_option
@handle_errors
def incidents_resolve(
    incident_id: int, by: str | None, note: str | None, config_path: str, as_json: bool
) -> None:
    """Close an incident by hand (resolution `manual`)."""
    if note is not None:
        _require_text(note, "--note")
    incident = open_store(load_config(config_path)).resolve_by_hand(incident_id, by or user_name(), note)
    if as_json:
        dump(incident)
    else:
        click.echo(f"incident {incident.id} resolved by hand")


def _require_text(text: str, name: str) -> None:
    from engine.errors import InvalidArgument

    if not text.strip():
        raise InvalidArgument(f"{name} is empty")
