"""People's silences: "no automation here for a while", and the gate that honours them.

A silence holds a run whose incident its matchers match while it is active (from `starts_at`,
up to but not including `ends_at`). Alerts are still recorded and incidents still opened; only
the automatic run is held, and the incident says which silence held it (`silenced_by`).
Pure: no clock, no I/O; the store reads the rules once per batch and `now` comes from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.durations import parse_duration
from engine.errors import InvalidArgument
from engine.policy.decisions import ALLOW, Decision, Hold
from engine.policy.matchers import Matchers, Subject, compile_matchers
from engine.policy.request import RunHistory, RunRequest
from engine.records import Silence

#: `Hold.gate` of this gate (metrics count holds by it).
GATE = "silence"


@dataclass(frozen=True, slots=True)
class SilenceRule:
    """A stored silence with its matchers compiled: what the gate and the runner's re-check read."""

    id: int
    matchers: Matchers
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    @property
    def name(self) -> str:
        """What the incident's `silenced_by` says."""
        return f"silence {self.id}"

    def reason(self) -> str:
        """The held run's `reason`: which silence, whose, until when and why."""
        return f"{self.name} by {self.created_by} until {iso(self.ends_at)}: {self.comment}"


def rules_of(stored: Iterable[Silence]) -> tuple[SilenceRule, ...]:
    """The rules of stored silences (`Silences.not_ended`), matchers compiled, lowest id first.

    Their matchers were checked when the silence was added; a row written past `add` with a
    matcher that does not compile raises InvalidArgument naming the silence."""
    rules = (
        SilenceRule(
            id=s.id,
            matchers=compile_matchers(s.matchers, f"silence {s.id}"),
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            created_by=s.created_by,
            comment=s.comment,
        )
        for s in stored
    )
    return tuple(sorted(rules, key=lambda rule: rule.id))


def silencing(rules: Iterable[SilenceRule], subject: Subject, now: datetime) -> SilenceRule | None:
    """The active rule of lowest id whose matchers match `subject`, if any: the same rule wins
    however the rules are ordered, so the intake and the runner name the same silence."""
    found: SilenceRule | None = None
    for rule in rules:
        if (found is None or rule.id < found.id) and rule.active(now) and rule.matchers.matches(subject):
            found = rule
    return found


def silence(request: RunRequest, history: RunHistory, now: datetime) -> Decision:
    """The silence gate: held while an active silence matches the request's incident."""
    if not history.silences:
        return ALLOW
    rule = silencing(history.silences, request.subject(), now)
    if rule is None:
        return ALLOW
    return Hold(reason=rule.reason(), gate=GATE, silenced_by=rule.name)


# ------------------------------------------------------- what people type


def iso(at: datetime) -> str:
    """A time as the JSON shows it: ISO 8601 in UTC with `Z`, to the second."""
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str, where: str) -> datetime:
    """`--until` / `ends_at`: an ISO 8601 time; one without a zone is UTC, as every time Suture shows."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            f"{where}: expected an ISO 8601 time like 2026-12-01T14:00:00Z, got {value!r}"
        ) from None


def ends_after(start: datetime, duration: str, where: str) -> datetime:
    """`--for 2h` / `for`: the end of a silence that lasts `duration` from `start`."""
    try:
        length = parse_duration(duration)
        if length <= timedelta(0):
            raise InvalidArgument(f"{where}: a silence must last longer than 0s")
        return start + length
    except ValueError as exc:
        raise InvalidArgument(f"{where}: {exc}") from None
    except OverflowError:
        raise InvalidArgument(f"{where}: {duration!r} ends after the last date there is") from None


class SilenceTermError(InvalidArgument):
    """A new silence's term that cannot work; `field` names it (the API's `field`, the form's input)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def silence_terms(
    match: dict[str, str], starts_at: str | None, ends_at: str | None, duration: str | None, now: datetime
) -> tuple[dict[str, str], datetime, datetime]:
    """A new silence's matchers, start and end, from what a person typed (API body or console form):
    the end as either `ends_at` or a duration (`for`); SilenceTermError names the wrong one."""
    try:
        matchers = compile_matchers(match).as_dict()
    except InvalidArgument as exc:
        raise SilenceTermError("match", str(exc)) from None
    try:
        start = parse_time(starts_at, "starts_at") if starts_at is not None else now
    except InvalidArgument as exc:
        raise SilenceTermError("starts_at", str(exc)) from None
    field = "for" if duration is not None else "ends_at"
    try:
        if (ends_at is None) == (duration is None):
            raise InvalidArgument("give the end as either ends_at or for")
        end = (
            ends_after(start, duration, "for")
            if duration is not None
            else parse_time(ends_at or "", "ends_at")
        )
    except InvalidArgument as exc:
        raise SilenceTermError(field, str(exc)) from None
    return matchers, start, end
