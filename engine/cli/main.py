"""The `suture` command. User mistakes become one message on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from engine.config import Config, load_config
from engine.errors import CatalogError, ConfigError, SutureError

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
            click.echo(f"config error: {_in_file(exc, kwargs.get('config_path'))}", err=True)
            sys.exit(2)
        except CatalogError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            click.echo(f"catalog invalid: {len(exc.problems)} problem(s)", err=True)
            sys.exit(1)
        except SutureError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _dump(data: Any) -> None:
    click.echo(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z).decode()
    )


def _in_file(exc: ConfigError, config_path: str | None) -> str:
    """A `database.url` found unusable after loading names its key; say which file, as loading does."""
    from engine.store.db import DatabaseUrlError

    return f"{config_path}: {exc}" if isinstance(exc, DatabaseUrlError) and config_path else str(exc)


def _open_store(config: Config, *, upgrade: bool = True) -> Any:
    from engine.store import Store, open_database

    db = open_database(
        config.database_url, upgrade=upgrade, sqlite_synchronous=config.database.sqlite_synchronous
    )
    return Store(db)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@click.group()
@click.version_option(package_name="suture")
def main() -> None:
    """Suture: monitoring alerts become coded incidents, fixed by versioned playbooks."""


@main.command()
@config_option
@handle_errors
def serve(config_path: str) -> None:
    """Run the daemon: HTTP API, intake, workers and scheduler."""
    from engine.daemon import Daemon
    from engine.logging import configure_logging

    config = load_config(config_path)
    config.access_control()  # API tokens are read now: a missing one stops us before the database opens
    configure_logging(config.logging.level, config.logging.format)
    Daemon(config).serve()


@main.command()
@config_option
@json_option
@handle_errors
def validate(config_path: str, as_json: bool) -> None:
    """Check codes/ and playbooks/; print every problem as file:line: message."""
    from engine.daemon import load_checked_catalog

    config = load_config(config_path)
    store = _open_store(config, upgrade=True) if _database_exists(config) else None
    try:
        catalog = load_checked_catalog(config, store)
    except CatalogError as exc:
        if not as_json:
            raise
        _dump({"ok": False, "problems": exc.problems})
        sys.exit(1)
    for warning in catalog.warnings:  # on stderr: they do not make the catalog invalid
        click.echo(warning, err=True)
    if as_json:
        _dump({"ok": True, "codes": len(catalog.codes), "playbook_versions": len(catalog.playbooks)})
    else:
        click.echo(f"ok: {len(catalog.codes)} codes, {len(catalog.playbooks)} playbook versions")


def _database_exists(config: Config) -> bool:
    url = config.database_url
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).exists()
    return True


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
@json_option
@handle_errors
def db_upgrade(config_path: str, as_json: bool) -> None:
    """Apply migrations up to the newest schema."""
    from engine.store.db import current_revision

    config = load_config(config_path)
    store = _open_store(config, upgrade=True)
    revision = current_revision(store.db)
    if as_json:
        _dump({"ok": True, "revision": revision})
    else:
        click.echo(f"database is up to date (revision {revision})")


@main.group()
def incidents() -> None:
    """Coded incidents."""


@incidents.command("list")
@click.option("--status", type=click.Choice(["open", "resolved"]))
@click.option("--code")
@click.option("--since", help="e.g. 7d, 12h, or an ISO 8601 time")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@config_option
@json_option
@handle_errors
def incidents_list(
    status: str | None, code: str | None, since: str | None, limit: int, config_path: str, as_json: bool
) -> None:
    """List incidents, newest first."""
    from engine.durations import parse_since

    store = _open_store(load_config(config_path))
    rows = store.list_incidents(status=status, code=code, since=parse_since(since), limit=limit)
    if as_json:
        _dump(rows)
    else:
        _table(
            rows,
            [
                "id",
                "code",
                "status",
                "severity",
                "target",
                "occurrences",
                "opened_at",
                "due_at",
                "resolution",
            ],
        )


@incidents.command("show")
@click.argument("incident_id", type=int)
@config_option
@json_option
@handle_errors
def incidents_show(incident_id: int, config_path: str, as_json: bool) -> None:
    """One incident with its alerts, runs and timeline."""
    from engine.store.store import INCIDENT_FIELDS

    store = _open_store(load_config(config_path))
    incident = store.get_incident(incident_id)
    if as_json:
        _dump(incident)
        return
    for key in INCIDENT_FIELDS:
        click.echo(f"{key + ':':15} {_cell(incident[key])}")
    click.echo(f"{'labels:':15} {json.dumps(incident['labels'], ensure_ascii=False)}")
    click.echo("\nRuns:")
    _table(
        incident["runs"],
        ["id", "playbook", "playbook_version", "status", "queued_at", "finished_at", "error"],
    )
    click.echo("\nTimeline:")
    _table(incident["timeline"], ["at", "kind", "message"])


@main.group()
def runs() -> None:
    """Remediation runs."""


@runs.command("list")
@click.option("--status")
@click.option("--playbook")
@click.option("--since", help="e.g. 7d, 12h, or an ISO 8601 time")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@config_option
@json_option
@handle_errors
def runs_list(
    status: str | None, playbook: str | None, since: str | None, limit: int, config_path: str, as_json: bool
) -> None:
    """List runs, newest first."""
    from engine.durations import parse_since

    store = _open_store(load_config(config_path))
    rows = store.list_runs(status=status, playbook=playbook, since=parse_since(since), limit=limit)
    if as_json:
        _dump(rows)
    else:
        _table(
            rows,
            ["id", "incident_id", "playbook", "playbook_version", "status", "trigger", "queued_at", "error"],
        )


@runs.command("show")
@click.argument("run_id", type=int)
@config_option
@json_option
@handle_errors
def runs_show(run_id: int, config_path: str, as_json: bool) -> None:
    """One run with every step: rendered parameters, status, output."""
    from engine.store.store import RUN_FIELDS

    store = _open_store(load_config(config_path))
    run = store.get_run(run_id)
    if as_json:
        _dump(run)
        return
    for key in RUN_FIELDS:
        click.echo(f"{key + ':':17} {_cell(run[key])}")
    for step in run["steps"]:
        click.echo(_step_line(step))


def _step_line(step: dict[str, Any]) -> str:
    code = step.get("exit_code") if step.get("exit_code") is not None else step.get("http_status")
    detail = f" [{code}]" if code is not None else ""
    timing = f"({step['duration_ms']} ms, attempt {step['attempt']})"
    line = f"  {step['phase']:8} {step['status']:10} {step['action']:5} {step['name']}{detail} {timing}"
    if step.get("error"):
        line += f"\n           error: {step['error']}"
    return line


@main.command()
@click.argument("run_id", type=int)
@click.option("--by", default=None, help="Who approves (default: $USER).")
@config_option
@json_option
@handle_errors
def approve(run_id: int, by: str | None, config_path: str, as_json: bool) -> None:
    """Approve a run awaiting approval: it is queued and the daemon executes it."""
    who = by or _user()
    run = _open_store(load_config(config_path)).decide_run(run_id, approve=True, by=who)
    if as_json:
        _dump(run)
    else:
        click.echo(f"run {run_id} approved by {who}: queued")


@main.command()
@click.argument("run_id", type=int)
@click.option("--by", default=None, help="Who rejects (default: $USER).")
@click.option("--reason", default=None, help="Why, for the incident history.")
@config_option
@json_option
@handle_errors
def reject(run_id: int, by: str | None, reason: str | None, config_path: str, as_json: bool) -> None:
    """Reject a run awaiting approval; it never executes."""
    who = by or _user()
    run = _open_store(load_config(config_path)).decide_run(run_id, approve=False, by=who, reason=reason)
    if as_json:
        _dump(run)
    else:
        click.echo(f"run {run_id} rejected by {who}")


@main.command()
@config_option
@handle_errors
def pause(config_path: str) -> None:
    """Stop starting automatic runs (global kill switch); running ones finish."""
    from engine.daemon import PAUSED_KEY

    _open_store(load_config(config_path)).set_state(PAUSED_KEY, True)
    click.echo("paused: no new run will start until `suture resume`")


@main.command()
@config_option
@handle_errors
def resume(config_path: str) -> None:
    """Start executing queued runs again."""
    from engine.daemon import PAUSED_KEY

    _open_store(load_config(config_path)).set_state(PAUSED_KEY, False)
    click.echo("resumed")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name is not an error worth stopping for
        return "cli"


@main.command("run")
@click.argument("playbook")
@click.option("--alert", "alert_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Render and record every step, execute nothing.")
@config_option
@handle_errors
def run_playbook(playbook: str, alert_file: str, dry_run: bool, config_path: str) -> None:
    """Run a playbook by hand against a sample alert, printing each step as it goes."""
    from engine.cli.manual import run_by_hand

    config = load_config(config_path)
    status = run_by_hand(
        config, playbook, Path(alert_file), dry_run=dry_run, echo=lambda s: click.echo(_step_line(s))
    )
    click.echo(f"run finished: {status.value}")
    sys.exit(0 if status.value == "succeeded" else 1)


@main.group()
def access() -> None:
    """Credentials for the API (config.yaml `access:`)."""


@access.command("hash")
@handle_errors
def access_hash() -> None:
    """Read a password on stdin, print its hash for access.users[].password_hash."""
    from engine.access import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raw = sys.stdin.buffer.read()
        try:
            password = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the password on stdin is not UTF-8") from None
        # `echo pw | suture access hash` adds a newline that is not part of the password.
        password = password.removesuffix("\n").removesuffix("\r")
    click.echo(hash_password(password))
