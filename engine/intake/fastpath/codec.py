"""The wire between the daemon and its intake helpers: length-prefixed marshal frames.

A classified submission travels as a tuple of plain values (marshal is several times faster
than pickle for them); the helper rebuilds the same objects with `Unwire`."""

from __future__ import annotations

import marshal
import pickle
import struct
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.alertfields import getter, maker
from engine.hooks import Hooks, IncidentOpened, IncidentResolved, RunHeld, RunQueued
from engine.intake.answers import Outcome
from engine.logging import get_logger
from engine.models import ALERT_FIELDS, ClassifiedAlert, Deadlines, Mode, Policy, Severity, Submission

log = get_logger("suture.intake")


FRAME = struct.Struct("!I")


def frame(data: bytes) -> bytes:
    return FRAME.pack(len(data)) + data


def frame_values(message: Any) -> bytes:
    """A frame of plain values (str, int, dict, tuple, None) in `marshal`'s format: submissions
    and answers, thousands per second under a storm. Both ends are the same interpreter, so
    its version-specific format is no concern; it writes these values in half pickle's time."""
    return frame(marshal.dumps(message))


def frame_object(message: Any) -> bytes:
    """A frame of anything picklable: the config, once per helper."""
    return frame(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_MICROSECOND = timedelta(microseconds=1)


def _micros(value: timedelta | None) -> int | None:
    return None if value is None else value // _MICROSECOND


def _time(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


#: A catalog's policies are few shared objects: each is written as JSON once (the object is kept
#: with its text so its id cannot be reused while the entry lives).
_POLICY_JSON: dict[int, tuple[Policy, str]] = {}


def _policy_json(policy: Policy) -> str:
    known = _POLICY_JSON.get(id(policy))
    if known is not None and known[0] is policy:
        return known[1]
    if len(_POLICY_JSON) >= 4096:
        _POLICY_JSON.clear()
    text = policy.model_dump_json(exclude_defaults=True)
    _POLICY_JSON[id(policy)] = (policy, text)
    return text


#: An alert on the wire: its fields' values in ALERT_FIELDS order, times as microseconds.
_alert_values = getter(ALERT_FIELDS, times=True)
_alert_of = maker(ALERT_FIELDS)


def wire(submission: Submission) -> tuple[Any, ...]:
    """A submission as plain values: times as microseconds since the epoch (exact), enums as
    their values, the deadlines as their numbers, the policy as its JSON (every gate's settings,
    whichever the catalog gains)."""
    items = []
    for item in submission.alerts:
        alert, policy, deadlines = item.alert, item.policy, item.deadlines
        items.append(
            (
                _alert_values(alert, _time),
                item.code,
                item.title,
                item.severity.value,
                item.target,
                item.mode.value,
                item.playbook,
                item.dry_run,
                None if policy is None else _policy_json(policy),
                None
                if deadlines is None
                else (_micros(deadlines.respond_within), _micros(deadlines.resolve_within)),
                item.shadow,
            )
        )
    return submission.source, submission.body, items


class Unwire:
    """`wire` undone, in the helper. The alerts were validated by the daemon, so they are built
    without validating again; the few distinct times and policies of a storm are remembered."""

    def __init__(self) -> None:
        self._times: dict[int, datetime] = {}
        self._policies: dict[str, Policy] = {}
        self._deadlines: dict[tuple[int | None, int | None], Deadlines] = {}

    def __call__(self, wired: tuple[Any, ...]) -> Submission:
        source, body, items = wired
        time_of, make = self._time, _alert_of
        alerts = []
        for (
            alert_values,
            code,
            title,
            severity,
            target,
            mode,
            playbook,
            dry_run,
            policy,
            deadlines,
            shadow,
        ) in items:
            alert = make(alert_values, time_of)
            alerts.append(
                ClassifiedAlert(
                    alert,
                    code,
                    title,
                    _SEVERITY[severity],
                    target,
                    _MODE[mode],
                    playbook,  # marshal gives tuples back as tuples
                    dry_run,
                    None if policy is None else self._policy(policy),
                    None if deadlines is None else self._deadline(deadlines),
                    shadow,
                )
            )
        return Submission(source, body, alerts)

    def _time(self, micros: int | None) -> datetime | None:
        if micros is None:
            return None
        value = self._times.get(micros)
        if value is None:
            if len(self._times) >= 4096:
                self._times.clear()
            value = self._times[micros] = _EPOCH + micros * _MICROSECOND
        return value

    def _policy(self, text: str) -> Policy:
        policy = self._policies.get(text)
        if policy is None:
            if len(self._policies) >= 4096:
                self._policies.clear()
            policy = self._policies[text] = Policy.model_validate_json(text)
        return policy

    def _deadline(self, numbers: tuple[int | None, int | None]) -> Deadlines:
        deadlines = self._deadlines.get(numbers)
        if deadlines is None:
            deadlines = self._deadlines[numbers] = Deadlines(_span(numbers[0]), _span(numbers[1]))
        return deadlines


def _span(micros: int | None) -> timedelta | None:
    return None if micros is None else micros * _MICROSECOND


_SEVERITY = {severity.value: severity for severity in Severity}


_MODE = {mode.value: mode for mode in Mode}


#: What the daemon sends in place of a submission to withdraw request N: `(N, WITHDRAW)`.
WITHDRAW = None


def outcome_values(request: int, outcome: Outcome) -> tuple[Any, ...]:
    """A helper's answer as plain values, in `Outcome`'s field order."""
    return request, outcome.status, outcome.content, outcome.reason, outcome.opened, outcome.runs_queued


#: The hook events an intake helper's commits cause, relayed to the daemon's hooks (metrics, the
#: notifier's wake-up, verdicts): the helper has no subscribers of its own.
RELAYED: dict[str, type] = {
    event.__name__: event for event in (IncidentOpened, IncidentResolved, RunQueued, RunHeld)
}
#: The first value of a helper's message that carries hook events instead of an answer.
HOOKS = "hooks"


class HookRecorder(Hooks):
    """The helper's hooks: every relayed event is kept, to be sent with the commit's answers."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[Any, ...]] = []

    def wants(self, event_type: type) -> bool:
        return event_type.__name__ in RELAYED

    def emit(self, event: object) -> None:
        if type(event).__name__ in RELAYED:
            self.kept.append((type(event).__name__, *astuple(event)))  # type: ignore[call-overload]

    def take(self) -> tuple[Any, ...] | None:
        """The message that relays what was kept since the last one, or None if nothing was."""
        if not self.kept:
            return None
        message, self.kept = (HOOKS, tuple(self.kept)), []
        return message


def relayed_events(message: tuple[Any, ...]) -> list[object]:
    """The events of a `HookRecorder.take` message, rebuilt on the daemon's side."""
    return [RELAYED[name](*values) for name, *values in message[1] if name in RELAYED]
