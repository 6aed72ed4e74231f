"""engine.analytics.past: how an earlier incident ended, in the words `incidents show` prints, and
the incident record that carries its code's knowledge and those earlier incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from engine.analytics.past import ended, spoken, teach, ttr_seconds
from engine.models import Knowledge
from engine.records import INCIDENT_EXAMPLE, IncidentDetail, Record

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Past:
    id: int = 1
    opened_at: datetime = T0
    resolved_at: datetime | None = None
    resolution: str | None = None
    fixed_by: str | None = None
    resolved_by: str | None = None


@pytest.mark.parametrize(
    ("span", "said"),
    [
        (timedelta(seconds=0), "0 s"),
        (timedelta(seconds=59), "59 s"),
        (timedelta(minutes=4, seconds=10), "4 min"),
        (timedelta(minutes=59, seconds=40), "1 h"),
        (timedelta(hours=2), "2 h"),
        (timedelta(hours=2, minutes=10), "2 h 10 min"),
        (timedelta(days=3), "3 d"),
        (timedelta(days=3, hours=4, minutes=20), "3 d 4 h"),
        (timedelta(seconds=-5), "0 s"),  # a source's clock ahead of ours never reads negative
    ],
)
def test_durations_read_as_people_say_them(span: timedelta, said: str) -> None:
    assert spoken(span) == said


@pytest.mark.parametrize(
    ("past", "line"),
    [
        (Past(), "still open"),
        (
            Past(
                resolved_at=T0 + timedelta(minutes=4), resolution="alert_resolved", fixed_by="disk-cleanup@3"
            ),
            "resolved by disk-cleanup@3 in 4 min",
        ),
        (
            Past(resolved_at=T0 + timedelta(hours=2), resolution="manual", resolved_by="bob", fixed_by="x@1"),
            "resolved by hand by bob after 2 h",
        ),
        (
            Past(resolved_at=T0 + timedelta(hours=2), resolution="manual"),
            "resolved by hand by someone after 2 h",
        ),
        (
            Past(resolved_at=T0 + timedelta(minutes=12), resolution="alert_resolved"),
            "resolved at the source after 12 min, no run fixed it",
        ),
        (Past(resolved_at=T0 + timedelta(minutes=1), resolution="poll_gone"), "poll gone after 1 min"),
    ],
)
def test_how_an_incident_ended_in_one_line(past: Past, line: str) -> None:
    """A person's close wins over a run that succeeded before it; no run: the source resolved it."""
    assert ended(past) == line


def test_time_to_resolve_is_none_while_open() -> None:
    assert ttr_seconds(Past()) is None
    assert ttr_seconds(Past(resolved_at=T0 + timedelta(minutes=4))) == 240.0


def _detail() -> IncidentDetail:
    return IncidentDetail.model_validate(
        {
            **INCIDENT_EXAMPLE,
            "opened_at": T0,
            "last_seen": T0,
            "labels": {},
            "annotations": {},
            "alerts": [],
            "runs": [],
            "notes": [],
            "timeline": [],
        }
    )


def test_the_taught_incident_carries_knowledge_and_previous_after_its_other_fields() -> None:
    """JSON keeps every existing key in order, then `knowledge` and `previous`, as the API declares."""
    knowledge = Knowledge(summary="Disk filling up", manual_steps=["clean /var/log"], owner="infra")
    earlier = [
        Past(id=31, resolved_at=T0 + timedelta(minutes=4), resolution="alert_resolved", fixed_by="d@3")
    ]
    taught = teach(_detail(), knowledge, earlier)
    assert taught.field_names()[-2:] == ("knowledge", "previous")
    answered = orjson.loads(taught.model_dump_json())
    assert list(answered) == list(IncidentDetail.field_names())
    assert answered["knowledge"] == {
        "summary": "Disk filling up",
        "diagnosis": [],
        "manual_steps": ["clean /var/log"],
        "owner": "infra",
        "links": [],
    }
    assert answered["previous"] == [
        {
            "id": 31,
            "opened_at": "2026-12-01T03:00:00Z",
            "resolved_at": "2026-12-01T03:04:00Z",
            "resolution": "alert_resolved",
            "ended": "resolved by d@3 in 4 min",
        }
    ]
    assert taught == IncidentDetail.model_validate(answered)  # what trusted() built is a valid record


def test_an_unknown_code_teaches_nothing() -> None:
    taught = teach(_detail(), None, [])
    assert taught.knowledge is None and taught.previous == []
    assert isinstance(taught, Record)
