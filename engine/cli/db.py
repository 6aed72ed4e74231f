"""`suture db upgrade`: migrations, applied on purpose."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import config_option, dump, handle_errors, json_option, open_store
from engine.config import Config, load_config


def database_exists(config: Config) -> bool:
    url = config.database_url
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).exists()
    return True


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
@json_option
@handle_errors
def db_upgrade(config_path: str, as_json: bool) -> None:
    """Apply migrations up to the newest schema."""
    from engine.store.db import current_revision

    config = load_config(config_path)
    store = open_store(config, upgrade=True)
    revision = current_revision(store.db)
    if as_json:
        dump({"ok": True, "revision": revision})
    else:
        click.echo(f"database is up to date (revision {revision})")
