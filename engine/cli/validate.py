"""`suture validate`: config, codes and playbooks checked without starting anything."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from engine.cli.common import config_option, dump, handle_errors, json_option, open_store
from engine.cli.db import database_exists
from engine.config import Config, load_config
from engine.errors import CatalogError, InvalidArgument

if TYPE_CHECKING:
    from engine.catalog.loader import Catalog
    from engine.store import Store


@click.command()
@click.option(
    "--replay", "replay_since", help="also replay the stored alerts since this (e.g. 7d) through it"
)
@config_option
@json_option
@handle_errors
def validate(replay_since: str | None, config_path: str, as_json: bool) -> None:
    """Check codes/ and playbooks/; print every problem as file:line: message. With --replay, also
    what the catalog would have done with the stored alerts of that period (`suture replay`)."""
    config = load_config(config_path)
    store = open_store(config) if database_exists(config) else None
    try:
        catalog = _checked(config, store)
    except CatalogError as exc:
        if not as_json:
            raise
        dump({"ok": False, "problems": exc.problems})
        sys.exit(1)
    for warning in catalog.warnings:  # on stderr: they do not make the catalog invalid
        click.echo(warning, err=True)
    found: dict[str, Any] = {
        "ok": True,
        "codes": len(catalog.codes),
        "playbook_versions": len(catalog.playbooks),
    }
    if replay_since is not None:
        from engine.cli.replay import replay_report, replay_summary

        if store is None:
            raise InvalidArgument("--replay: there is no database yet, so no stored alerts to replay")
        found["replay"] = report = replay_report(config, catalog, replay_since)
        # The change record: what this review's replay found, kept for the versions it would add.
        hashes = [entry.sha256 for entry in catalog.codes] + [e.sha256 for e in catalog.playbooks.values()]
        store.record_replay(hashes, replay_summary(report, f"validate --replay {replay_since}"))
    if as_json:
        dump(found)
        return
    click.echo(f"ok: {len(catalog.codes)} codes, {len(catalog.playbooks)} playbook versions")
    if replay_since is not None:
        from engine.cli.replay import print_report

        click.echo("")
        print_report(found["replay"])


def _checked(config: Config, store: Store | None) -> Catalog:
    """The catalog, checked also against config.yaml: declared secrets and `http.allowed_hosts`
    (with the HTTP action's own matcher, so validate and a run agree)."""
    from engine.catalog.loader import load_catalog
    from engine.execution.actions.http import host_allowed

    stored = store.stored_playbook_hashes() if store is not None else None
    allowed = list(config.http.allowed_hosts)
    return load_catalog(
        config.codes_dir,
        config.playbooks_dir,
        stored,
        secrets=frozenset(config.secrets),
        host_allowed=lambda host: host_allowed(host, allowed),
    )
