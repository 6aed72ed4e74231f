"""`suture incidents list|show`: coded incidents, read without migrating."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from engine.cli.common import (
    cell,
    config_option,
    dump,
    handle_errors,
    json_option,
    open_store,
    read_pages,
    table,
    user_name,
)
from engine.config import Config, load_config
from engine.records import Incident, IncidentDetail

if TYPE_CHECKING:
    from engine.models import Knowledge
    from engine.store import Store
    from engine.store.catalog_history import CatalogHistory


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

    with read_pages(load_config(config_path)) as pages:
        rows = pages.list_incidents(status=status, code=code, since=parse_since(since), limit=limit)
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
    """One incident: its code's knowledge, earlier incidents, alerts, runs with steps, notes, timeline."""
    from engine.analytics.past import teach
    from engine.store.catalog_history import CatalogHistory

    config = load_config(config_path)
    store = open_store(config)
    history = CatalogHistory(store.db)
    detail = store.get_incident(incident_id)
    incident = teach(detail, _knowledge_of(config, history, detail.code), history.previous_incidents(detail))
    if as_json:
        dump(incident)
        return
    _print_incident(store, incident)


def _knowledge_of(config: Config, history: CatalogHistory, code: str) -> Knowledge | None:
    """The code's knowledge in the catalog in force; if the catalog does not load, the newest stored
    version of the code (with a warning), so a broken file never hides what a newcomer needs."""
    from engine.catalog.loader import load_catalog
    from engine.errors import CatalogError, NotFound
    from engine.models import UNCLASSIFIED, Code

    if code == UNCLASSIFIED:
        return None
    try:
        found = load_catalog(config.codes_dir, config.playbooks_dir).find_code(code)
        return found.knowledge if found is not None else None
    except CatalogError as exc:
        try:
            stored = history.code(code)
        except NotFound:
            click.echo(
                f"warning: the catalog does not load ({exc.problems[0]}); no knowledge shown", err=True
            )
            return None
        click.echo(
            f"warning: the catalog does not load ({exc.problems[0]}); knowledge from stored version"
            f" {stored.version.version} of {code}",
            err=True,
        )
        return Code.model_validate(stored.body).knowledge


def _print_incident(store: Store, incident: IncidentDetail) -> None:
    from engine.cli.runs import marked, run_heading, step_block
    from engine.models import UNCLASSIFIED

    click.echo(f"Incident {incident.id}: {incident.code} {incident.title}")
    click.echo(
        f"  {incident.severity}, {incident.status} on {incident.target or 'unknown target'},"
        f" opened {cell(incident.opened_at)}"
    )
    known = incident.knowledge
    if known is None:
        why = (
            "no code matched this alert (UNCLASSIFIED): `suture stats` suggests a match for a new code"
            if incident.code == UNCLASSIFIED
            else f"{incident.code} is not in the catalog in force"
        )
        click.echo(f"\nKnowledge: none ({why})")
    else:
        click.echo(f"\nWhat it is (owner: {known.owner or 'nobody named'}):")
        click.echo(f"  {known.summary or '(no summary)'}")
        _numbered("Diagnosis", known.diagnosis)
        _numbered("Manual steps", known.manual_steps)
        if known.links:
            _numbered("Links", known.links)
    click.echo("\nLast time (same code and target):")
    if not incident.previous:
        click.echo("  (first time)")
    for past in incident.previous:
        click.echo(f"  incident {past.id}, opened {cell(past.opened_at)}: {past.ended}")

    click.echo("\nDetails:")
    for key in Incident.field_names():
        click.echo(f"  {key + ':':16} {cell(getattr(incident, key))}")
    click.echo(f"  {'labels:':16} {json.dumps(incident.labels, ensure_ascii=False)}")

    click.echo(f"\nAlerts ({len(incident.alerts)}, newest first):" if incident.alerts else "\nAlerts: (none)")
    for alert in incident.alerts:
        click.echo(f"  alert {alert.id} {alert.status} {alert.name}, received {cell(alert.received_at)}")
        click.echo(f"    labels:      {json.dumps(alert.labels, ensure_ascii=False, sort_keys=True)}")
        click.echo(f"    annotations: {json.dumps(alert.annotations, ensure_ascii=False, sort_keys=True)}")

    held = [run for run in incident.runs if run.reason and run.status in ("skipped", "cancelled", "expired")]
    if held:
        click.echo("\nHeld back (the gate that said no, and until when where it knows):")
        for run in held:
            click.echo(f"  run {run.id} {run.status}: {run.reason}")

    click.echo("\nRuns:")
    columns = ["id", "playbook", "playbook_version", "status", "trigger", "queued_at", "finished_at", "error"]
    table(marked(incident.runs), columns)
    shown = incident.runs[-_RUNS_WITH_STEPS:]
    if len(incident.runs) > len(shown):
        click.echo(f"  (steps of the newest {len(shown)} runs below; `suture runs show ID` for the others)")
    for run in shown:
        detail = store.get_run(run.id)
        click.echo(f"\n  {run_heading(detail)}")
        for step in detail.steps:
            click.echo(step_block(step))
        if not detail.steps:
            click.echo("    (no steps recorded)")

    click.echo("\nNotes:")
    table(incident.notes, ["at", "by", "text"])
    click.echo("\nTimeline:")
    table(incident.timeline, ["at", "kind", "actor", "message"])


#: `incidents show` prints the steps of this many of the newest runs.
_RUNS_WITH_STEPS = 5


def _numbered(heading: str, items: list[str]) -> None:
    click.echo(f"{heading}:")
    if not items:
        click.echo("  (none written)")
    for number, item in enumerate(items, 1):
        click.echo(f"  {number}. {item}")


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
