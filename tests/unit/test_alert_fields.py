"""The alert's fields are declared once, by the model: the generated constructor, the wire to the
intake helpers, the alerts table's columns and the replay's reads follow its order and kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.alertfields import KINDS, getter, maker
from engine.models import ALERT_FIELDS, Alert, AlertStatus
from engine.store.tables import ALERT_COLUMNS, alerts

STARTS = datetime(2026, 11, 23, 10, 0, 0, 123457, tzinfo=UTC)
FULL = Alert(
    source="alertmanager",
    name="DiskFull",
    fingerprint="0af3c1d2e4b5a697",
    status=AlertStatus.resolved,
    labels={"alertname": "DiskFull", "instance": "db-1:9100"},
    annotations={"summary": "disk / at 97 %"},
    starts_at=STARTS,
    ends_at=datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
    generator_url="http://prometheus:9090/graph",
)


def test_the_fields_are_the_models_in_its_order_with_their_kinds() -> None:
    assert ALERT_FIELDS == tuple(Alert.model_fields)
    assert KINDS == {
        "source": "plain",
        "name": "plain",
        "fingerprint": "plain",
        "status": "status",
        "labels": "map",
        "annotations": "map",
        "starts_at": "time",
        "ends_at": "time",
        "generator_url": "plain",
    }


def test_the_generated_constructor_builds_what_validation_builds_by_position_or_name() -> None:
    values = [getattr(FULL, name) for name in ALERT_FIELDS]
    assert Alert.trusted(*values) == FULL
    assert Alert.trusted(**dict(zip(ALERT_FIELDS, values, strict=True))) == FULL
    with pytest.raises(TypeError):
        Alert.trusted(*values[:-1])


def test_the_alerts_table_stores_every_field_but_the_generator_url_in_the_models_order() -> None:
    assert ALERT_COLUMNS == tuple(name for name in ALERT_FIELDS if name != "generator_url")
    assert set(ALERT_COLUMNS) <= set(alerts.c.keys())


def test_values_taken_and_made_back_give_the_same_alert_without_what_was_not_carried() -> None:
    micros = {STARTS: 1, FULL.ends_at: 2}
    wired = getter(ALERT_FIELDS, times=True)(FULL, micros.get)
    assert wired[3] == "resolved" and wired[6:8] == (1, 2)
    back = {1: STARTS, 2: FULL.ends_at, None: None}
    assert maker(ALERT_FIELDS)(wired, back.get) == FULL

    stored = getter(ALERT_COLUMNS)(FULL)
    assert getter(ALERT_COLUMNS, as_row=True)(FULL) == dict(zip(ALERT_COLUMNS, stored, strict=True))
    as_text = tuple(orjson.dumps(v).decode() if isinstance(v, dict) else v for v in stored)
    again = maker(ALERT_COLUMNS, load_map=orjson.loads)(as_text, lambda value: value)
    assert again == FULL.model_copy(update={"generator_url": None})


def test_a_name_that_is_not_a_field_is_refused_when_the_code_is_made() -> None:
    with pytest.raises(ValueError, match="not fields of Alert"):
        getter(["source", "severity"])
