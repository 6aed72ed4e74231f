"""`suture pause|resume`: the global kill switch for automatic runs."""

from __future__ import annotations

import click

from engine.cli.common import config_option, handle_errors, open_store
from engine.config import load_config


@click.command()
@config_option
@handle_errors
def pause(config_path: str) -> None:
    """Stop starting automatic runs (global kill switch); running ones finish."""
    from engine.models import PAUSED_KEY

    open_store(load_config(config_path)).set_state(PAUSED_KEY, True)
    click.echo("paused: no new run will start until `suture resume`")


@click.command()
@config_option
@handle_errors
def resume(config_path: str) -> None:
    """Start executing queued runs again."""
    from engine.models import PAUSED_KEY

    open_store(load_config(config_path)).set_state(PAUSED_KEY, False)
    click.echo("resumed")
