"""config.yaml as pydantic models. One wrong key, type or value: one clear line, exit 2.

The loaded config is frozen. It names secrets by environment variable only; each is read once,
on first use (`suture serve` reads them all before it opens the database, read commands none),
into a `SecretStr`, which prints as `**********` in a log line, a repr or a JSON dump.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.access import AccessControl, Role, Token, User, parse_password_hash
from engine.durations import Duration
from engine.errors import ConfigError
from engine.models import RESOLVE_WITHIN, RESPOND_WITHIN, Severity
from engine.yamlfile import LocatedYaml, YamlSyntaxError, describe_validation_error, load_located


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
    #: Where people reach this daemon (behind a proxy, say): the base of links in notifications.
    public_url: str | None = Field(default=None, pattern=r"^https?://")

    def base_url(self) -> str:
        """`public_url`, or where the daemon listens."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


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
    #: How long a claimed run stays its worker's without a renewal (renewed every third of it):
    #: after it, any replica takes the run back, so it bounds how long a dead replica's run waits.
    lease: Duration = timedelta(seconds=30)

    @field_validator("lease")
    @classmethod
    def _lease_long_enough(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value


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


#: What a channel may be told about (DESIGN.md, "Notification events"); `all` is every one of them.
NotificationEvent = Literal[
    "incident_opened",
    "escalation",
    "run_failed",
    "approval_needed",
    "approval_expired",
    "flapping",
    "breaker_open",
    "storm",
    "resolved",
    "all",
]
NOTIFICATION_EVENTS: tuple[str, ...] = NotificationEvent.__args__[:-1]  # type: ignore[attr-defined]

#: The default endpoint of PagerDuty's Events API v2.
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    return value


class ChannelMatch(_Section):
    """Which incidents a channel hears of; each value a regular expression matched in full."""

    severity: str | None = None
    code: str | None = None
    owner: str | None = None
    target: str | None = None

    _check = field_validator("severity", "code", "owner", "target")(_regex)


class SmtpConfig(_Section):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    #: Implicit TLS from the first byte (port 465), instead of STARTTLS.
    tls: bool = False
    user: str | None = None
    password_secret: str | None = None
    timeout: Duration = timedelta(seconds=10)


#: The keys of a channel that name an entry of `secrets:`.
CHANNEL_SECRET_KEYS = ("url_secret", "signing_secret", "routing_key_secret")


class ChannelConfig(_Section):
    """One notification channel (`notifications:` entry). One model for every kind, checked per
    kind, so that an error points at the key in the file rather than at a union branch."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: Literal["slack", "webhook", "pagerduty", "email"]
    events: list[NotificationEvent] = Field(min_length=1)
    match: ChannelMatch = Field(default_factory=ChannelMatch)
    url: str | None = Field(default=None, pattern=r"^https?://")
    url_secret: str | None = None
    signing_secret: str | None = None
    routing_key_secret: str | None = None
    smtp: SmtpConfig | None = None
    sender: str | None = Field(default=None, alias="from")
    to: list[str] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        if isinstance(data, dict) and (True in data or "on" in data):
            raise ValueError(
                "use `events:` to list what the channel hears of (YAML reads a bare `on:` as true)"
            )
        return data

    @model_validator(mode="after")
    def _per_kind(self) -> ChannelConfig:
        if self.kind in ("slack", "webhook") and (self.url is None) == (self.url_secret is None):
            raise ValueError(f"a {self.kind} channel needs exactly one of url or url_secret")
        if self.kind == "pagerduty":
            if self.routing_key_secret is None:
                raise ValueError("a pagerduty channel needs routing_key_secret")
            if self.url_secret is not None:
                raise ValueError("a pagerduty channel takes url (default: the Events API v2), not url_secret")
        if self.kind == "email":
            if self.smtp is None or self.sender is None or not self.to:
                raise ValueError("an email channel needs smtp, from and to")
        elif self.smtp is not None or self.sender is not None or self.to:
            raise ValueError("smtp, from and to are for email channels only")
        if self.kind != "webhook" and self.signing_secret is not None:
            raise ValueError("signing_secret is for webhook channels only")
        return self

    @property
    def endpoint(self) -> str | None:
        """The URL written in the file (a pagerduty channel defaults to the Events API v2)."""
        return self.url or (PAGERDUTY_EVENTS_URL if self.kind == "pagerduty" else None)

    def hears(self, event: str) -> bool:
        return "all" in self.events or event in self.events

    def secret_names(self) -> list[tuple[tuple[str, ...], str]]:
        """Every `secrets:` entry the channel names, with its key (`("smtp", "password_secret")`)."""
        named: list[tuple[tuple[str, ...], str]] = [
            ((key,), getattr(self, key)) for key in CHANNEL_SECRET_KEYS if getattr(self, key)
        ]
        if self.smtp is not None and self.smtp.password_secret:
            named.append((("smtp", "password_secret"), self.smtp.password_secret))
        return named


#: Deadlines per severity; `low` has none unless a code sets one.
SeverityName = Literal["critical", "high", "medium", "low"]
#: A severity missing from the file keeps its default; `null` turns its deadline off.
SeverityDurations = dict[SeverityName, Duration | None]


def _per_severity(deadlines: dict[Severity, timedelta | None]) -> SeverityDurations:
    return {severity.value: span for severity, span in deadlines.items() if span is not None}


class EscalationConfig(_Section):
    """First-response and resolve deadlines, and how escalation repeats (a code may override)."""

    respond_within: SeverityDurations = Field(default_factory=lambda: _per_severity(RESPOND_WITHIN))
    resolve_within: SeverityDurations = Field(default_factory=lambda: _per_severity(RESOLVE_WITHIN))
    repeat: Duration = timedelta(hours=1)
    check_every: Duration = Field(default=timedelta(seconds=15), ge=timedelta(seconds=1))

    @field_validator("respond_within", mode="after")
    @classmethod
    def _respond_defaults(cls, given: SeverityDurations) -> SeverityDurations:
        return {**_per_severity(RESPOND_WITHIN), **given}

    @field_validator("resolve_within", mode="after")
    @classmethod
    def _resolve_defaults(cls, given: SeverityDurations) -> SeverityDurations:
        return {**_per_severity(RESOLVE_WITHIN), **given}


#: Names land in the audit log as the actor of every action: keep them plain.
ACTOR_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class TokenConfig(_Section):
    """An API token: its value lives in the environment variable `token_env`, never in the file."""

    name: str = Field(pattern=ACTOR_NAME)
    token_env: str = Field(min_length=1)
    role: Role


class UserConfig(_Section):
    """A person signing in with HTTP Basic (and later the console)."""

    name: str = Field(pattern=ACTOR_NAME)
    password_hash: str
    role: Role

    @model_validator(mode="after")
    def _hash_parses(self) -> UserConfig:
        # Checked on the whole entry so that the error shows the entry's line but not the value:
        # a password pasted here by mistake must not end up in a terminal or a log.
        try:
            parse_password_hash(self.password_hash)
        except ValueError as exc:
            raise ValueError(f"password_hash: {exc}") from None
        return self


class AccessConfig(_Section):
    """Who may use /api/v1 beyond the alert endpoints; empty: reads on loopback only, no changes."""

    open_reads: bool = False
    tokens: list[TokenConfig] = Field(default_factory=list)
    users: list[UserConfig] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[UserConfig]) -> list[UserConfig]:
        names = [user.name for user in users]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"user names must be unique (twice: {', '.join(twice)})")
        return users

    @property
    def configured(self) -> bool:
        return bool(self.tokens or self.users)


#: Shortest token value accepted: an API that can approve remediation deserves more than a PIN.
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class SourceSecrets(BaseModel):
    """A source's secrets as read from the environment; None where no variable is named or it is empty."""

    model_config = ConfigDict(frozen=True)

    #: The bearer token webhooks must carry (`token_env`).
    token: SecretStr | None = None
    #: The HMAC-SHA256 key bodies must be signed with (`signature_secret_env`).
    signature_secret: SecretStr | None = None
    #: The token for the source's own API, for reconciling (`api_token_env`).
    api_token: SecretStr | None = None


def _from_env(variable: str | None) -> SecretStr | None:
    """An unset or empty variable is "not configured" (docs/reference.md, for sources and pulls)."""
    value = os.environ.get(variable) if variable else None
    return SecretStr(value) if value else None


T = TypeVar("T")


class _Resolved:
    """What a config read from the environment, each value once.

    Not pickled: intake helper processes get the config but authenticate nothing.
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def once(self, key: Hashable, read: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._values:
                self._values[key] = read()  # a ConfigError stores nothing: the next call reads again
            value: T = self._values[key]
            return value

    def __reduce__(self) -> tuple[type[_Resolved], tuple[()]]:
        return (_Resolved, ())


class RetentionConfig(_Section):
    """How long raw webhook bodies and step output are kept (`null`: forever); incidents, alerts
    and run summaries are always kept, so history and statistics do not change when these go."""

    events: Duration | None = timedelta(days=30)
    step_output: Duration | None = timedelta(days=90)

    @field_validator("events", "step_output")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("expected a duration above zero like 30d, or null to keep forever")
        return value


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class PerTargetBudget(_Section):
    max_runs: int = Field(ge=1)
    per: Duration = timedelta(hours=1)


class AutomationConfig(_Section):
    """Fleet-wide budgets across all codes: no combination of codes can hammer one host or the fleet."""

    max_runs_per_minute: int | None = Field(default=None, ge=1)
    per_target: PerTargetBudget | None = None


#: What a maintenance matcher may name besides `labels.NAME` (engine.policy.matchers compiles them).
MATCHER_KEYS = ("code", "target", "severity", "source", "alertname")


def _iana_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name like Europe/Berlin)") from None
    return value


class MaintenanceConfig(_Section):
    """A maintenance window: no automatic run for what `match` covers, once (`from`/`until`) or
    recurring (`cron` + `duration`, in `timezone`). Alerts are still recorded, incidents opened."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    match: dict[str, str]
    starts: datetime | None = Field(default=None, alias="from")
    until: datetime | None = None
    cron: str | None = None
    duration: Duration | None = None
    #: Where `cron` fires and what a `from`/`until` without an offset means.
    timezone: str = "UTC"

    _zone = field_validator("timezone")(_iana_zone)

    @field_validator("match")
    @classmethod
    def _matchers(cls, given: dict[str, str]) -> dict[str, str]:
        if not given:
            raise ValueError('at least one matcher is needed, e.g. {target: "db-.*"}')
        for key, regex in given.items():
            if key not in MATCHER_KEYS and not (key.startswith("labels.") and len(key) > len("labels.")):
                allowed = ", ".join((*MATCHER_KEYS, "labels.NAME"))
                raise ValueError(f"{key!r} is not a matcher key (expected one of {allowed})")
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"{key}: not a regular expression: {exc}") from None
        return given

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter  # only here: most commands never look at a window

        if value is not None and not croniter.is_valid(value):
            raise ValueError('not a cron expression (expected five fields like "0 2 * * 0")')
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("expected a duration above zero like 2h")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> MaintenanceConfig:
        one_off = self.starts is not None or self.until is not None
        recurring = self.cron is not None or self.duration is not None
        forms = "either from and until (one-off) or cron and duration (recurring)"
        if one_off == recurring:
            raise ValueError(f"give {forms}" + (", not both" if one_off else ""))
        if recurring and (self.cron is None or self.duration is None):
            missing = "duration" if self.cron else "cron"
            raise ValueError(f"a recurring window needs both cron and duration ({missing} is missing)")
        if one_off:
            if self.starts is None or self.until is None:
                missing = "until" if self.starts else "from"
                raise ValueError(f"a one-off window needs both from and until ({missing} is missing)")
            zone = ZoneInfo(self.timezone)
            starts, until = (t if t.tzinfo else t.replace(tzinfo=zone) for t in (self.starts, self.until))
            if until <= starts:
                raise ValueError("until must be later than from")
            object.__setattr__(self, "starts", starts.astimezone(UTC))
            object.__setattr__(self, "until", until.astimezone(UTC))
        return self


class ConsoleConfig(_Section):
    """The web console at `/`. Its sessions are signed with the key in `session_secret_env` (the
    same on every replica, so a sign-in survives restarts), or with a key drawn at start."""

    enabled: bool = True
    session_secret_env: str | None = None


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
    notifications: list[ChannelConfig] = Field(default_factory=list)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    automation: AutomationConfig = Field(default_factory=AutomationConfig)
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)

    #: Folder of the config file; relative paths in it are resolved against this.
    base_dir: Path = Field(default=Path("."), exclude=True)
    #: The parsed file, for `file:line` in errors found after loading (missing environment variables).
    _doc: LocatedYaml | None = PrivateAttr(default=None)
    _resolved: _Resolved = PrivateAttr(default_factory=_Resolved)

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

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name) or SourceConfig()

    def resolve_secrets(self) -> None:
        """Read every secret now: `suture serve` calls this before it opens the database, so a
        missing required one stops the start with a ConfigError, and no request reads the environment.
        """
        self.access_control()
        for name in self.sources:
            self.source_secrets(name)
        for entry in self.pull:
            self.pull_token(entry.name)
        self.template_secrets()
        for channel in self.notifications:
            for key, name in channel.secret_names():
                self.channel_secret(channel.name, key, name)

    def heard_events(self) -> frozenset[str]:
        """Every event some channel hears of: only these are written to the outbox."""
        heard: set[str] = set()
        for channel in self.notifications:
            heard.update(NOTIFICATION_EVENTS if "all" in channel.events else channel.events)
        return frozenset(heard)

    def channel(self, name: str) -> ChannelConfig:
        found = next((channel for channel in self.notifications if channel.name == name), None)
        if found is None:
            known = ", ".join(channel.name for channel in self.notifications) or "none configured"
            raise ConfigError(f"no notification channel named {name!r} (channels: {known})")
        return found

    def channel_secret(self, channel: str, key: tuple[str, ...], name: str) -> SecretStr:
        """The value of `secrets.<name>` for a channel, read once; unset is a ConfigError naming the key."""

        def read() -> SecretStr:
            ref = self.secrets[name]  # load_config checked the name is defined
            value = os.environ.get(ref.env, "")
            if not value:
                index = next(i for i, entry in enumerate(self.notifications) if entry.name == channel)
                where = self._where(("notifications", index, *key))
                dotted = ".".join(("notifications", str(index), *key))
                raise ConfigError(
                    f"{where}: {dotted}: environment variable {ref.env} of secret {name} is not set"
                    f" (channel {channel})"
                )
            return SecretStr(value)

        return self._resolved.once(("channel", name), read)

    def source_secrets(self, name: str) -> SourceSecrets:
        """The webhook token, signing secret and API token of source `name`, read on the first call.

        All optional: without a token a source takes unauthenticated bodies, without a signing
        secret unsigned ones (docs/reference.md, "HTTP API").
        """

        def read() -> SourceSecrets:
            settings = self.source(name)
            return SourceSecrets(
                token=_from_env(settings.token_env),
                signature_secret=_from_env(settings.signature_secret_env),
                api_token=_from_env(settings.api_token_env),
            )

        return self._resolved.once(("source", name), read)

    def pull_token(self, name: str) -> SecretStr | None:
        """The bearer token of the `pull:` entry `name`, read on the first call; None if it has none."""

        def read() -> SecretStr | None:
            entry = next((entry for entry in self.pull if entry.name == name), None)
            return _from_env(entry.token_env) if entry is not None else None

        return self._resolved.once(("pull", name), read)

    def template_secrets(self) -> dict[str, SecretStr]:
        """`secrets:` for playbook templates, read on the first call; a missing variable is simply absent."""

        def read() -> dict[str, SecretStr]:
            return {
                name: SecretStr(os.environ[ref.env])
                for name, ref in self.secrets.items()
                if ref.env in os.environ
            }

        return self._resolved.once(("templates",), read)

    def secret_values(self) -> dict[str, str]:
        """`template_secrets()` in the clear, for the Renderer, which redacts them from every record."""
        return {name: value.get_secret_value() for name, value in self.template_secrets().items()}

    def access_control(self) -> AccessControl:
        """The API's access rules, token values read from the environment on the first call only.

        `suture serve` calls this before it opens the database, so a token whose environment
        variable is unset (or too short) stops the start with a ConfigError: an operator who
        configured a token expects it to be required, not silently missing.
        """
        return self._resolved.once(("access",), self._read_access)

    def _read_access(self) -> AccessControl:
        tokens = []
        for index, token in enumerate(self.access.tokens):
            value = os.environ.get(token.token_env, "")
            if len(value) < MIN_TOKEN_CHARS:
                problem = "is not set" if not value else f"holds fewer than {MIN_TOKEN_CHARS} characters"
                key = f"access.tokens.{index}.token_env"
                raise ConfigError(
                    f"{self._where(('access', 'tokens', index, 'token_env'))}: {key}: environment variable"
                    f" {token.token_env} {problem} (the token for {token.name})"
                )
            tokens.append(Token(token.name, SecretStr(value), token.role))
        users = [User(u.name, parse_password_hash(u.password_hash), u.role) for u in self.access.users]
        return AccessControl(tokens, users, open_reads=self.access.open_reads)

    def _where(self, loc: tuple[str | int, ...]) -> str:
        return self._doc.where(loc) if self._doc is not None else "config.yaml"


def _check_channels(config: Config, doc: LocatedYaml) -> None:
    """Channel names are unique and every secret a channel names is defined in `secrets:`."""
    seen: set[str] = set()
    for index, channel in enumerate(config.notifications):
        if channel.name in seen:
            raise ConfigError(
                f"{doc.where(('notifications', index, 'name'))}: notifications.{index}.name:"
                f" channel {channel.name!r} is defined twice"
            )
        seen.add(channel.name)
        for key, name in channel.secret_names():
            if name not in config.secrets:
                dotted = ".".join(("notifications", str(index), *key))
                known = ", ".join(sorted(config.secrets)) or "none defined"
                raise ConfigError(
                    f"{doc.where(('notifications', index, *key))}: {dotted}: secret {name!r} is not"
                    f" defined under secrets: ({known})"
                )


def _check_maintenance(config: Config, doc: LocatedYaml) -> None:
    """Window names are unique: the incident's `silenced_by` and `status` name a window by it."""
    seen: set[str] = set()
    for index, window in enumerate(config.maintenance):
        if window.name in seen:
            raise ConfigError(
                f"{doc.where(('maintenance', index, 'name'))}: maintenance.{index}.name:"
                f" window {window.name!r} is defined twice"
            )
        seen.add(window.name)


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
        config = Config.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        problems = describe_validation_error(doc, exc)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more) from None
    if not is_loopback(config.server.host) and not config.access.configured:
        # Without access, approve and reject answer 403 to everyone; open reads must stay on this machine.
        raise ConfigError(
            f"{doc.where(('server', 'host'))}: server.host: {config.server.host!r} is not a loopback"
            " address; configure access.tokens or access.users before the API listens beyond this machine"
        )
    _check_channels(config, doc)
    _check_maintenance(config, doc)
    config._doc = doc  # a private attribute: the frozen fields stay as validated
    return config
