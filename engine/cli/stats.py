"""`suture stats`: what recurred, what automation fixed and how fast, for incidents opened since --since."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from engine.cli.common import cell, config_option, dump, handle_errors, json_option, open_store, table
from engine.config import Config, load_config

if TYPE_CHECKING:
    from engine.catalog.loader import Catalog
    from engine.records import Stats


def load_codes_catalog(config: Config) -> Catalog:
    """The catalog on disk for titles, policies and knowledge; an invalid one is said on stderr and
    left out (the numbers come from the store and stay worth reading)."""
    from engine.catalog.loader import Catalog, load_catalog
    from engine.errors import CatalogError

    try:
        return load_catalog(config.codes_dir, config.playbooks_dir)
    except CatalogError as exc:
        click.echo(
            f"warning: catalog invalid ({len(exc.problems)} problem(s), see `suture validate`): "
            "default policies used, no titles or knowledge from it",
            err=True,
        )
        return Catalog()


def compute_stats(config: Config, since_text: str) -> Stats:
    from datetime import UTC, datetime

    from engine.analytics import read_stats
    from engine.durations import parse_since
    from engine.store.history import History

    now = datetime.now(UTC)
    since = parse_since(since_text, now)
    assert since is not None  # click gives a non-empty default
    catalog = load_codes_catalog(config)
    store = open_store(config)
    return read_stats(History(store.db), {e.code.code: e.code for e in catalog.codes}, since, now)


@click.command("stats")
@click.option("--since", default="30d", show_default=True, help="e.g. 30d, 12h, or an ISO 8601 time")
@config_option
@json_option
@handle_errors
def stats(since: str, config_path: str, as_json: bool) -> None:
    """Per code, severity and playbook version: what recurred, what automation fixed, how fast."""
    result = compute_stats(load_config(config_path), since)
    if as_json:
        dump(result)
        return
    print_stats(result)


def print_stats(result: Stats) -> None:
    counts = result.incidents
    click.echo(f"Incidents opened {cell(result.since)} .. {cell(result.until)} UTC")
    click.echo(
        f"  opened {counts.opened}, resolved {counts.resolved}, open {counts.open}, overdue {counts.overdue};"
        f" auto-resolution rate {percent(result.auto_resolution_rate)}"
    )
    click.echo("\nBy code:")
    _rows(
        [
            {
                "code": c.code,
                "severity": c.severity,
                "opened": c.opened,
                "resolved": c.resolved,
                "open": c.open,
                "mttr": seconds(c.mttr_seconds),
                "median_ttr": seconds(c.median_ttr_seconds),
                "p90_ttr": seconds(c.p90_ttr_seconds),
                "mtta": seconds(c.mtta_seconds),
                "auto_resolved": c.auto_resolved,
                "sla_breached": c.sla_breached,
                "title": c.title,
            }
            for c in result.by_code
        ]
    )
    click.echo("\nSLA by severity:")
    table(result.sla, ["severity", "opened", "resolved_in_time", "breached", "open_overdue"])
    click.echo("\nPlaybooks:")
    _rows(
        [
            {
                "playbook": f"{p.playbook}@{p.version}",
                "runs": p.runs,
                "succeeded": p.succeeded,
                "failed": p.failed,
                "effective": p.effective,
                "effectiveness": percent(p.effectiveness),
                "median_duration": seconds(p.median_duration_seconds),
            }
            for p in result.playbooks
        ]
    )
    click.echo("\nRecurring (code, target):")
    table(result.recurring, ["code", "target", "incidents"])
    click.echo("\nUnclassified alerts (candidates for a new code):")
    _rows(
        [
            {
                "alertname": u.alertname,
                "source": u.source,
                "alerts": u.alerts,
                "targets": u.targets,
                "suggested_match": ", ".join(f"{k}={v}" for k, v in u.suggested_match.items()) or "-",
            }
            for u in result.unclassified
        ]
    )


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    """A duration as a person reads it: 45s, 12m 5s, 3h 20m, 2d 4h."""
    if value is None:
        return "-"
    total = int(round(value))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _rows(rows: Sequence[dict[str, Any]]) -> None:
    """A table of plain rows (already formatted cells), columns in the first row's order."""
    if not rows:
        click.echo("(none)")
        return
    columns = list(rows[0])
    cells = [[str(row[col]) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
