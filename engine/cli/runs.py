"""`suture runs list|show`, `suture approve|reject`: remediation runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from engine.records import Run, StepResult


@click.group()
def runs() -> None:
    """Remediation runs."""


@runs.command("list")
@click.option("--status")
@click.option("--playbook")
@click.option("--since", help="e.g. 7d, 12h, or an ISO 8601 time")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@config_option
@json_option
@handle_errors
def runs_list(
    status: str | None, playbook: str | None, since: str | None, limit: int, config_path: str, as_json: bool
) -> None:
    """List runs, newest first."""
    from engine.durations import parse_since

    store = open_store(load_config(config_path))
    rows = store.list_runs(status=status, playbook=playbook, since=parse_since(since), limit=limit)
    if as_json:
        dump(rows)
    else:
        table(
            rows,
            ["id", "incident_id", "playbook", "playbook_version", "status", "trigger", "queued_at", "error"],
        )


@runs.command("show")
@click.argument("run_id", type=int)
@config_option
@json_option
@handle_errors
def runs_show(run_id: int, config_path: str, as_json: bool) -> None:
    """One run with every step: rendered parameters, status, output."""
    store = open_store(load_config(config_path))
    run = store.get_run(run_id)
    if as_json:
        dump(run)
        return
    for key in Run.field_names():
        click.echo(f"{key + ':':17} {cell(getattr(run, key))}")
    for step in run.steps:
        click.echo(step_line(step))


def step_line(step: StepResult | Mapping[str, Any]) -> str:
    """One line for a stored step, or for one a run by hand (`suture run`) is recording."""
    if not isinstance(step, StepResult):
        step = StepResult.trusted(dict(step))
    code = step.exit_code if step.exit_code is not None else step.http_status
    detail = f" [{code}]" if code is not None else ""
    timing = f"({step.duration_ms} ms, attempt {step.attempt})"
    line = f"  {step.phase:8} {step.status:10} {step.action:5} {step.name}{detail} {timing}"
    if step.error:
        line += f"\n           error: {step.error}"
    return line


@click.command()
@click.argument("run_id", type=int)
@click.option("--by", default=None, help="Who approves (default: $USER).")
@config_option
@json_option
@handle_errors
def approve(run_id: int, by: str | None, config_path: str, as_json: bool) -> None:
    """Approve a run awaiting approval: it is queued and the daemon executes it."""
    who = by or user_name()
    run = open_store(load_config(config_path)).decide_run(run_id, approve=True, by=who)
    if as_json:
        dump(run)
    else:
        click.echo(f"run {run_id} approved by {who}: queued")


@click.command()
@click.argument("run_id", type=int)
@click.option("--by", default=None, help="Who rejects (default: $USER).")
@click.option("--reason", default=None, help="Why, for the incident history.")
@config_option
@json_option
@handle_errors
def reject(run_id: int, by: str | None, reason: str | None, config_path: str, as_json: bool) -> None:
    """Reject a run awaiting approval; it never executes."""
    who = by or user_name()
    run = open_store(load_config(config_path)).decide_run(run_id, approve=False, by=who, reason=reason)
    if as_json:
        dump(run)
    else:
        click.echo(f"run {run_id} rejected by {who}")
