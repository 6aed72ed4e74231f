"""`suture pause|resume`: the global kill switch for automatic runs, recorded under who used it."""

from __future__ import annotations

import click

from engine.cli.common import config_option, handle_errors, open_store, user_name
from engine.config import load_config


@click.command()
@click.option("--by", default=None, help="Who pauses (default: $USER).")
@click.option("--reason", default=None, help="Why, for the audit log.")
@config_option
@handle_errors
def pause(by: str | None, reason: str | None, config_path: str) -> None:
    """Stop automatic runs: none starts, running ones stop before their next step."""
    open_store(load_config(config_path)).set_paused(True, by or user_name(), reason)
    click.echo(
        "paused: no automatic run starts until `suture resume`; running ones stop before their next step"
    )


@click.command()
@click.option("--by", default=None, help="Who resumes (default: $USER).")
@config_option
@handle_errors
def resume(by: str | None, config_path: str) -> None:
    """Start executing queued runs again."""
    open_store(load_config(config_path)).set_paused(False, by or user_name())
    click.echo("resumed")
