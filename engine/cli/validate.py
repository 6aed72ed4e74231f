"""`suture validate`: config, codes and playbooks checked without starting anything."""

from __future__ import annotations

import sys

import click

from engine.cli.common import checked_catalog, config_option, dump, handle_errors, json_option, open_store
from engine.cli.db import database_exists
from engine.config import load_config
from engine.errors import CatalogError


@click.command()
@config_option
@json_option
@handle_errors
def validate(config_path: str, as_json: bool) -> None:
    """Check codes/ and playbooks/; print every problem as file:line: message."""
    config = load_config(config_path)
    store = open_store(config) if database_exists(config) else None
    try:
        catalog = checked_catalog(config, store)
    except CatalogError as exc:
        if not as_json:
            raise
        dump({"ok": False, "problems": exc.problems})
        sys.exit(1)
    for warning in catalog.warnings:  # on stderr: they do not make the catalog invalid
        click.echo(warning, err=True)
    if as_json:
        dump({"ok": True, "codes": len(catalog.codes), "playbook_versions": len(catalog.playbooks)})
    else:
        click.echo(f"ok: {len(catalog.codes)} codes, {len(catalog.playbooks)} playbook versions")
