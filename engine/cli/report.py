"""`suture report handover`: the shift's handover on stdout, Markdown (default) or one HTML page."""

from __future__ import annotations

import click

from engine.cli.common import config_option, handle_errors
from engine.config import load_config


@click.group()
def report() -> None:
    """Reports for people."""


@report.command("handover")
@click.option("--since", default="7d", show_default=True, help="e.g. 7d, 12h, or an ISO 8601 time")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "html"]),
    default="markdown",
    show_default=True,
    help="html: one self-contained page (no external assets), to mail or attach",
)
@config_option
@handle_errors
def handover(since: str, output_format: str, config_path: str) -> None:
    """Open incidents with what to do by hand, approvals, recurrences, automation, catalog changes,
    notes and the numbers against the period before, as Markdown or HTML."""
    from datetime import UTC, datetime

    from engine.analytics import read_handover
    from engine.analytics.handover import render_handover
    from engine.cli.common import open_store
    from engine.cli.stats import load_codes_catalog
    from engine.durations import parse_since
    from engine.errors import InvalidArgument
    from engine.store.history import History

    config = load_config(config_path)
    now = datetime.now(UTC)
    start = parse_since(since, now)
    if start is None or start >= now:
        raise InvalidArgument(f"since: {since!r} is not in the past")
    catalog = load_codes_catalog(config)
    codes = {entry.code.code: entry.code for entry in catalog.codes}
    history = History(open_store(config).db)
    facts = read_handover(history, codes, start, now)
    if output_format == "html":
        from engine.analytics.handover_html import render_handover_html

        click.echo(render_handover_html(facts, codes))
        return
    click.echo(render_handover(facts, codes), nl=False)
