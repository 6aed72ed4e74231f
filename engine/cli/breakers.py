"""`suture breakers list|reset`: circuit breakers per playbook version, read without migrating."""

from __future__ import annotations

import click

from engine.cli.common import config_option, dump, handle_errors, json_option, open_store, table, user_name
from engine.cli.incidents import by_option
from engine.config import load_config
from engine.errors import InvalidArgument


@click.group()
def breakers() -> None:
    """Circuit breakers: a playbook version that failed too often in a row runs no more by itself."""


@breakers.command("list")
@config_option
@json_option
@handle_errors
def breakers_list(config_path: str, as_json: bool) -> None:
    """Every breaker, open ones first."""
    from engine.store.breakers import Breakers

    store = open_store(load_config(config_path))
    rows = Breakers(store.db, store.clock).list()
    if as_json:
        dump(rows)
    else:
        table(
            rows, ["playbook", "version", "status", "failures", "opened_at", "reason", "reset_at", "reset_by"]
        )


@breakers.command("reset")
@click.argument("which", metavar="PLAYBOOK@VERSION")
@by_option
@config_option
@json_option
@handle_errors
def breakers_reset(which: str, by: str | None, config_path: str, as_json: bool) -> None:
    """Close an open breaker: automatic runs of that version may start again."""
    from engine.store.breakers import Breakers

    playbook, version = parse_version(which)
    store = open_store(load_config(config_path))
    breaker = Breakers(store.db, store.clock).reset(playbook, version, by or user_name())
    if as_json:
        dump(breaker)
    else:
        click.echo(f"breaker of {breaker.playbook}@{breaker.version} reset by {breaker.reset_by}")


def parse_version(which: str) -> tuple[str, int]:
    """`disk-cleanup@3` as (`disk-cleanup`, 3)."""
    name, sep, version = which.rpartition("@")
    if not sep or not name or not version.isdigit():
        raise InvalidArgument(
            f"PLAYBOOK@VERSION: expected a playbook and its version like disk-cleanup@3, got {which!r}"
        )
    return name, int(version)
