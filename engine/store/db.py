"""Connections: SQLite tuned for one writer (WAL, busy timeout, BEGIN IMMEDIATE), or PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, ProgrammingError

from engine.errors import ConfigError, StoreUnavailable
from engine.store.replicas import MIGRATE_LOCK
from engine.store.revision import HEAD_REVISION
from engine.store.tables import declare_for_postgresql

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
#: `database.sqlite_synchronous`: `full` syncs the WAL at every commit, so an answered write
#: survives an OS crash or power loss; `normal` syncs only at checkpoints (faster, not durable).
#: `off` (never in config.yaml): a scratch store that goes with its folder (replay).
Synchronous = Literal["full", "normal", "off"]
POSTGRES_EXTRA = "PostgreSQL needs the postgres extra: pip install 'suture[postgres]'"


class DatabaseUrlError(ConfigError):
    """`database.url` cannot work on this machine; the message starts with the key, the CLI adds the file."""


class Database:
    """An engine plus the two transaction kinds Suture uses: short writes and reads."""

    def __init__(self, url: str, *, sqlite_synchronous: Synchronous = "full") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        parsed = _parse(url)
        if self.is_sqlite:
            _check_sqlite_folder(url)
        self._write_lock: AbstractContextManager[Any] = (
            WriteTurn(sqlite_file(url)) if self.is_sqlite else nullcontext()
        )
        if self.is_sqlite:
            self.engine = _engine(
                parsed,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            )
            event.listen(self.engine, "connect", _sqlite_on_connect(sqlite_synchronous))
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            declare_for_postgresql()
            self.engine = _engine(parsed, pool_pre_ping=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE).

        On SQLite writers also queue on `WriteTurn`: SQLite's busy handler sleeps and retries,
        so a worker could starve behind an intake writer's back-to-back transactions until
        the busy timeout; a lock hands the turn over at release instead.
        """
        with self._write_lock:
            with self._transaction() as conn:
                yield conn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(suture_write=True)
                with conn.begin():
                    yield conn
        except (OperationalError, DBAPIError) as exc:
            if (
                isinstance(exc, DBAPIError)
                and not isinstance(exc, OperationalError)
                and not exc.connection_invalidated
            ):
                raise
            raise StoreUnavailable(f"database unavailable: {_short(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {_short(exc)}") from exc

    @contextmanager
    def driver_read(self) -> Iterator[Any]:
        """A read transaction on the driver's own connection, for SQL written without SQLAlchemy
        (engine.store.pages); the driver's failures to reach the database are StoreUnavailable."""
        with self.read() as conn:
            try:
                yield conn.connection.driver_connection
            except self.engine.dialect.loaded_dbapi.OperationalError as exc:
                raise StoreUnavailable(f"database unavailable: {_short(exc)}") from exc

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.is_sqlite else "postgresql"

    def upgrade(self) -> None:
        """Apply Alembic migrations up to head; a database that cannot be reached is StoreUnavailable."""
        from alembic import command  # only here: importing alembic is most of a read command's start
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.connect() as conn:
                if not self.is_sqlite:
                    # Replicas starting together: one migrates (PostgreSQL's DDL is transactional),
                    # the others wait here and then find the schema at head. A transaction lock,
                    # so it holds behind PgBouncer too.
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
                    before = _pg_revision(conn)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if not self.is_sqlite and _pg_revision(conn) != before:
                    # New tables have no statistics: without them the planner may scan where an
                    # index probe is meant (a fresh database's intake did, until autovacuum came).
                    conn.exec_driver_sql("ANALYZE")
                conn.commit()
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {_short(exc)}") from exc

    def is_current(self) -> bool:
        """Whether the schema is at `HEAD_REVISION`, read with plain SQL (no alembic import)."""
        try:
            with self.engine.connect() as conn:
                found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        except OperationalError as exc:
            if self.is_sqlite and "no such table" in str(exc):
                return False
            raise StoreUnavailable(f"database unavailable: {_short(exc)}") from exc
        except ProgrammingError:  # PostgreSQL: relation "alembic_version" does not exist
            return False
        return found == [HEAD_REVISION]

    def dispose(self) -> None:
        self.engine.dispose()
        if isinstance(self._write_lock, WriteTurn):
            self._write_lock.close()


class WriteTurn:
    """The threads of this process, then every process on the same SQLite file, one at a time.

    The cross-process part is `flock` on `<database>-writer.lock`, so intake helpers, the
    daemon and CLI commands take turns instead of sleeping in SQLite's busy handler. Without
    a file (in-memory) or when the lock file cannot be opened, threads still queue here and
    SQLite's own lock keeps writes correct.
    """

    def __init__(self, database: str | None) -> None:
        self._threads = threading.Lock()
        self._path = database + "-writer.lock" if database else None
        self._fd: int | None = None

    def _file(self) -> int | None:
        if self._fd is None and self._path is not None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._path = None
        return self._fd

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if (fd := self._file()) is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def sqlite_file(url: str) -> str | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _pg_revision(conn: Connection) -> str | None:
    """The revision PostgreSQL's schema is at, read without failing the transaction if none."""
    if conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar() is None:
        return None
    found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if found is None else str(found)


def current_revision(db: Database) -> str | None:
    """The Alembic revision the database is at."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def json_text(value: Any) -> str:
    """What JSON columns store: orjson, non-string keys allowed."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).splitlines()[0]


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"database.url: not a database URL: {exc}") from None


def _check_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder, and says only "unable to open database file"."""
    database = sqlite_file(url)
    if database is not None and not Path(database).parent.is_dir():
        raise DatabaseUrlError(f"database.url: folder {Path(database).parent} does not exist")


def _engine(url: URL, **kwargs: Any) -> Engine:
    """The engine; a driver that is not installed is a one-line DatabaseUrlError, not an ImportError."""
    try:
        return create_engine(
            url,
            pool_size=8,
            max_overflow=16,
            json_serializer=json_text,
            json_deserializer=orjson.loads,
            **kwargs,
        )
    except NoSuchModuleError:
        raise DatabaseUrlError(f"database.url: unknown database or driver {url.drivername!r}") from None
    except ImportError as exc:
        if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
            raise DatabaseUrlError(f"database.url: {POSTGRES_EXTRA}") from None
        raise DatabaseUrlError(
            f"database.url: driver {url.get_driver_name()!r} is not installed ({exc}); "
            f"Suture supports postgresql+psycopg:// ({POSTGRES_EXTRA})"
        ) from None


#: A scratch store's page cache (SQLite's default is 2 MB): a replay's dedup probes indexes of
#: random fingerprints, which a small cache reads from the file again at almost every probe.
SCRATCH_CACHE_KIB = 65536


def _sqlite_on_connect(synchronous: Synchronous) -> Callable[[Any, Any], None]:
    """The pragmas every new SQLite connection gets, `synchronous` from the config."""
    if synchronous not in ("full", "normal", "off"):
        raise ValueError(f"sqlite_synchronous must be full or normal, not {synchronous!r}")
    pragma = f"PRAGMA synchronous={synchronous.upper()}"
    # A scratch store keeps its journal in memory: nothing in it must outlive the process.
    journal = "PRAGMA journal_mode=MEMORY" if synchronous == "off" else "PRAGMA journal_mode=WAL"

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(journal)
        cursor.execute(pragma)
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if synchronous == "off":
            cursor.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KIB}")
        cursor.close()

    return on_connect


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that later upgrades to a write fails with "database is locked"
    # at once instead of waiting; writes therefore take the lock when they begin.
    # On the driver's connection: SQLAlchemy's statement machinery cost more than the BEGIN.
    write = conn.get_execution_options().get("suture_write")
    conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # type: ignore[union-attr]


def open_database(
    url: str, *, upgrade: bool | Literal["if_behind"] = False, sqlite_synchronous: Synchronous = "full"
) -> Database:
    """The database of `database.url`, migrated to head if `upgrade` (`"if_behind"`: only when
    its schema is not at head, which read commands and `serve` use so that a database already at
    head costs neither a migration nor alembic's import).

    Callers pass `config.database.sqlite_synchronous`; the default is the durable choice, so a
    caller that forgets it loses speed, never answered writes.
    """
    db = Database(url, sqlite_synchronous=sqlite_synchronous)
    if upgrade:
        try:
            if upgrade is True or not db.is_current():
                db.upgrade()
        except BaseException:
            db.dispose()
            raise
    return db
