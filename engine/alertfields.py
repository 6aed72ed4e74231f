"""The alert's fields as `Alert` declares them, and the per-alert code generated from them.

The wire to the intake helpers (engine.intake.fastpath.codec), the alerts table's rows
(engine.store.ingest) and the replay's reads of them (engine.store.arrivals) each take the
fields they carry from ALERT_FIELDS and the conversion each needs from its kind, so a field added
to the model reaches all of them, and none can list the fields in another order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, get_origin

from engine.codegen import admitted, compiled, identifiers
from engine.models import ALERT_FIELDS, Alert, AlertStatus

Kind = Literal["time", "status", "map", "plain"]


def _kind(annotation: Any) -> Kind:
    types = admitted(annotation)
    if datetime in types:
        return "time"
    if AlertStatus in types:
        return "status"
    if any(get_origin(one) is dict for one in types):
        return "map"
    return "plain"


#: Each field's kind: a `time` is carried as its encoding (the wire: microseconds since the epoch),
#: a `status` as its text value, a `map` (labels) as it is or as JSON text, a `plain` text as it is.
KINDS: dict[str, Kind] = {name: _kind(Alert.model_fields[name].annotation) for name in ALERT_FIELDS}

_STATUS = {status.value: status for status in AlertStatus}


def getter(names: Sequence[str], *, times: bool = False, as_row: bool = False) -> Callable[..., Any]:
    """`f(alert)` (or `f(alert, encode)` with `times`): the values of `names` as a tuple (or, with
    `as_row`, a new dict by name), statuses as their text and, with `times`, times through `encode`."""
    known = _known(names)
    parts = []
    for name in known:
        if KINDS[name] == "status":
            parts.append(f"alert.{name}.value")
        elif KINDS[name] == "time" and times:
            parts.append(f"encode(alert.{name})")
        else:
            parts.append(f"alert.{name}")
    params = "alert, encode" if times else "alert"
    if as_row:
        body = "{" + ", ".join(f"{name!r}: {part}" for name, part in zip(known, parts, strict=True)) + "}"
    else:
        body = f"({', '.join(parts)},)"
    return compiled("get", f"def get({params}):\n    return {body}\n", {})


def maker(
    names: Sequence[str], *, load_map: Callable[[Any], Any] | None = None
) -> Callable[[Sequence[Any], Callable[[Any], datetime | None]], Alert]:
    """`f(values, decode)`: the Alert of the values of `names` (a status as its text, times through
    `decode`, maps through `load_map` if given); the fields not among `names` are None."""
    carried = _known(names)
    arguments = []
    for name in ALERT_FIELDS:
        if name not in carried:
            arguments.append("None")
        elif KINDS[name] == "status":
            arguments.append(f"status_of[{name}]")
        elif KINDS[name] == "time":
            arguments.append(f"decode({name})")
        elif KINDS[name] == "map" and load_map is not None:
            arguments.append(f"load_map({name})")
        else:
            arguments.append(name)
    source = (
        "def make(values, decode):\n"
        f"    ({', '.join(carried)},) = values\n"
        f"    return trusted({', '.join(arguments)})\n"
    )
    return compiled("make", source, {"trusted": Alert.trusted, "status_of": _STATUS, "load_map": load_map})


def _known(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise ValueError(f"not fields of Alert: {unknown}")
    return identifiers(names)
