"""A test message through one channel, sent at once (not through the outbox): `suture notify test`."""

from __future__ import annotations

from engine.clock import SYSTEM_CLOCK, Clock
from engine.config import ChannelConfig, Config
from engine.notify.channels import build_channel
from engine.notify.notice import TEST_EVENT, Notice


def sample_notice(config: Config, clock: Clock = SYSTEM_CLOCK) -> Notice:
    now = clock.now()
    return Notice(
        event=TEST_EVENT,
        incident={
            "id": None,
            "code": "TEST",
            "title": "Test message from Suture",
            "status": "open",
            "severity": "low",
            "target": "",
            "source": "suture",
            "opened_at": now.isoformat().replace("+00:00", "Z"),
        },
        run=None,
        reason="sent by `suture notify test` to check this channel",
        automation="none: this is a test",
        first_step="nothing to do: this message only checks that the channel works",
        owner="",
        link=config.server.base_url(),
        sent_at=now,
    )


def send_test(config: Config, entry: ChannelConfig, clock: Clock = SYSTEM_CLOCK) -> str:
    """What the channel answered; its TemporaryFailure or PermanentFailure if it did not take it."""
    return build_channel(config, entry).send(sample_notice(config, clock))
