"""The frozen config: secrets read from the environment once, never shown, and the receiver's clock."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pydantic import ValidationError
from starlette.datastructures import Headers

from connectors import get_connector
from connectors.signatures import sign_hmac_sha256
from engine.clock import ManualClock
from engine.config import Config, SourceConfig, load_config
from engine.errors import ConfigError
from engine.intake.answers import Answer
from engine.intake.receive import WebhookReceiver
from engine.models import Alert, Submission
from engine.records import Receipt

WEBHOOK_TOKEN = "webhook-token-5f0c1d"
SIGNING_KEY = "signing-key-a9e4b2"
API_TOKEN = "zabbix-api-token-77c1"
PULL_TOKEN = "pull-token-e3d90a"
TEMPLATE_SECRET = "template-secret-4b8f"
ACCESS_TOKEN = "access-token-0123456789abcdef"
ALL_VALUES = (WEBHOOK_TOKEN, SIGNING_KEY, API_TOKEN, PULL_TOKEN, TEMPLATE_SECRET, ACCESS_TOKEN)

ENVIRONMENT = {
    "T_WEBHOOK": WEBHOOK_TOKEN,
    "T_SIGNING": SIGNING_KEY,
    "T_ZABBIX_API": API_TOKEN,
    "T_PULL": PULL_TOKEN,
    "T_TEMPLATE": TEMPLATE_SECRET,
    "T_ACCESS": ACCESS_TOKEN,
}


def _config(tmp_path: Path, **sections: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": "sqlite:///x.db"}, **sections}))
    return path


def _every_secret(tmp_path: Path) -> Path:
    return _config(
        tmp_path,
        sources={
            "generic": {"token_env": "T_WEBHOOK", "signature_secret_env": "T_SIGNING"},
            "zabbix": {"url": "http://127.0.0.1:1/api_jsonrpc.php", "api_token_env": "T_ZABBIX_API"},
        },
        pull=[{"name": "am", "kind": "alertmanager", "url": "http://127.0.0.1:1", "token_env": "T_PULL"}],
        secrets={"HOOK": {"env": "T_TEMPLATE"}},
        access={"tokens": [{"name": "chatops", "token_env": "T_ACCESS", "role": "operate"}]},
    )


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_secrets_are_read_once_and_later_changes_change_nothing(
    tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    """After `resolve_secrets()` (what serve does) each secret keeps its value, whatever the env does next."""
    config = load_config(_every_secret(tmp_path))
    config.resolve_secrets()
    for name in ENVIRONMENT:
        environment.setenv(name, "changed-afterwards-0123456789")
    generic = config.source_secrets("generic")
    assert generic.token is not None and generic.token.get_secret_value() == WEBHOOK_TOKEN
    assert generic.signature_secret is not None and generic.signature_secret.get_secret_value() == SIGNING_KEY
    api_token = config.source_secrets("zabbix").api_token
    assert api_token is not None and api_token.get_secret_value() == API_TOKEN
    pull_token = config.pull_token("am")
    assert pull_token is not None and pull_token.get_secret_value() == PULL_TOKEN
    assert config.secret_values() == {"HOOK": TEMPLATE_SECRET}
    assert config.access_control().decide(f"Bearer {ACCESS_TOKEN}", "operate").name == "chatops"


def test_unset_optional_secrets_mean_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source or pull token whose variable is unset or empty is None (README: open, as before); a
    template secret whose variable is unset is absent, so the template that needs it names it."""
    monkeypatch.delenv("T_WEBHOOK", raising=False)
    monkeypatch.setenv("T_SIGNING", "")
    monkeypatch.delenv("T_PULL", raising=False)
    monkeypatch.delenv("T_TEMPLATE", raising=False)
    config = load_config(_every_secret(tmp_path))
    generic = config.source_secrets("generic")
    assert generic.token is None and generic.signature_secret is None
    assert config.pull_token("am") is None and config.pull_token("no-such-pull") is None
    assert config.source_secrets("grafana") == config.source_secrets("not-configured")
    assert config.secret_values() == {}


def test_secrets_never_show_in_repr_str_json_or_pickle(
    tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    """Printed, logged, dumped as JSON or sent to an intake helper, the config shows no secret value."""
    config = load_config(_every_secret(tmp_path))
    config.resolve_secrets()
    generic = config.source_secrets("generic")
    shown = [
        repr(config),
        str(config),
        config.model_dump_json(),
        repr(config.model_dump()),
        repr(generic),
        str(generic),
        generic.model_dump_json(),
        str(generic.token),
        repr(config.source_secrets("zabbix")),
        repr(config.pull_token("am")),
        repr(config.template_secrets()),
        repr(config.access_control().__dict__),
    ]
    for text in shown:
        assert not any(value in text for value in ALL_VALUES), text
    assert "**********" in str(generic.token) and "**********" in generic.model_dump_json()
    sent = pickle.dumps(config)  # what the daemon writes to an intake helper
    assert not any(value.encode() in sent for value in ALL_VALUES)
    assert pickle.loads(sent).server == config.server  # noqa: S301 - our own bytes


def test_missing_access_token_is_one_line_naming_key_and_variable(
    tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    """A required token's variable unset: `resolve_secrets()` fails in one line: file:line, key, variable."""
    environment.delenv("T_ACCESS")
    path = _every_secret(tmp_path)
    config = load_config(path)  # loading reads no secret: read commands still work
    with pytest.raises(ConfigError) as caught:
        config.resolve_secrets()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    assert message.endswith(
        "access.tokens.0.token_env: environment variable T_ACCESS is not set (the token for chatops)"
    )
    environment.setenv("T_ACCESS", ACCESS_TOKEN)  # a failed read is not remembered
    config.resolve_secrets()


def test_the_config_cannot_be_changed(tmp_path: Path) -> None:
    """Sections, sources and the config itself are frozen: a change is refused, not silently kept."""
    config = load_config(_config(tmp_path, sources={"generic": {"token_env": "T_WEBHOOK"}}))
    with pytest.raises(ValidationError, match="frozen"):
        config.server = config.server  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        config.source("generic").token_env = "OTHER"  # type: ignore[misc]
    assert config.base_dir == tmp_path.resolve()
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'x.db'}"


# --------------------------------------------------------------------- the receiver


class _RecordingIntake:
    """Takes every admitted body at once, recording the alerts the connector made of it."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def prepare(self, source: str, body: str, alerts: list[Alert]) -> Submission:
        self.alerts.extend(alerts)
        return Submission(source=source, body=body, alerts=[])

    def submit(self, submission: Submission) -> Future[Receipt]:
        done: Future[Receipt] = Future()
        done.set_result(Receipt(event_id=1))
        return done


def _receiver(config: Config, source: str, clock: ManualClock | None = None) -> WebhookReceiver:
    intake: Any = _RecordingIntake()
    return WebhookReceiver(config, intake, get_connector(source), clock=clock or ManualClock())


def _post(receiver: WebhookReceiver, body: bytes, headers: Mapping[str, str]) -> Answer:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    sent = Headers(headers={"Content-Type": "application/json", **headers})  # as both fronts pass them
    return asyncio.run(receiver.receive(sent, chunks()))


GENERIC = orjson.dumps({"alerts": [{"name": "DiskFull", "status": "firing"}]})


def test_receiver_keeps_the_token_it_was_built_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook token is read when the receiver is built; unsetting the variable later opens nothing."""
    monkeypatch.setenv("T_WEBHOOK", WEBHOOK_TOKEN)
    receiver = _receiver(Config(sources={"generic": SourceConfig(token_env="T_WEBHOOK")}), "generic")
    monkeypatch.delenv("T_WEBHOOK")
    assert _post(receiver, GENERIC, {}).status == 401
    assert _post(receiver, GENERIC, {"Authorization": "Bearer changed"}).status == 401
    assert _post(receiver, GENERIC, {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}).status == 202


def test_signature_freshness_is_judged_by_the_receivers_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed timestamp within 300 s of the injected clock passes; once the clock moves on, it is stale."""
    monkeypatch.setenv("T_SIGNING", SIGNING_KEY)
    settings = SourceConfig(signature_secret_env="T_SIGNING", timestamp_header="X-Timestamp")
    clock = ManualClock()
    receiver = _receiver(Config(sources={"generic": settings}), "generic", clock)
    sent = str(int(clock.now().timestamp()) - 299)
    headers = {
        "X-Timestamp": sent,
        "X-Suture-Signature": sign_hmac_sha256(SIGNING_KEY.encode(), GENERIC, sent),
    }
    assert _post(receiver, GENERIC, headers).status == 202
    clock.advance(timedelta(seconds=2))
    stale = _post(receiver, GENERIC, headers)
    assert stale.status == 401 and stale.body == {"error": "signature does not match the body"}


def test_alerts_are_parsed_at_the_receivers_clock() -> None:
    """A Zabbix recovery without a recovery time ends at the receiver's `now`, which is the injected clock."""
    clock = ManualClock()
    clock.advance(timedelta(hours=5))
    receiver = _receiver(Config(), "zabbix", clock)
    body = orjson.dumps({"event_id": "42", "event_value": "0", "trigger_name": "Disk full"})
    assert _post(receiver, body, {}).status == 202
    intake: Any = receiver.intake
    [alert] = intake.alerts
    assert alert.ends_at == clock.now()
