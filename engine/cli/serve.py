"""`suture serve`: the daemon."""

from __future__ import annotations

import click

from engine.cli.common import config_option, handle_errors
from engine.config import load_config


@click.command()
@config_option
@handle_errors
def serve(config_path: str) -> None:
    """Run the daemon: HTTP API, intake, workers and scheduler."""
    from engine.daemon import Daemon
    from engine.logging import configure_logging

    config = load_config(config_path)
    config.resolve_secrets()  # every secret read now: a missing one stops us before the database opens
    configure_logging(config.logging.level, config.logging.format)
    Daemon(config).serve()
