"""`suture silence add|list|expire`: a person's "no automation here for a while"."""

from __future__ import annotations

from datetime import datetime

import click

from engine.cli.common import cell, config_option, dump, handle_errors, json_option, open_store, user_name
from engine.config import load_config
from engine.records import Silence

by_option = click.option("--by", default=None, help="Who does this (default: your login name).")


@click.group()
def silence() -> None:
    """People's silences: matching incidents open as usual, but no automatic run starts."""


@silence.command("add")
@click.option(
    "--match",
    "match",
    multiple=True,
    required=True,
    metavar="KEY=REGEX",
    help="code, target, severity, source, alertname or labels.NAME; the regex must match in full."
    " Repeat it: every matcher must match.",
)
@click.option("--for", "duration", default=None, metavar="DURATION", help="How long from now, e.g. 2h.")
@click.option("--until", default=None, metavar="TIME", help="When it ends: ISO 8601, UTC if no zone.")
@by_option
@click.option("--comment", required=True, help="Why automation should stay away (shown with every hold).")
@config_option
@json_option
@handle_errors
def silence_add(
    match: tuple[str, ...],
    duration: str | None,
    until: str | None,
    by: str | None,
    comment: str,
    config_path: str,
    as_json: bool,
) -> None:
    """Silence automation for the incidents the matchers match, from now until an end."""
    from engine.clock import SYSTEM_CLOCK
    from engine.errors import InvalidArgument
    from engine.policy.matchers import compile_matchers, parse_pairs
    from engine.policy.silences import ends_after, parse_time
    from engine.store.silences import Silences

    matchers = compile_matchers(parse_pairs(match), "--match").as_dict()
    if (duration is None) == (until is None):
        raise InvalidArgument("give the end as either --for DURATION or --until TIME")
    now = SYSTEM_CLOCK.now()
    ends_at = (
        ends_after(now, duration, "--for") if duration is not None else parse_time(until or "", "--until")
    )
    store = open_store(load_config(config_path))
    added = Silences(store.db, store.clock).add(matchers, now, ends_at, by or user_name(), comment)
    if as_json:
        dump(added)
    else:
        click.echo(f"silence {added.id} added by {added.created_by}, until {cell(added.ends_at)} UTC")


@silence.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Include silences that have ended.")
@config_option
@json_option
@handle_errors
def silence_list(include_ended: bool, config_path: str, as_json: bool) -> None:
    """Silences that have not ended (active or still to start), newest first."""
    from engine.store.silences import Silences

    store = open_store(load_config(config_path))
    found = Silences(store.db, store.clock).list(include_ended=include_ended)
    if as_json:
        dump(found)
    else:
        _table(found, store.clock.now())


@silence.command("expire")
@click.argument("silence_id", type=int)
@by_option
@config_option
@json_option
@handle_errors
def silence_expire(silence_id: int, by: str | None, config_path: str, as_json: bool) -> None:
    """End a silence now; automation may act on its incidents again."""
    from engine.store.silences import Silences

    store = open_store(load_config(config_path))
    ended = Silences(store.db, store.clock).expire(silence_id, by or user_name())
    if as_json:
        dump(ended)
    else:
        click.echo(f"silence {ended.id} expired by {ended.expired_by}")


def matchers_text(found: Silence) -> str:
    """`code=DISK-.* target=db-1`: the matchers as `--match` takes them."""
    return " ".join(f"{key}={regex}" for key, regex in found.matchers.items())


def state(found: Silence, now: datetime) -> str:
    if found.active:
        return "active"
    if found.starts_at > now:
        return "pending"
    return "expired" if found.expired_by else "ended"


def _table(found: list[Silence], now: datetime) -> None:
    if not found:
        click.echo("(none)")
        return
    header = ["ID", "STATE", "STARTS_AT", "ENDS_AT", "BY", "MATCH", "COMMENT"]
    rows = [
        [
            str(s.id),
            state(s, now),
            cell(s.starts_at),
            cell(s.ends_at),
            s.created_by,
            matchers_text(s),
            s.comment,
        ]
        for s in found
    ]
    widths = [max(len(head), *(len(row[i]) for row in rows)) for i, head in enumerate(header)]
    for row in [header, *rows]:
        click.echo("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())
