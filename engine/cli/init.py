"""`suture init DIR`: a working setup anywhere, from the files the package ships."""

from __future__ import annotations

import shlex
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import click

from engine.cli.common import handle_errors
from engine.errors import Conflict, InvalidArgument

#: The folders of the catalog, copied with their `*.yaml` files; config.yaml names them.
FOLDERS = ("codes", "playbooks")


def skeleton() -> Traversable:
    """engine/skeleton in a wheel; the repository's top level where the checkout kept no symlinks."""
    packaged = files("engine.skeleton")
    if all(packaged.joinpath(folder).is_dir() for folder in FOLDERS):
        return packaged
    return files("engine").joinpath("..")


def skeleton_files() -> dict[str, bytes]:
    """Each file `init` writes, by its path relative to DIR."""
    root = skeleton()
    found = {"config.yaml": root.joinpath("config.yaml").read_bytes()}
    for folder in FOLDERS:
        for item in sorted(root.joinpath(folder).iterdir(), key=lambda entry: entry.name):
            if item.is_file() and item.name.endswith(".yaml"):
                found[f"{folder}/{item.name}"] = item.read_bytes()
    return found


@click.command("init")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@handle_errors
def init(directory: str, force: bool) -> None:
    """Write a working config.yaml, codes/ and playbooks/ into DIR (made if missing)."""
    target = Path(directory)
    wanted = skeleton_files()
    if not force:
        existing = [target / name for name in wanted if (target / name).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise Conflict(f"{existing[0]} exists{more}; pass --force to overwrite")
    try:
        for name, content in wanted.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    except OSError as exc:
        raise InvalidArgument(f"cannot write into {directory}: {exc.strerror or exc}") from exc
    config = shlex.quote(str(target / "config.yaml"))
    counts = {folder: sum(name.startswith(folder + "/") for name in wanted) for folder in FOLDERS}
    shown = " and ".join(f"{target / folder}/ ({count} files)" for folder, count in counts.items())
    click.echo(f"wrote {target / 'config.yaml'}, {shown}")
    click.echo("next:")
    click.echo(f"  edit {config}: ssh user and key, inventory, http.allowed_hosts")
    click.echo(f"  suture validate --config {config}")
    click.echo(f"  suture serve --config {config}")
