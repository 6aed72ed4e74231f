"""`suture playbooks list|show|diff`: every playbook version ever loaded, as stored (immutable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from engine.cli.codes import dump_rows, grid
from engine.cli.common import (
    cell,
    checked_catalog,
    config_option,
    dump,
    handle_errors,
    json_option,
    open_store,
)
from engine.config import Config, load_config

if TYPE_CHECKING:
    from engine.store import Store


@click.group()
def playbooks() -> None:
    """Playbook versions: the catalog's and every one stored."""


@playbooks.command("list")
@config_option
@json_option
@handle_errors
def playbooks_list(config_path: str, as_json: bool) -> None:
    """Every playbook version, stored or in the catalog; which codes run it now."""
    from engine.store.catalog_history import CatalogHistory

    config = load_config(config_path)
    store = open_store(config)
    catalog = checked_catalog(config, store)
    stored = {(v.name, v.version): v for v in CatalogHistory(store.db).playbook_versions()}
    users = catalog.users()
    rows: list[dict[str, Any]] = []
    for key in sorted(set(stored) | set(catalog.playbooks)):
        version, entry = stored.get(key), catalog.playbooks.get(key)
        rows.append(
            {
                "name": key[0],
                "version": key[1],
                "description": entry.playbook.description if entry else None,
                "sha256": version.sha256 if version else entry.sha256 if entry else None,
                "loaded_at": version.loaded_at if version else None,
                "in_catalog": entry is not None,
                "used_by": users.get(key, []),
            }
        )
    if as_json:
        dump_rows(rows)
        return
    grid(
        [
            {
                **row,
                "sha256": (row["sha256"] or "")[:12],
                "loaded_at": cell(row["loaded_at"]) if row["loaded_at"] else "(not stored yet)",
                "used_by": ", ".join(row["used_by"]) or "-",
            }
            for row in rows
        ],
        ["name", "version", "sha256", "loaded_at", "in_catalog", "used_by"],
    )


@playbooks.command("show")
@click.argument("ref", metavar="NAME[@V]")
@config_option
@json_option
@handle_errors
def playbooks_show(ref: str, config_path: str, as_json: bool) -> None:
    """The stored YAML of one version (default: the newest stored), exactly as it was loaded."""
    config = load_config(config_path)
    name, version = _parse_ref(ref)
    shown = _version(config, open_store(config), name, version)
    if as_json:
        dump(shown)
        return
    loaded = f"first loaded {cell(shown['loaded_at'])}" if shown["stored"] else "not stored yet"
    click.echo(f"# {shown['name']}@{shown['version']}, sha256 {shown['sha256']}, {loaded}")
    click.echo(shown["body"].rstrip("\n"))


@playbooks.command("diff")
@click.argument("name")
@click.argument("v1", type=click.IntRange(1))
@click.argument("v2", type=click.IntRange(1))
@config_option
@handle_errors
def playbooks_diff(name: str, v1: int, v2: int, config_path: str) -> None:
    """A unified diff of two stored versions of a playbook."""
    import difflib

    config = load_config(config_path)
    store = open_store(config)
    old, new = (_version(config, store, name, v) for v in (v1, v2))
    lines = list(
        difflib.unified_diff(
            old["body"].splitlines(keepends=True),
            new["body"].splitlines(keepends=True),
            fromfile=f"{name}@{v1}",
            tofile=f"{name}@{v2}",
            fromfiledate=_when(old),
            tofiledate=_when(new),
        )
    )
    if not lines:
        click.echo(f"{name}@{v1} and {name}@{v2} have the same YAML", err=True)
        return
    for line in lines:
        click.echo(line if line.endswith("\n") else line + "\n", nl=False)


def _parse_ref(ref: str) -> tuple[str, int | None]:
    from engine.errors import InvalidArgument

    name, at, version = ref.partition("@")
    if not name or (at and not version.isdigit()):
        raise InvalidArgument(f"expected NAME or NAME@VERSION, got {ref!r}")
    return name, int(version) if at else None


def _version(config: Config, store: Store, name: str, version: int | None) -> dict[str, Any]:
    """A stored version; one the daemon has not stored yet comes from the catalog's file."""
    from engine.errors import CatalogError, NotFound
    from engine.store.catalog_history import CatalogHistory

    try:
        found = CatalogHistory(store.db).playbook(name, version)
    except NotFound:
        try:
            entry = checked_catalog(config, store).get_playbook(f"{name}@{version}" if version else name)
        except CatalogError:
            entry = None
        if entry is None:
            raise
        return {
            "name": name,
            "version": entry.playbook.version,
            "sha256": entry.sha256,
            "loaded_at": None,
            "stored": False,
            "body": entry.body,
        }
    return {
        "name": name,
        "version": found.version.version,
        "sha256": found.version.sha256,
        "loaded_at": found.version.loaded_at,
        "stored": True,
        "body": found.body,
    }


def _when(shown: dict[str, Any]) -> str:
    return cell(shown["loaded_at"]) if shown["stored"] else "(not stored yet)"
