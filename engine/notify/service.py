"""The notifier as the composition root builds it from config: channels, routing, wake-ups."""

from __future__ import annotations

from collections.abc import Callable

from engine.clock import Clock
from engine.config import Config
from engine.hooks import Escalated, Hooks, IncidentOpened, IncidentResolved, RunFinished, RunHeld
from engine.models import Code
from engine.notify.channels import build_channel
from engine.notify.compose import Composer
from engine.notify.routing import Router
from engine.notify.sender import Notifier
from engine.store import Store


def build_notifier(
    config: Config, store: Store, code_of: Callable[[str], Code | None], clock: Clock, hooks: Hooks
) -> Notifier:
    """A notifier over every configured channel, woken by the hooks of events that write outbox rows."""
    channels = {entry.name: build_channel(config, entry) for entry in config.notifications}
    composer = Composer(
        store, lambda code: found.knowledge if (found := code_of(code)) else None, config.server.base_url()
    )
    notifier = Notifier(store, channels, Router(config.notifications), composer, clock=clock, hooks=hooks)
    if channels:
        for event in (IncidentOpened, IncidentResolved, RunFinished, RunHeld, Escalated):
            hooks.subscribe(event, notifier.wake)
    return notifier
