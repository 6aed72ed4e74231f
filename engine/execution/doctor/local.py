"""The checks that need no network: the database's schema and the catalog."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from engine.catalog.loader import Catalog, load_catalog
from engine.config import Config
from engine.errors import CatalogError, SutureError
from engine.execution.doctor.check import Check, ok, problem
from engine.store import Store
from engine.store.db import HEAD_REVISION, Database, open_database, sqlite_file

UPGRADE = "run: suture db upgrade (suture serve also migrates at start)"


def shown_url(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "<invalid database URL>"


def check_database(config: Config) -> tuple[Check, Database | None]:
    """Opens the database without creating or migrating it; the Database when its schema is at head."""
    url = config.database_url
    subject = shown_url(url)
    file = sqlite_file(url) if url.startswith("sqlite") else None
    if file is not None and not Path(file).exists():
        return problem("database", subject, "does not exist yet", UPGRADE), None
    try:
        db = open_database(url, sqlite_synchronous=config.database.sqlite_synchronous)
    except SutureError as exc:
        return problem("database", subject, str(exc), "correct database.url in the config"), None
    try:
        if db.is_current():
            return ok("database", subject, f"at revision {HEAD_REVISION}"), db
        found = _revision(db)
    except (SutureError, SQLAlchemyError) as exc:
        db.dispose()
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        fix = "check database.url and that the database server is running and lets this user in"
        return problem("database", subject, f"cannot open: {reason}", fix), None
    db.dispose()
    where = f"at revision {found}" if found else "has no Suture schema"
    return problem("database", subject, f"{where}; this version needs {HEAD_REVISION}", UPGRADE), None


def _revision(db: Database) -> str | None:
    try:
        with db.engine.connect() as conn:
            found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    except SQLAlchemyError:
        return None  # no alembic_version table: never migrated
    return ", ".join(str(value) for value in found) or None


def check_catalog(config: Config, db: Database | None) -> tuple[list[Check], Catalog | None]:
    """What `suture validate` checks; each problem is one check named by its file:line."""
    try:
        stored = Store(db).stored_playbook_hashes() if db is not None else None
    except SutureError:  # the database check already said why; check the files alone
        stored = None
    try:
        catalog = load_catalog(config.codes_dir, config.playbooks_dir, stored)
    except CatalogError as exc:
        checks = []
        for line in exc.problems:
            where, sep, message = line.partition(": ")
            subject, detail = (where, message) if sep else ("catalog", line)
            checks.append(
                problem("catalog", subject, detail, "correct it; `suture validate` lists every problem")
            )
        return checks, None
    detail = f"{len(catalog.codes)} codes, {len(catalog.playbooks)} playbook versions"
    if catalog.warnings:
        detail += f" ({len(catalog.warnings)} warnings: `suture validate` shows them)"
    return [ok("catalog", f"{config.codes_dir}, {config.playbooks_dir}", detail)], catalog


def sudo_playbooks(catalog: Catalog | None) -> list[str]:
    """The playbook versions with an ssh step that says `sudo: true` (the targets must allow `sudo -n`)."""
    if catalog is None:
        return []
    found = []
    for entry in catalog.playbooks.values():
        book = entry.playbook
        if any(
            step.ssh is not None and step.ssh.sudo for step in (*book.steps, *book.verify, *book.rollback)
        ):
            found.append(book.ref)
    return sorted(found)


def uses_ssh(catalog: Catalog | None) -> bool:
    if catalog is None:
        return False
    return any(
        step.ssh is not None
        for entry in catalog.playbooks.values()
        for step in (*entry.playbook.steps, *entry.playbook.verify, *entry.playbook.rollback)
    )
