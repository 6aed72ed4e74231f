"""Shared by every command: options, errors as one message and an exit code, tables, JSON."""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click
import orjson

from engine.config import Config
from engine.errors import CatalogError, ConfigError, SutureError
from engine.records import Record

if TYPE_CHECKING:
    from engine.catalog.loader import Catalog
    from engine.store import Store
    from engine.store.pages import Pages

F = TypeVar("F", bound=Callable[..., Any])


config_option = click.option(
    "--config",
    "config_path",
    default="config.yaml",
    envvar="SUTURE_CONFIG",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Path to config.yaml.",
)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def handle_errors(func: F) -> F:
    """Turn Suture's errors into user messages: config 2, everything else 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"config error: {in_file(exc, kwargs.get('config_path'))}", err=True)
            sys.exit(2)
        except CatalogError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            click.echo(f"catalog invalid: {len(exc.problems)} problem(s)", err=True)
            sys.exit(1)
        except SutureError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def dump(data: Record | Sequence[Record] | dict[str, Any]) -> None:
    """One JSON document: records as the API answers them, times in UTC with `Z`."""
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
    click.echo(orjson.dumps(data, default=_fields, option=option).decode())


def _fields(value: Any) -> Any:
    """A record's fields in declaration order: what pydantic's serializer gives the API, read
    straight from the frozen record (model_dump would cost more than writing the JSON)."""
    if isinstance(value, Record):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def in_file(exc: ConfigError, config_path: str | None) -> str:
    """A `database.url` found unusable after loading names its key; say which file, as loading does."""
    from engine.store.db import DatabaseUrlError

    return f"{config_path}: {exc}" if isinstance(exc, DatabaseUrlError) and config_path else str(exc)


def open_store(config: Config, *, upgrade: bool | Literal["if_behind"] = "if_behind") -> Store:
    """The store; migrated only when its schema is behind (`suture db upgrade` forces it)."""
    from engine.store import Store, open_database

    db = open_database(
        config.database_url, upgrade=upgrade, sqlite_synchronous=config.database.sqlite_synchronous
    )
    return Store(db, config.heard_events())


@contextmanager
def read_pages(config: Config) -> Iterator[Pages]:
    """Where `incidents list` and `runs list` read their page: the driver's own connection when
    the database is ready for it, which spares them importing SQLAlchemy; else the Store."""
    from engine.store.direct import open_direct

    direct = open_direct(config.database_url)
    if direct is None:
        yield open_store(config)
        return
    try:
        yield direct
    finally:
        direct.close()


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(rows: Sequence[Record], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[cell(getattr(row, col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    # On a terminal each line is cut to its width (the last column, an error text, is what runs
    # long); piped, nothing is cut: a script reads the whole value.
    fit = shutil.get_terminal_size().columns if sys.stdout.isatty() else None

    def line(values: Sequence[str]) -> str:
        text = "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
        return text if fit is None or len(text) <= fit else text[: max(fit - 1, 1)] + "…"

    click.echo(line([col.upper() for col in columns]))
    for r in cells:
        click.echo(line(r))


def user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name is not an error worth stopping for
        return "cli"


def checked_catalog(config: Config, store: Store | None) -> Catalog:
    """The catalog, cross-checked against the playbook versions already stored (if any)."""
    from engine.catalog.loader import load_catalog

    stored = store.stored_playbook_hashes() if store is not None else None
    return load_catalog(config.codes_dir, config.playbooks_dir, stored)
