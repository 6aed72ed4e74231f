"""What every inbound connector shares: the protocol, body validation, times, fingerprints.

A connector is a pure function from an already JSON-decoded body to alerts. It never
touches the database, and for any input whatsoever it either returns alerts or raises
`InvalidPayload(field, message)`, where `field` is the dotted path of the first bad
field (`alerts.0.status`) and `message` says what was expected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from engine.config import SourceConfig
from engine.errors import InvalidPayload
from engine.models import Alert, AlertStatus

#: The root of the body, for errors that are not about one field.
BODY = "body"

UNNAMED = "unnamed"

TIME_EXAMPLE = "2026-11-23T10:15:02Z"
_TIME_EXPECTED = f"must be an RFC 3339 time string such as {TIME_EXAMPLE}"
NOT_UNICODE = "must be valid Unicode text (no lone surrogates)"


class Connector(Protocol):
    """Turns one vendor body into alerts; registered by `source` in `connectors.CONNECTORS`."""

    source: ClassVar[str]
    #: The vendor body as a pydantic model: used to validate and for the OpenAPI docs.
    body_model: ClassVar[type[BaseModel]]

    def parse(self, payload: Any, settings: SourceConfig, received_at: datetime) -> list[Alert]: ...


class VendorModel(BaseModel):
    """Vendors add fields over time: unknown keys are kept and ignored, never an error."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ field types


def encodable(text: str) -> bool:
    """False for text holding a lone surrogate (legal in JSON as an escape): it cannot be stored."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unicode(value: str) -> str:
    if not encodable(value):
        raise ValueError(NOT_UNICODE)
    return value


#: A string that can be stored and sent on: no lone surrogates.
Text = Annotated[str, AfterValidator(_unicode)]


def _null_is_empty(value: Any) -> Any:
    # Go marshals a nil map as null; it means "no labels", not a malformed body.
    return {} if value is None else value


#: Labels or annotations as vendors written in Go send them: strings only; null is empty.
StrMap = Annotated[dict[Text, Text], BeforeValidator(_null_is_empty)]


def _scalars_to_str(value: Any) -> Any:
    value = _null_is_empty(value)
    if not isinstance(value, dict):
        return value
    return {key: _scalar_text(item) for key, item in value.items()}


def _scalar_text(item: Any) -> Any:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float)):
        return str(item)
    return item  # anything else is left for the str check to reject


#: Labels or annotations from hand-written senders: numbers and booleans become strings
#: (`true`/`false`, `str()` of the number); null values, lists and objects stay invalid.
LooseStrMap = Annotated[dict[Text, Text], BeforeValidator(_scalars_to_str)]


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{_TIME_EXPECTED}, got {json_type(value)}")
    try:
        return parse_time(value, UTC)
    except ValueError:
        raise ValueError(f"{_TIME_EXPECTED}, got {value[:64]!r}") from None


#: An RFC 3339 time as a timezone-aware UTC datetime; empty, null or Go's zero time is None.
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]

# ------------------------------------------------------------------------ times


def parse_time(value: str, default_zone: tzinfo) -> datetime | None:
    """ISO 8601 / RFC 3339 text to an aware UTC datetime; raises ValueError if unreadable.

    Empty text and any time in year 1 (Go's zero time `0001-01-01T00:00:00Z`, which
    Alertmanager and Grafana send as endsAt of a firing alert) mean "no time": None.
    A time without an offset is read in `default_zone`.
    """
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ValueError(f"not an ISO 8601 time: {value[:64]!r}") from None
    if parsed.year <= 1:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_zone)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"time out of range: {value[:64]!r}") from None


def as_utc(moment: datetime) -> datetime:
    """`received_at` as aware UTC; a naive value is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ------------------------------------------------------------------ fingerprints


def label_fingerprint(labels: Mapping[str, str], *prefix: str) -> str:
    """Stable id of a label set: sha256 over the canonical JSON of [*prefix, sorted labels], 16 hex.

    Only used when the sender gives no fingerprint; the same labels always give the same
    value, whatever their order, on every machine and Python version.
    """
    canonical = json.dumps(
        [*prefix, sorted(labels.items())], ensure_ascii=False, separators=(",", ":"), sort_keys=False
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# -------------------------------------------------------------------- validation

M = TypeVar("M", bound=BaseModel)


def validate_body(model: type[M], payload: Any) -> M:
    """Validate `payload` against `model`; the first problem becomes InvalidPayload."""
    if not isinstance(payload, dict):
        raise InvalidPayload(BODY, f"must be a JSON object, got {json_type(payload)}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise InvalidPayload(dotted(first["loc"]), describe(first)) from None


def dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or BODY


def describe(error: ErrorDetails) -> str:
    """A pydantic error as "what was expected", in the words of the HTTP API."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected')}"
    if kind == "too_short":
        if error["loc"] and error["loc"][-1] == "alerts":
            return "at least one alert is required"
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    simple = {
        "string_type": "must be a string",
        "string_unicode": "must be valid Unicode text",
        "dict_type": "must be an object",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
        "list_type": "must be a list",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
    }
    if kind in simple:
        return simple[kind]
    message = error["msg"]
    return message[:1].lower() + message[1:]


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---------------------------------------------------------------- alert helpers


def blank_to_none(value: str | None) -> str | None:
    return value if value else None


def vendor_alert(
    source: str,
    *,
    status: AlertStatus,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: datetime | None,
    ends_at: datetime | None,
    generator_url: str | None,
    fingerprint: str | None,
) -> Alert:
    """An Alertmanager-shaped alert (Alertmanager, Grafana): the name is the alertname label.

    A non-empty vendor fingerprint is used verbatim (it is opaque: Grafana computes it
    before stripping hidden labels); only when absent is one computed from the labels.
    Every field was validated by the vendor body model already: construct without re-checking.
    """
    return Alert.trusted(
        source=source,
        name=labels.get("alertname") or UNNAMED,
        fingerprint=fingerprint or label_fingerprint(labels),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=blank_to_none(generator_url),
    )
