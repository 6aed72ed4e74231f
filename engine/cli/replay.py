"""`suture replay`: what a catalog would have done with the stored alerts of a period, executing
nothing and writing nothing (engine.intake.replay), compared with what happened."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli.common import cell, config_option, dump, handle_errors, json_option, open_store
from engine.cli.stats import _rows
from engine.config import Config, load_config

if TYPE_CHECKING:
    from engine.catalog.loader import Catalog


def replay_report(config: Config, catalog: Catalog, since_text: str, step_text: str = "1m") -> dict[str, Any]:
    """The replay of [now - since, now) through `catalog`, as the contract's JSON document."""
    import tempfile
    from datetime import UTC, datetime

    from engine.analytics.replay import ReplayTally
    from engine.durations import parse_duration, parse_since
    from engine.errors import InvalidArgument
    from engine.intake.classify import CatalogView
    from engine.intake.replay import Replayer
    from engine.policy.guards import Rails

    now = datetime.now(UTC)
    since = parse_since(since_text, now)
    if since is None or since >= now:
        raise InvalidArgument(f"since: {since_text!r} is not in the past")
    step = parse_duration(step_text)
    replayer = Replayer(
        open_store(config).db, CatalogView.of(catalog, config.escalation), Rails.of(config), step
    )
    tally = ReplayTally(since, now)
    with tempfile.TemporaryDirectory(prefix="suture-replay-") as folder:
        for fact in replayer.run(since, now, Path(folder)):
            tally.add(fact)
    return tally.report()


def replay_summary(report: dict[str, Any], command: str) -> dict[str, Any]:
    """A replay in a few numbers, as the change record keeps it (the handover shows it)."""
    from datetime import UTC, datetime

    def text(value: Any) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return {
        "command": command,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "since": text(report["since"]),
        "until": text(report["until"]),
        "alerts": report["alerts"],
        "reclassified": sum(row["alerts"] for row in report["reclassified"]),
        "decisions_changed": report["decisions_changed_total"],
    }


def candidate(config: Config, folder: str | None) -> Catalog:
    """The catalog to replay: `folder`'s codes/ and playbooks/, or the one config.yaml names."""
    from engine.catalog.loader import load_catalog

    if folder is None:
        return load_catalog(config.codes_dir, config.playbooks_dir)
    root = Path(folder)
    return load_catalog(root / "codes", root / "playbooks")


@click.command("replay")
@click.option("--since", default="30d", show_default=True, help="e.g. 30d, 12h, or an ISO 8601 time")
@click.option("--catalog", "catalog_dir", help="a folder with codes/ and playbooks/ to replay instead")
@click.option("--step", default="1m", show_default=True, help="arrivals this close are committed together")
@config_option
@json_option
@handle_errors
def replay(since: str, catalog_dir: str | None, step: str, config_path: str, as_json: bool) -> None:
    """What a catalog would have done with the stored alerts since --since: nothing runs, nothing
    is written."""
    config = load_config(config_path)
    report = replay_report(config, candidate(config, catalog_dir), since, step)
    if as_json:
        dump(report)
    else:
        print_report(report)


def print_report(report: dict[str, Any]) -> None:
    click.echo(
        f"Replayed {report['alerts']} alerts received {cell(report['since'])} .. {cell(report['until'])}"
    )
    click.echo("\nBy code (incidents / runs / skipped), as it was and as replayed:")
    _rows(
        [
            {
                "code": row["code"],
                "actual": "{incidents} / {runs} / {skipped}".format(**row["actual"]),
                "replayed": "{incidents} / {runs} / {skipped}".format(**row["replayed"]),
            }
            for row in report["codes"]
        ]
    )
    click.echo("\nAlerts that change code:")
    _rows(report["reclassified"])
    total = report["decisions_changed_total"]
    click.echo(f"\nIncidents whose decision changes: {total}")
    _rows(
        [
            {**row, "incident_id": "-" if row["incident_id"] is None else row["incident_id"]}
            for row in report["decisions_changed"]
        ]
    )
    if total > len(report["decisions_changed"]):
        click.echo(f"(the first {len(report['decisions_changed'])} shown)")
