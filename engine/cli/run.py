"""`suture run PLAYBOOK --alert FILE.json`: a run by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.common import config_option, handle_errors
from engine.cli.runs import step_line
from engine.config import load_config


@click.command("run")
@click.argument("playbook")
@click.option("--alert", "alert_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Render and record every step, execute nothing.")
@config_option
@handle_errors
def run_playbook(playbook: str, alert_file: str, dry_run: bool, config_path: str) -> None:
    """Run a playbook by hand against a sample alert, printing each step as it goes."""
    from engine.cli.manual import run_by_hand

    config = load_config(config_path)
    status = run_by_hand(
        config, playbook, Path(alert_file), dry_run=dry_run, echo=lambda s: click.echo(step_line(s))
    )
    click.echo(f"run finished: {status.value}")
    sys.exit(0 if status.value == "succeeded" else 1)
