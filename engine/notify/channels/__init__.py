"""The channel kinds, and `build_channel`: one configured `notifications:` entry as a `Channel`.

Secrets are read here, through `Config.channel_secret`, once per secret: a channel whose
environment variable is unset is a ConfigError naming the key, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from engine.config import ChannelConfig, Config
from engine.errors import ConfigError
from engine.notify.channels.base import Channel

__all__ = ["KINDS", "Channel", "build_channel"]

#: Reads the secret a channel names under a key (`("smtp", "password_secret")`); None when unnamed.
Secret = Callable[[tuple[str, ...]], SecretStr | None]


def _url(entry: ChannelConfig, secret: Secret) -> str:
    from_secret = secret(("url_secret",))
    url = from_secret.get_secret_value().strip() if from_secret else entry.endpoint
    if not url:
        raise ConfigError(f"notification channel {entry.name}: no URL configured")
    return url


# Each kind's module is imported when a channel of that kind is built: a daemon without an
# email channel never loads smtplib and the email package (a seventh of its start-up).


def _slack(entry: ChannelConfig, secret: Secret) -> Channel:
    from engine.notify.channels.slack import SlackChannel

    return SlackChannel(
        entry.name,
        _url(entry, secret),
        timeout=entry.timeout.total_seconds(),
        url_secret_name=entry.url_secret,
    )


def _webhook(entry: ChannelConfig, secret: Secret) -> Channel:
    from engine.notify.channels.webhook import WebhookChannel

    return WebhookChannel(
        entry.name,
        _url(entry, secret),
        timeout=entry.timeout.total_seconds(),
        signing_secret=secret(("signing_secret",)),
        url_secret_name=entry.url_secret,
    )


def _pagerduty(entry: ChannelConfig, secret: Secret) -> Channel:
    from engine.notify.channels.pagerduty import PagerDutyChannel

    routing_key = secret(("routing_key_secret",))
    if routing_key is None:  # the config's own check makes this unreachable
        raise ConfigError(f"notification channel {entry.name}: a pagerduty channel needs routing_key_secret")
    return PagerDutyChannel(
        entry.name, _url(entry, secret), routing_key, timeout=entry.timeout.total_seconds()
    )


def _email(entry: ChannelConfig, secret: Secret) -> Channel:
    from engine.notify.channels.email import EmailChannel

    if entry.smtp is None or entry.sender is None:  # the config's own check makes this unreachable
        raise ConfigError(f"notification channel {entry.name}: an email channel needs smtp, from and to")
    return EmailChannel(
        entry.name, entry.smtp, entry.sender, entry.to, password=secret(("smtp", "password_secret"))
    )


#: Every kind `notifications[].kind` may name, and how one is built.
KINDS: dict[str, Callable[[ChannelConfig, Secret], Channel]] = {
    "slack": _slack,
    "webhook": _webhook,
    "pagerduty": _pagerduty,
    "email": _email,
}


def build_channel(config: Config, entry: ChannelConfig) -> Channel:
    """The channel `entry` describes, its secrets read from the environment through `config`."""
    named = dict(entry.secret_names())

    def secret(key: tuple[str, ...]) -> SecretStr | None:
        name = named.get(key)
        return None if name is None else config.channel_secret(entry.name, key, name)

    return KINDS[entry.kind](entry, secret)
