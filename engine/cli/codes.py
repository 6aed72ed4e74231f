"""`suture codes list|show`: the catalog in force, each code's knowledge, versions and recent history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import click

from engine.cli.common import (
    cell,
    checked_catalog,
    config_option,
    dump,
    handle_errors,
    json_option,
    open_store,
)
from engine.config import load_config

if TYPE_CHECKING:
    pass


@click.group()
def codes() -> None:
    """The incident codes of the catalog in force."""


@codes.command("list")
@config_option
@json_option
@handle_errors
def codes_list(config_path: str, as_json: bool) -> None:
    """Every code in match order: severity, mode, playbook version, owner, summary."""
    config = load_config(config_path)
    catalog = checked_catalog(config, open_store(config))
    rows = [catalog.summary(entry.code) for entry in catalog.codes]
    if as_json:
        dump_rows(rows)
        return
    grid(
        [
            {
                **row,
                "playbook": _ref(row),
                "mode": row["mode"] + (" (dry run)" if row["dry_run"] else ""),
                "summary": _short(row["summary"], 60),
            }
            for row in rows
        ],
        ["code", "severity", "mode", "playbook", "owner", "summary"],
    )


@codes.command("show")
@click.argument("code")
@config_option
@json_option
@handle_errors
def codes_show(code: str, config_path: str, as_json: bool) -> None:
    """One code: knowledge, match rules, policy, stored versions and its last 10 incidents."""
    from engine.analytics.past import ended, ttr_seconds
    from engine.errors import NotFound
    from engine.models import Code
    from engine.store.catalog_history import CatalogHistory

    config = load_config(config_path)
    store = open_store(config)
    catalog = checked_catalog(config, store)
    history = CatalogHistory(store.db)
    found = catalog.find_code(code)
    versions = history.code_versions(code)
    if found is None:
        if not versions:
            raise NotFound(f"code {code} is not in the catalog and was never stored")
        found = Code.model_validate(history.code(code).body)  # removed from the catalog: its last version
    recent = history.recent_incidents(code, limit=10)
    shown: dict[str, Any] = {
        **catalog.summary(found),
        "in_catalog": catalog.find_code(code) is not None,
        "target": found.target,
        "knowledge": found.knowledge.model_dump(mode="json"),
        "match": found.match.model_dump(mode="json"),
        "policy": found.policy.model_dump(mode="json", exclude_none=True),
        "escalation": found.escalation.model_dump(mode="json") if found.escalation else None,
        "versions": [{"version": v.version, "sha256": v.sha256, "loaded_at": v.loaded_at} for v in versions],
        "history": [
            {
                "id": past.id,
                "target": past.target,
                "opened_at": past.opened_at,
                "resolved_at": past.resolved_at,
                "resolution": past.resolution,
                "ended": ended(past),
                "ttr_seconds": ttr_seconds(past),
            }
            for past in recent
        ],
    }
    if as_json:
        dump(shown)
        return
    _print_code(shown)


def _ref(row: dict[str, Any]) -> str:
    if row["playbook"] is None:
        return "-"
    return f"{row['playbook']}@{row['playbook_version']}" if row["playbook_version"] else row["playbook"]


def _print_code(shown: dict[str, Any]) -> None:
    from engine.analytics.past import spoken

    click.echo(f"{shown['code']}  {shown['title']}")
    mode = shown["mode"] + (" (dry run)" if shown["dry_run"] else "")
    click.echo(
        f"  severity {shown['severity']}, mode {mode}, playbook {_ref(shown)},"
        f" owner {shown['owner'] or 'nobody named'}"
    )
    if not shown["in_catalog"]:
        click.echo("  (no longer in the catalog in force: shown as last stored)")
    knowledge = shown["knowledge"]
    click.echo(f"\nSummary: {knowledge['summary'] or '(none written)'}")
    for heading, key in (("Diagnosis", "diagnosis"), ("Manual steps", "manual_steps"), ("Links", "links")):
        click.echo(f"{heading}:")
        items = knowledge[key]
        if not items:
            click.echo("  (none written)")
        for number, item in enumerate(items, 1):
            click.echo(f"  {number}. {item}")
    match = shown["match"]
    click.echo("\nMatch (all must hold, regular expressions matched in full):")
    conditions = [(k, match[k]) for k in ("source", "alertname") if match.get(k)]
    conditions += [(f"labels.{k}", v) for k, v in match["labels"].items()]
    conditions += [(f"annotations.{k}", v) for k, v in match["annotations"].items()]
    for key, pattern in conditions or [("(anything)", "")]:
        click.echo(f"  {key}: {pattern}")
    click.echo(f"Target: {shown['target'] or '(from the labels: instance, host, hostname, target, node)'}")
    policy = shown["policy"]
    click.echo(f"Policy: {', '.join(f'{k} {v}' for k, v in policy.items()) or 'none'}")
    if shown["escalation"]:
        click.echo(f"Escalation: {', '.join(f'{k} {v}' for k, v in shown['escalation'].items() if v)}")
    click.echo("\nStored versions:")
    grid(
        [{**v, "sha256": v["sha256"][:12], "loaded_at": cell(v["loaded_at"])} for v in shown["versions"]],
        ["version", "sha256", "loaded_at"],
    )
    click.echo("\nRecent incidents (last 10):")
    grid(
        [
            {
                "id": str(h["id"]),
                "target": h["target"] or "-",
                "opened": cell(h["opened_at"]),
                "ended": h["ended"],
                "ttr": spoken(timedelta(seconds=h["ttr_seconds"])) if h["ttr_seconds"] is not None else "-",
            }
            for h in shown["history"]
        ],
        ["id", "target", "opened", "ended", "ttr"],
    )


def _short(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def dump_rows(rows: list[dict[str, Any]]) -> None:
    """A JSON array of plain rows, printed as `dump` prints records (its type names records only)."""
    dump(cast(Any, rows))


def grid(rows: Sequence[dict[str, Any]], columns: list[str]) -> None:
    """A table of plain rows (what `table` does for records)."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
