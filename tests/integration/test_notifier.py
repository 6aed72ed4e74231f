"""The notifier end to end in this process: outbox rows committed by intake, expanded per channel,
sent through real webhook channels to a real HTTP server on 127.0.0.1, retried with backoff when
the channel fails, in order per channel, and never held up by another channel.

Turns are driven by `notifier.run_once(wait=True)`; with the system clock the test polls it with
`wait_for` until the server has what it expects, with a `ManualClock` each retry happens exactly
when its backoff has passed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from engine.catalog.loader import load_catalog
from engine.clock import SYSTEM_CLOCK, Clock, ManualClock
from engine.config import Config, load_config
from engine.hooks import Hooks, NotificationAttempted
from engine.intake.classify import CatalogView, Intake
from engine.models import Alert, AlertStatus, Knowledge
from engine.notify.channels import build_channel
from engine.notify.compose import Composer
from engine.notify.routing import Router
from engine.notify.sender import Notifier
from engine.records import Notification
from engine.store import Store
from engine.store.db import Database
from tests.conftest import TEST_CATALOG, free_port, wait_for
from tests.support.httpserver import RecordedRequest, TestHttpServer, respond, slow

VIEW = CatalogView.of(load_catalog(TEST_CATALOG / "codes", TEST_CATALOG / "playbooks"))
FIRST_RETRY = timedelta(milliseconds=50)
BASE_URL = "https://suture.example.org"


def knowledge(code: str) -> Knowledge | None:
    found = VIEW.catalog.find_code(code)
    return found.knowledge if found is not None else None


@dataclass
class Site:
    config: Config
    store: Store
    attempts: list[NotificationAttempted]

    def notifier(self, clock: Clock = SYSTEM_CLOCK, **options: Any) -> Notifier:
        """A notifier as the daemon builds it (engine/notify/service.py), over these channels."""
        hooks = Hooks()
        hooks.subscribe(NotificationAttempted, self.attempts.append)
        channels = {entry.name: build_channel(self.config, entry) for entry in self.config.notifications}
        return Notifier(
            self.store,
            channels,
            Router(self.config.notifications),
            Composer(self.store, knowledge, BASE_URL),
            clock=clock,
            hooks=hooks,
            first_retry=FIRST_RETRY,
            max_retry=timedelta(seconds=1),
            **options,
        )

    def open_incidents(self, count: int) -> list[int]:
        """`count` DISK-001 incidents opened in one intake commit, in id order."""
        intake = Intake(self.store, VIEW)
        alerts = [
            Alert.model_validate(
                {
                    "source": "alertmanager",
                    "name": "NodeFilesystemAlmostOutOfSpace",
                    "fingerprint": uuid.uuid4().hex[:16],
                    "status": AlertStatus.firing,
                    "labels": {
                        "alertname": "NodeFilesystemAlmostOutOfSpace",
                        "instance": f"db-{n}:9100",
                        "mountpoint": "/",
                    },
                    "starts_at": datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
                }
            )
            for n in range(1, count + 1)
        ]
        [receipt] = intake.commit([intake.prepare("alertmanager", "{}", alerts)])
        opened: list[int] = receipt.opened  # type: ignore[union-attr]
        assert len(opened) == count
        return opened

    def deliveries(self, channel: str) -> list[Notification]:
        return sorted((d for d in self.store.outbox.list() if d.channel == channel), key=lambda d: d.id)


def make_site(tmp_path: Path, db: Database, channels: dict[str, str], timeout: str = "2s") -> Site:
    """A real config.yaml with one webhook channel per (name, url) hearing of every event."""
    document = {
        "notifications": [
            {"name": name, "kind": "webhook", "url": url, "events": ["all"], "timeout": timeout}
            for name, url in channels.items()
        ]
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(path)
    return Site(config, Store(db, notify=config.heard_events()), [])


def posted(server: TestHttpServer, path: str) -> list[RecordedRequest]:
    return [request for request in server.requests if request.path == path]


def incident_ids(requests: list[RecordedRequest]) -> list[int]:
    return [request.json()["incident"]["id"] for request in requests]


def closed_url(path: str = "/hook") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


# ----------------------------------------------------------------- retries


def test_a_failing_channel_gets_every_message_once_and_in_order(
    tmp_path: Path, db: Database, http_server: TestHttpServer
) -> None:
    """The first of three messages fails twice (503); the channel then gets all three, in id order,
    each exactly once, and every attempt is on the timeline and in the hooks."""
    site = make_site(tmp_path, db, {"hook": http_server.url_for("/hook")})
    http_server.script("/hook", [respond(503), respond(503)])
    first, second, third = site.open_incidents(3)
    notifier = site.notifier()

    def delivered() -> bool:
        notifier.run_once(wait=True)
        return [d.status for d in site.deliveries("hook")] == ["sent", "sent", "sent"]

    wait_for(delivered, timeout=10)

    requests = posted(http_server, "/hook")
    assert incident_ids(requests) == [first, first, first, second, third]
    assert {request.json()["event"] for request in requests} == {"incident_opened"}
    assert [(d.incident_id, d.attempts, d.error) for d in site.deliveries("hook")] == [
        (first, 3, None),
        (second, 1, None),
        (third, 1, None),
    ]
    timeline = [e for e in site.store.get_incident(first).timeline if e.kind.startswith("notifi")]
    assert [e.kind for e in timeline] == ["notification_failed", "notification_failed", "notified"]
    assert "(attempt 1)" in timeline[0].message and "HTTP 503" in timeline[0].message
    assert timeline[2].message == 'incident_opened sent to hook: HTTP 200: {"ok": true}'
    assert [(a.channel, a.outcome) for a in site.attempts] == [
        ("hook", o) for o in ("retry", "retry", "sent", "sent", "sent")
    ]

    notifier.run_once(wait=True)  # nothing left: a later turn sends nothing again
    assert len(posted(http_server, "/hook")) == 5


def test_retries_wait_for_their_backoff_which_doubles(
    tmp_path: Path, db: Database, http_server: TestHttpServer
) -> None:
    """With a clock that moves only when told to: the retry comes exactly 50 ms, then 100 ms later,
    and the message behind it waits until the first one is through."""
    site = make_site(tmp_path, db, {"hook": http_server.url_for("/hook")})
    http_server.script("/hook", [respond(503), respond(502)])
    first, second = site.open_incidents(2)
    clock = ManualClock(datetime.now(UTC))
    notifier = site.notifier(clock)

    def turn(after: timedelta = timedelta(0)) -> list[int]:
        clock.advance(after)
        notifier.run_once(wait=True)
        return incident_ids(posted(http_server, "/hook"))

    assert turn() == [first]
    assert turn() == [first]
    assert turn(timedelta(milliseconds=49)) == [first]
    assert turn(timedelta(milliseconds=1)) == [first, first]
    [head, behind] = site.deliveries("hook")
    assert head.next_attempt_at == clock.now() + timedelta(milliseconds=100)
    assert (behind.status, behind.attempts) == ("pending", 0)
    assert turn(timedelta(milliseconds=99)) == [first, first]
    assert turn(timedelta(milliseconds=1))[:3] == [first, first, first]
    assert turn() == [first, first, first, second]  # the same turn, once the bug below is fixed
    assert [(d.status, d.attempts) for d in site.deliveries("hook")] == [("sent", 3), ("sent", 1)]


def test_one_turn_sends_every_message_a_channel_has_due(
    tmp_path: Path, db: Database, http_server: TestHttpServer
) -> None:
    site = make_site(tmp_path, db, {"hook": http_server.url_for("/hook")})
    opened = site.open_incidents(3)
    notifier = site.notifier(ManualClock(datetime.now(UTC)))

    notifier.run_once(wait=True)

    assert incident_ids(posted(http_server, "/hook")) == opened


def test_a_new_notifier_after_a_stop_mid_retry_neither_loses_nor_doubles(
    tmp_path: Path, db: Database, http_server: TestHttpServer
) -> None:
    """What a restart does: the first notifier failed once and is gone; the next one, over the same
    database, delivers each message exactly once and expands nothing twice."""
    site = make_site(tmp_path, db, {"hook": http_server.url_for("/hook")})
    http_server.script("/hook", [respond(503)])
    first, second = site.open_incidents(2)
    clock = ManualClock(datetime.now(UTC))
    before = site.notifier(clock)
    before.run_once(wait=True)
    before.stop()
    assert incident_ids(posted(http_server, "/hook")) == [first]

    clock.advance(FIRST_RETRY)
    after = site.notifier(clock)
    after.run_once(wait=True)
    after.run_once(wait=True)

    assert incident_ids(posted(http_server, "/hook")) == [first, first, second]
    assert [(d.incident_id, d.status) for d in site.deliveries("hook")] == [(first, "sent"), (second, "sent")]
    after.stop()


# -------------------------------------------------- channels apart from each other


def test_a_dead_channel_does_not_delay_another(
    tmp_path: Path, db: Database, http_server: TestHttpServer
) -> None:
    """One channel refuses connections, one hangs until its timeout: the working one gets all of
    its messages while the hanging attempt is still waiting, and the dead one keeps them pending."""
    site = make_site(
        tmp_path,
        db,
        {"dead": closed_url(), "hanging": http_server.url_for("/slow"), "live": http_server.url_for("/live")},
        timeout="3s",
    )
    http_server.script("/slow", [slow(30)])
    opened = site.open_incidents(3)
    notifier = site.notifier()

    def live_delivered() -> bool:
        notifier.run_once()  # not waiting: the hanging attempt must not hold up this turn either
        return [d.status for d in site.deliveries("live")] == ["sent", "sent", "sent"]

    try:
        wait_for(live_delivered, timeout=5)
        assert incident_ids(posted(http_server, "/live")) == opened
        assert [d.status for d in site.deliveries("hanging")] == ["sending", "pending", "pending"]

        def settled(channel: str) -> list[Notification]:
            """The channel's deliveries once its last attempt is recorded (none is `sending`)."""
            found = site.deliveries(channel)
            return found if found[0].error and "sending" not in {d.status for d in found} else []

        dead = wait_for(lambda: settled("dead"), timeout=5)
        assert [d.status for d in dead] == ["pending", "pending", "pending"]
        assert dead[0].error is not None and "cannot connect" in dead[0].error
        assert dead[0].attempts >= 1
        assert [d.attempts for d in dead[1:]] == [0, 0]  # in order: the rest wait behind the first
        # The hanging attempt ends at the channel's timeout, as a failure to retry.
        [hung, *waiting] = wait_for(lambda: settled("hanging"), timeout=10)
        assert (hung.status, hung.attempts) == ("pending", 1)
        assert hung.error is not None and "timed out after 3s" in hung.error
        assert [(d.status, d.attempts) for d in waiting] == [("pending", 0), ("pending", 0)]
    finally:
        notifier.stop()
