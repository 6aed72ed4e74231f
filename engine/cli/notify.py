"""`suture notify test CHANNEL`: one test message through one configured channel."""

from __future__ import annotations

import click

from engine.cli.common import config_option, handle_errors
from engine.config import load_config


@click.group()
def notify() -> None:
    """Notification channels."""


@notify.command("test")
@click.argument("channel")
@config_option
@handle_errors
def notify_test(channel: str, config_path: str) -> None:
    """Send a test message through CHANNEL and print what it answered."""
    from engine.notify.testing import send_test

    config = load_config(config_path)
    answer = send_test(config, config.channel(channel))
    click.echo(f"{channel}: {answer}")
