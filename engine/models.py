"""Domain types at the centre: alerts, codes, playbooks, incidents, runs.

Catalog models (Code, Playbook, Step) forbid unknown keys so that a typo in YAML is
an error at load time, never a silently ignored setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.codegen import compiled, identifiers
from engine.durations import Duration

#: The stored state key of the global kill switch (`suture pause|resume`).
PAUSED_KEY = "paused"


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


#: First-response and resolve-by deadlines of the operations practice Suture follows
#: (config `escalation:` and a code's own `escalation:` override them).
RESPOND_WITHIN: dict[Severity, timedelta | None] = {
    Severity.critical: timedelta(minutes=30),
    Severity.high: timedelta(hours=2),
    Severity.medium: timedelta(days=1),
    Severity.low: None,
}
RESOLVE_WITHIN: dict[Severity, timedelta | None] = {
    Severity.critical: timedelta(hours=4),
    Severity.high: timedelta(hours=24),
    Severity.medium: timedelta(days=7),
    Severity.low: None,
}


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How soon an incident must be acknowledged and resolved; None: no deadline."""

    respond_within: timedelta | None
    resolve_within: timedelta | None

    @classmethod
    def of(cls, severity: Severity) -> Deadlines:
        return _SEVERITY_DEADLINES[severity]

    def respond_by(self, opened_at: datetime) -> datetime | None:
        return opened_at + self.respond_within if self.respond_within is not None else None

    def due_at(self, opened_at: datetime) -> datetime | None:
        return opened_at + self.resolve_within if self.resolve_within is not None else None


_SEVERITY_DEADLINES = {
    severity: Deadlines(RESPOND_WITHIN[severity], RESOLVE_WITHIN[severity]) for severity in Severity
}


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Alert(BaseModel):
    """One normalised signal; connectors produce these, nothing else does."""

    model_config = ConfigDict(frozen=True)

    source: str
    name: str
    fingerprint: str
    status: AlertStatus
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str | None = None

    #: An alert from values validated already (by a vendor body model, or by the daemon before
    #: an intake helper got them), positional in ALERT_FIELDS order or named: what
    #: `model_construct` builds, without its per-field defaults and alias handling, which cost
    #: 4 µs per alert, twice per alert under a storm. Generated from the fields below.
    trusted: ClassVar[Callable[..., Alert]]


#: The alert's fields in the order `Alert` declares them: the wire to the intake helpers, the
#: alerts table's rows and the replay's reads of them follow this (engine.alertfields).
ALERT_FIELDS: tuple[str, ...] = identifiers(Alert.model_fields)


def _trusted_constructor() -> Callable[..., Alert]:
    params = ", ".join(ALERT_FIELDS)
    values = ", ".join(f"{name!r}: {name}" for name in ALERT_FIELDS)
    source = (
        f"def trusted(cls, {params}):\n"
        "    alert = cls.__new__(cls)\n"
        f"    fields = {{{values}}}\n"
        "    put(alert, '__dict__', fields)\n"
        "    put(alert, '__pydantic_fields_set__', set(fields))\n"
        "    put(alert, '__pydantic_extra__', None)\n"
        "    put(alert, '__pydantic_private__', None)\n"
        "    return alert\n"
    )
    return compiled("trusted", source, {"put": object.__setattr__})


setattr(Alert, "trusted", classmethod(_trusted_constructor()))  # noqa: B010 - a ClassVar pydantic leaves alone


class IncidentStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class RunStatus(StrEnum):
    awaiting_approval = "awaiting_approval"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    rolled_back = "rolled_back"
    timed_out = "timed_out"
    interrupted = "interrupted"
    rejected = "rejected"
    expired = "expired"
    skipped = "skipped"
    cancelled = "cancelled"


class Mode(StrEnum):
    auto = "auto"
    approval = "approval"
    manual = "manual"


class OnFailure(StrEnum):
    abort = "abort"
    continue_ = "continue"
    rollback = "rollback"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


# ---------------------------------------------------------------- playbooks


@dataclass(frozen=True, slots=True)
class StepTemplate:
    """One templated field of a step: what `suture validate` checks and a run renders.

    Declared by each step kind, so the catalog checks every kind the same way without
    knowing any of them.
    """

    #: Where it sits in the YAML, from the step kind down (`("command",)`) or from the step.
    path: tuple[str | int, ...]
    source: str
    #: Rendered for `sh`: each value is shell-quoted, so the author's own quotes would undo that.
    shell: bool = False

    def under(self, *prefix: str | int) -> StepTemplate:
        return StepTemplate((*prefix, *self.path), self.source, self.shell)


class SshStep(_Strict):
    command: str
    sudo: bool = False
    #: Host to run on; a template, defaults to the incident's target.
    target: str | None = None

    def templates(self) -> Iterator[StepTemplate]:
        yield StepTemplate(("command",), self.command, shell=True)
        if self.target:
            yield StepTemplate(("target",), self.target)


class HttpStep(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])
    verify_tls: bool = True
    follow_redirects: bool = False

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def templates(self) -> Iterator[StepTemplate]:
        yield StepTemplate(("url",), self.url)
        for key, value in self.headers.items():
            yield StepTemplate(("headers", key), value)
        if self.body is not None:
            yield StepTemplate(("body",), self.body)
        yield from (StepTemplate(("json",), text) for text in _strings(self.json_body))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


ActionName = Literal["ssh", "http", "wait"]
#: The step keys that name an action; a step has exactly one of them.
ACTION_NAMES: tuple[ActionName, ...] = ("ssh", "http", "wait")
#: What each kind's parameters are: its model, or the duration of a `wait`.
StepParams = SshStep | HttpStep | timedelta


class Step(_Strict):
    name: str | None = None
    ssh: SshStep | None = None
    http: HttpStep | None = None
    wait: Duration | None = None
    timeout: Duration | None = None
    retries: int = Field(default=0, ge=0, le=20)
    retry_delay: Duration = timedelta(seconds=1)
    retry_backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    when: str | None = None
    register_as: str | None = Field(default=None, alias="register")
    on_failure: OnFailure = OnFailure.abort

    @field_validator("when")
    @classmethod
    def _bare_when(cls, value: str | None) -> str | None:
        """`when: "{{ x }}"` (the Ansible habit) means `when: x`: a condition is an expression."""
        found = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", value, re.DOTALL) if value is not None else None
        if found is None or "{{" in found.group(1) or "}}" in found.group(1):
            return value
        return found.group(1).strip()

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [name for name in ACTION_NAMES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a step needs exactly one of ssh, http or wait")
        if self.register_as is not None and not re.fullmatch(r"[a-z_][a-z0-9_]*", self.register_as):
            raise ValueError("register must be a lower-case identifier")
        return self

    @property
    def action(self) -> ActionName:
        """The name of the step's action, the key it is registered under."""
        return next(name for name in ACTION_NAMES if getattr(self, name) is not None)

    @property
    def params(self) -> StepParams:
        """The action's parameters as written, templates not rendered yet."""
        params: StepParams = getattr(self, self.action)
        return params

    def templates(self) -> Iterator[StepTemplate]:
        """Every template of the step's action, located from the step (`("ssh", "command")`);
        `when` is an expression, not among them."""
        params = self.params
        if not isinstance(params, timedelta):  # a wait has none
            yield from (template.under(self.action) for template in params.templates())

    def display_name(self, index: int) -> str:
        return self.name or f"{self.action} #{index + 1}"


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str = ""
    timeout: Duration = timedelta(seconds=300)
    idempotent: bool = False
    steps: list[Step] = Field(min_length=1)
    verify: list[Step] = Field(default_factory=list)
    rollback: list[Step] = Field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


# -------------------------------------------------------------------- codes


class Match(_Strict):
    source: str | None = None
    alertname: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class StormPolicy(_Strict):
    """More open incidents of one code than `incidents`, opened within `within`: no automatic runs."""

    incidents: int = Field(ge=1)
    within: Duration = timedelta(minutes=5)


class FlappingPolicy(_Strict):
    """More firing/resolved changes of one alert than `changes` within `within`: no automatic run."""

    changes: int = Field(ge=1)
    within: Duration = timedelta(hours=1)


class BreakerPolicy(_Strict):
    """After `failures` consecutive failed or ineffective runs of one playbook version, it stops."""

    failures: int = Field(ge=1)


class Policy(_Strict):
    cooldown: Duration | None = None
    max_runs: int | None = Field(default=None, ge=1)
    per: Duration | None = None
    #: An unapproved run becomes `expired` after this; without it, it waits for a person.
    approval_timeout: Duration | None = None
    #: How soon the alert must resolve after a run for the run to count as effective (default 30m).
    effective_within: Duration | None = None
    #: A new incident of the same code and target this soon after it resolved undoes that (default 24h).
    recurrence_window: Duration | None = None
    #: Queue the run for later; act only if the alert is still firing then.
    delay: Duration | None = None
    #: Act only once the alert has been delivered this often.
    min_occurrences: int | None = Field(default=None, ge=1)
    #: Runs at a time on one target, across codes (default 1); more wait `queued`.
    concurrency: int | None = Field(default=None, ge=1)
    storm: StormPolicy | None = None
    flapping: FlappingPolicy | None = None
    breaker: BreakerPolicy | None = None


class EscalationOverride(_Strict):
    """A code's own deadlines, in place of the config's for its severity."""

    respond_within: Duration | None = None
    resolve_within: Duration | None = None


class Knowledge(_Strict):
    summary: str = ""
    diagnosis: list[str] = Field(default_factory=list)
    manual_steps: list[str] = Field(default_factory=list)
    owner: str = ""
    links: list[str] = Field(default_factory=list)


_PINNED = r"[a-z0-9][a-z0-9_.-]*@[1-9][0-9]*"


def _pinned(value: str) -> str:
    if not re.fullmatch(_PINNED, value):
        raise ValueError("expected a pinned playbook version, name@version")
    return value


class Canary(_Strict):
    """A new playbook version run live on `share` of a code's incidents (chosen by incident)."""

    playbook: str
    share: float = Field(gt=0, le=1)

    @field_validator("playbook")
    @classmethod
    def _pinned_version(cls, value: str) -> str:
        return _pinned(value)

    @property
    def version(self) -> tuple[str, int]:
        name, version = self.playbook.split("@", 1)
        return name, int(version)


class Code(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$")
    title: str
    severity: Severity
    match: Match
    #: The host the incident is about; without it: `instance` minus its port, else `host`,
    #: `hostname`, `target` or `node`.
    target: str | None = None
    playbook: str | None = None
    mode: Mode = Mode.manual
    dry_run: bool = False
    policy: Policy = Field(default_factory=Policy)
    escalation: EscalationOverride | None = None
    knowledge: Knowledge = Field(default_factory=Knowledge)
    canary: Canary | None = None
    #: A version rendered beside the live one for every incident, never executed (`name@version`).
    shadow: str | None = None

    @field_validator("shadow")
    @classmethod
    def _shadow_pinned(cls, value: str | None) -> str | None:
        return None if value is None else _pinned(value)

    @property
    def shadow_version(self) -> tuple[str, int] | None:
        if self.shadow is None:
            return None
        name, version = self.shadow.split("@", 1)
        return name, int(version)

    @property
    def playbook_name(self) -> str | None:
        return self.playbook.split("@", 1)[0] if self.playbook else None

    @property
    def playbook_pin(self) -> int | None:
        if self.playbook and "@" in self.playbook:
            return int(self.playbook.split("@", 1)[1])
        return None

    @field_validator("playbook")
    @classmethod
    def _playbook_ref(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*(@[1-9][0-9]*)?", value):
            raise ValueError("expected a playbook name, optionally pinned as name@version")
        return value


UNCLASSIFIED = "UNCLASSIFIED"


# ------------------------------------------------------------ run execution


class ActionResult(BaseModel):
    """What one attempt of one action did. `registered` is what `register:` exposes."""

    ok: bool
    exit_code: int | None = None
    http_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    retryable: bool = False
    timed_out: bool = False
    registered: dict[str, Any] = Field(default_factory=dict)


@dataclass(slots=True)
class ClassifiedAlert:
    """An alert plus what the catalog says about it, decided before the write.

    Not frozen (nothing changes it): a frozen dataclass costs a microsecond more to build, and
    under a storm intake builds tens of thousands a second, in the daemon and in the helper.
    """

    alert: Alert
    code: str
    title: str
    severity: Severity
    target: str
    mode: Mode
    playbook: tuple[str, int] | None
    dry_run: bool = False
    policy: Policy | None = None
    #: None: the severity's default deadlines.
    deadlines: Deadlines | None = None
    #: The code's shadow version, rendered beside each run of it.
    shadow: tuple[str, int] | None = None


@dataclass(frozen=True)
class Submission:
    source: str
    body: str
    alerts: list[ClassifiedAlert]


@dataclass(frozen=True, slots=True)
class PlaybookVersion:
    """One playbook version as the database keeps it, forever and unchanged."""

    name: str
    version: int
    sha256: str
    body: str


@dataclass(frozen=True, slots=True)
class CodeVersion:
    """A code as loaded; stored as its next version whenever its content hash changes."""

    code: str
    sha256: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunDecision:
    """What became of an incident when it opened, as replay compares it: `run` (queued), `deferred`
    (queued for later: `policy.delay`), `approval` (waiting for a person), `held` (skipped by a
    gate, `reason` says which) or `none` (no run: manual mode, unclassified)."""

    kind: str
    reason: str | None = None

    @classmethod
    def of_run(
        cls, status: str | None, trigger: str | None, not_before: datetime | None, reason: str | None
    ) -> RunDecision:
        """The decision an incident's first run records."""
        if status is None:
            return NO_RUN
        if status == RunStatus.skipped.value:
            return cls("held", reason)
        if trigger == Mode.approval.value:
            return cls("approval", reason)
        if not_before is not None:
            return cls("deferred", reason)
        return cls("run")


NO_RUN = RunDecision("none")


@dataclass(frozen=True, slots=True)
class ReplayedAlert:
    """One stored alert of a replayed period: its code as stored and as the replay classified it."""

    actual: str
    replayed: str


@dataclass(frozen=True, slots=True)
class ReplayedIncident:
    """An incident one alert of the period opened, as it happened, in the replay, or both (None
    on a side where that alert opened no incident)."""

    actual_id: int | None
    actual_code: str | None
    actual: RunDecision | None
    replayed_code: str | None
    replayed: RunDecision | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on a claimed run: its writes land only while the run is still running
    under this owner and attempt (a replica that took the run back started a new attempt)."""

    run_id: int
    owner: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A running run recovery takes back: whether it may run again, and the claim it takes it from.

    `expired`: taken because its lease ran out (the write re-checks that it still has), not
    because its holder is known dead."""

    idempotent: bool
    attempt: int
    expired: bool
