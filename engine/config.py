"""config.yaml as pydantic models. One wrong key, type or value: one clear line, exit 2."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.durations import Duration
from engine.errors import ConfigError
from engine.yamlfile import YamlSyntaxError, describe_validation_error, load_located


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    url: str = "sqlite:///suture.db"
    #: `full`: a 2xx survives an OS crash or power loss; `normal` trades that for speed.
    sqlite_synchronous: Literal["full", "normal"] = "full"

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError("expected sqlite:///path or postgresql+psycopg://user@host/db")
        return value


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_alerts_per_body: int = Field(default=1000, ge=1)
    max_label_bytes: int = Field(default=4096, ge=64)
    max_annotation_bytes: int = Field(default=16384, ge=64)
    #: Processes that take webhook bodies off the daemon's core under load (0: never).
    intake_helpers: int = Field(default=1, ge=0, le=16)
    #: Alerts per second above which helpers start; they leave after 30 s without work.
    intake_helpers_above: float = Field(default=2000, ge=0)


class CatalogConfig(_Section):
    codes_dir: str = "codes"
    playbooks_dir: str = "playbooks"


class SourceConfig(_Section):
    """Per-source ingest settings; secrets are named by environment variable only."""

    enabled: bool = True
    token_env: str | None = None
    signature_secret_env: str | None = None
    #: Header carrying the hex HMAC-SHA256 of the body; default per source (see SIGNATURE_HEADERS).
    signature_header: str | None = None
    #: If set, the signature covers `timestamp:body` with the timestamp from this header (Grafana 12).
    timestamp_header: str | None = None
    timezone: str = "UTC"
    #: For pull/reconcile sources: the API to poll and how often.
    url: str | None = None
    api_token_env: str | None = None
    interval: Duration = timedelta(seconds=60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected an IANA name like Europe/Berlin)"
            ) from None
        return value


class PullSourceConfig(_Section):
    """A monitoring API Suture polls when monitoring cannot push to it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Literal["alertmanager", "prometheus"]
    url: str = Field(pattern=r"^https?://")
    interval: Duration = timedelta(seconds=30)
    timeout: Duration = timedelta(seconds=10)
    token_env: str | None = None


class WorkersConfig(_Section):
    concurrency: int = Field(default=8, ge=1, le=256)
    output_limit_bytes: int = Field(default=64 * 1024, ge=256)
    poll_interval: Duration = timedelta(seconds=5)


class SshConfig(_Section):
    user: str = "ops"
    port: int = Field(default=22, ge=1, le=65535)
    key_file: str = "~/.ssh/id_ed25519"
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: Duration = timedelta(seconds=10)
    keepalive: Duration = timedelta(seconds=15)
    allow_unknown_hosts: bool = False
    command_timeout: Duration = timedelta(seconds=60)


class InventoryEntry(_Section):
    match: str
    address: str | None = None
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    key_file: str | None = None


class HttpConfig(_Section):
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost"])
    timeout: Duration = timedelta(seconds=10)
    max_retry_after: Duration = timedelta(seconds=30)


class SecretRef(_Section):
    env: str


class NotificationConfig(_Section):
    name: str
    url_secret: str
    on: list[Literal["escalation", "run_failed", "approval_needed", "run_succeeded"]] = Field(
        default_factory=list
    )


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Config(_Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    pull: list[PullSourceConfig] = Field(default_factory=list)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    ssh: SshConfig = Field(default_factory=SshConfig)
    inventory: list[InventoryEntry] = Field(default_factory=list)
    http: HttpConfig = Field(default_factory=HttpConfig)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    notifications: list[NotificationConfig] = Field(default_factory=list)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    #: Folder of the config file; relative paths in it are resolved against this.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolve(self, relative: str) -> Path:
        path = Path(os.path.expanduser(relative))
        return path if path.is_absolute() else self.base_dir / path

    @property
    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(url[len(prefix) :]).resolve())
        return url

    @property
    def codes_dir(self) -> Path:
        return self.resolve(self.catalog.codes_dir)

    @property
    def playbooks_dir(self) -> Path:
        return self.resolve(self.catalog.playbooks_dir)

    def secret_values(self) -> dict[str, str]:
        """Secrets from the environment; a missing variable is simply absent."""
        return {name: os.environ[ref.env] for name, ref in self.secrets.items() if ref.env in os.environ}

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name) or SourceConfig()


def load_config(path: str | Path) -> Config:
    """Load and validate config.yaml; every failure is a ConfigError of one line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        doc = load_located(path)
    except YamlSyntaxError as exc:
        raise ConfigError(str(exc)) from exc
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of sections (database, server, ...)")
    data.pop("base_dir", None)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(doc, exc)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more) from None
    config.base_dir = path.resolve().parent
    return config
