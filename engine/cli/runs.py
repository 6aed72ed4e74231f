"""`suture runs list|show`, `suture approve|reject`: remediation runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, get_args

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
from engine.config import load_config
from engine.records import Run, RunState, StepResult


@click.group()
def runs() -> None:
    """Remediation runs."""


@runs.command("list")
@click.option("--status", type=click.Choice(list(get_args(RunState))))
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

    with read_pages(load_config(config_path)) as pages:
        rows = pages.list_runs(status=status, playbook=playbook, since=parse_since(since), limit=limit)
    if as_json:
        dump(rows)
    else:
        table(
            marked(rows),
            [
                "id",
                "incident_id",
                "playbook",
                "playbook_version",
                "status",
                "dry_run",
                "trigger",
                "queued_at",
                "error",
            ],
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
    click.echo(run_heading(run))
    for key in Run.field_names():
        click.echo(f"{key + ':':17} {cell(getattr(run, key))}")
    click.echo("\nSteps:" if run.steps else "\nSteps: (none recorded)")
    for step in run.steps:
        click.echo(step_block(step))


DRY_RUN = "DRY RUN"
SHADOW = "SHADOW"


def _mark(run: Run) -> str | None:
    return SHADOW if run.shadow else DRY_RUN if run.dry_run else None


def run_heading(run: Run) -> str:
    """`run 7: disk-cleanup@3 succeeded (auto)`, marked DRY RUN when nothing was executed."""
    line = f"run {run.id}: {run.playbook}@{run.playbook_version} {run.status} ({run.trigger})"
    mark = _mark(run)
    return f"{line}  [{mark}: nothing was executed]" if mark else line


class _Marked:
    """A run as a table row, its status saying DRY RUN for a rehearsal."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._run, name)
        if name == "status" and (mark := _mark(self._run)):
            return f"{value} ({mark})"
        return value


def marked(rows: Sequence[Run]) -> list[Any]:
    """Runs for `table`, a dry or shadow run's status marked so (also for `incidents show`)."""
    return [_Marked(row) for row in rows]


def rendered(step: StepResult) -> str:
    """What the step did, as rendered: the command, the request, the wait."""
    params = step.params
    if step.action == "ssh" and "command" in params:
        where = f" (on {params['target']})" if params.get("target") else ""
        return f"$ {'sudo ' if params.get('sudo') else ''}{params['command']}{where}"
    if step.action == "http" and "url" in params:
        return f"{params.get('method', 'GET')} {params['url']}"
    if step.action == "wait" and "seconds" in params:
        return f"wait {params['seconds']:g} s"
    return json.dumps(params, ensure_ascii=False, sort_keys=True, default=str)


def step_block(step: StepResult) -> str:
    """One step of `runs show`: its line, the rendered command or URL, the outcome and the output."""
    lines = [f"  {step.seq:>2}. {step.phase:8} {step.status:10} {step.action:5} {step.name}"]
    lines.append(f"      {rendered(step)}")
    outcome = []
    if step.exit_code is not None:
        outcome.append(f"exit {step.exit_code}")
    if step.http_status is not None:
        outcome.append(f"HTTP {step.http_status}")
    outcome.append(f"{step.duration_ms} ms")
    outcome.append(f"attempt {step.attempt}")
    outcome.append(f"started {cell(step.started_at)}")
    lines.append("      " + ", ".join(outcome))
    for label, text in (("stdout", step.stdout), ("stderr", step.stderr)):
        if text:
            lines.append(f"      {label}:")
            lines.extend(f"        {line}" for line in text.rstrip("\n").splitlines())
    if step.error:
        lines.append(f"      error: {step.error}")
    return "\n".join(lines)


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
