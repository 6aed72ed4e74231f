"""`suture rollout status CODE`: the live, canary and shadow versions of a code's playbook, compared."""

from __future__ import annotations

from typing import Any

import click

from engine.cli.common import checked_catalog, config_option, dump, handle_errors, json_option, open_store
from engine.cli.stats import _rows
from engine.config import load_config


@click.group()
def rollout() -> None:
    """Playbook versions rolled out gradually (canary) or rendered beside the live one (shadow)."""


@rollout.command("status")
@click.argument("code")
@click.option("--since", default="30d", show_default=True, help="e.g. 30d, 12h, or an ISO 8601 time")
@config_option
@json_option
@handle_errors
def rollout_status(code: str, since: str, config_path: str, as_json: bool) -> None:
    """Runs, success rate, effectiveness (with its 95 % interval) and median duration per version."""
    from datetime import UTC, datetime

    from engine.analytics import read_rollout
    from engine.durations import parse_since
    from engine.errors import InvalidArgument, NotFound
    from engine.store.history import History

    config = load_config(config_path)
    store = open_store(config)
    catalog = checked_catalog(config, store)
    found = catalog.find_code(code)
    if found is None:
        raise NotFound(f"code {code!r} is not in the catalog")
    now = datetime.now(UTC)
    start = parse_since(since, now)
    if start is None or start >= now:
        raise InvalidArgument(f"since: {since!r} is not in the past")
    entry = catalog.playbook_for(found)
    live = (entry.playbook.name, entry.playbook.version) if entry is not None else None
    codes = {e.code.code: e.code for e in catalog.codes}
    report = read_rollout(History(store.db), codes, found, live, start, now)
    if as_json:
        dump(report)
        return
    _rows([_row(v) for v in report["versions"]])
    if report["shadow"] is not None:
        click.echo(f"shadow: {report['shadow']['said']}")
    click.echo(report["verdict"])


def _row(version: dict[str, Any]) -> dict[str, Any]:
    interval = version["effectiveness_interval"]
    return {
        "version": f"{version['playbook']}@{version['version']}",
        "role": version["role"],
        "runs": version["runs"],
        "success": _percent(version["success_rate"]),
        "effectiveness": _percent(version["effectiveness"]),
        "95% interval": "-" if interval is None else f"{interval[0]:.0%} - {interval[1]:.0%}",
        "median": "-"
        if version["median_duration_seconds"] is None
        else f"{version['median_duration_seconds']} s",
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
