"""The pure access rules: password hashes, who may do what, content types, and `access:` in config.yaml."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from engine.access import (
    ANONYMOUS,
    AccessControl,
    AccessDenied,
    Actor,
    Token,
    User,
    hash_password,
    parse_password_hash,
)
from engine.config import is_loopback, load_config
from engine.errors import ConfigError, InvalidArgument
from engine.web.api import json_problem, needed_role

OPS = "operate-token-0123456789"
RO = "read-token-0123456789ab"
# Cheap parameters: these tests check logic, not cost.
ALICE_HASH = parse_password_hash(hash_password("alice-pw", n=16, r=1, p=1))


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture
def control() -> AccessControl:
    return AccessControl(
        [Token("chatops", SecretStr(OPS), "operate"), Token("grafana-ro", SecretStr(RO), "read")],
        [User("alice", ALICE_HASH, "operate")],
    )


def denied(control: AccessControl, header: str | None, needed: str) -> AccessDenied:
    with pytest.raises(AccessDenied) as caught:
        control.decide(header, needed)  # type: ignore[arg-type]
    return caught.value


def test_hash_round_trip_and_salt() -> None:
    """A hash verifies its password only, and hashing twice gives different salts."""
    first, second = hash_password("pw one"), hash_password("pw one")
    assert first != second and first.startswith("scrypt:16384:8:1:")
    parsed = parse_password_hash(first)
    assert parsed.matches("pw one")
    assert not parsed.matches("pw one ") and not parsed.matches("")
    assert str(parsed) == first


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain-password", "expected scrypt:"),
        ("bcrypt:16384:8:1:c2FsdHNhbHQ=:aGFzaGhhc2hoYXNoaGFzaA==", "expected scrypt:"),
        ("scrypt:16384:8:1:c2FsdHNhbHQ=", "expected scrypt:"),
        ("scrypt:lots:8:1:c2FsdHNhbHQ=:aGFzaGhhc2hoYXNoaGFzaA==", "expected scrypt:"),
        ("scrypt:16384:8:1:not base64!:aGFzaGhhc2hoYXNoaGFzaA==", "expected scrypt:"),
        ("scrypt:1000:8:1:c2FsdHNhbHQ=:aGFzaGhhc2hoYXNoaGFzaA==", "power of two"),
        ("scrypt:4194304:8:1:c2FsdHNhbHQ=:aGFzaGhhc2hoYXNoaGFzaA==", "power of two"),
        ("scrypt:1048576:32:1:c2FsdHNhbHQ=:aGFzaGhhc2hoYXNoaGFzaA==", "MiB"),
        ("scrypt:16384:0:1:c2FsdHNhbHQ=:aGFzaGhhc2hoYXNoaGFzaA==", "r must be"),
        ("scrypt:16384:8:1:c2FsdA==:aGFzaGhhc2hoYXNoaGFzaA==", "salt must be"),
        ("scrypt:16384:8:1:c2FsdHNhbHQ=:aGFzaA==", "salt must be"),
    ],
)
def test_malformed_hashes_are_refused_with_the_reason(text: str, problem: str) -> None:
    """Hashes that are not scrypt, truncated, undecodable or with absurd parameters are refused."""
    with pytest.raises(ValueError, match=problem) as caught:
        parse_password_hash(text)
    assert text not in str(caught.value)


def test_empty_password_cannot_be_hashed() -> None:
    """An empty password is a mistake, not a credential."""
    with pytest.raises(InvalidArgument, match="empty"):
        hash_password("")


def test_nothing_configured_reads_open_changes_refused() -> None:
    """No tokens and no users: reads are anonymous, changes 403 `no access configured`, whatever is sent."""
    control = AccessControl([], [])
    assert control.decide(None, "read") == ANONYMOUS
    assert control.decide(f"Bearer {OPS}", "read") == ANONYMOUS
    for header in (None, f"Bearer {OPS}", basic("alice", "alice-pw")):
        refusal = denied(control, header, "operate")
        assert refusal.status == 403 and refusal.message.startswith("no access configured: ")
        assert refusal.challenges == ()


def test_roles(control: AccessControl) -> None:
    """operate may read and change; read may only read; the actor is the credential's name."""
    assert control.decide(f"Bearer {OPS}", "operate") == Actor("chatops", "operate")
    assert control.decide(f"Bearer {OPS}", "read") == Actor("chatops", "operate")
    assert control.decide(f"bearer   {RO}  ", "read") == Actor("grafana-ro", "read")
    refusal = denied(control, f"Bearer {RO}", "operate")
    assert (refusal.status, refusal.message) == (403, "grafana-ro has role read; this needs role operate")
    assert control.decide(basic("alice", "alice-pw"), "operate") == Actor("alice", "operate")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        f"Bearer {OPS}x",
        f"Bearer {OPS[:-1]}",
        f"Token {OPS}",
        OPS,
        basic("alice", "wrong"),
        basic("nobody", "alice-pw"),
        basic("chatops", OPS),
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"alice:\xff").decode(),
    ],
)
def test_missing_or_wrong_credentials_are_401(control: AccessControl, header: str | None) -> None:
    """Anything but a configured token or a user's right password is a 401 with both challenges."""
    for needed in ("read", "operate"):
        refusal = denied(control, header, needed)
        assert refusal.status == 401
        assert refusal.challenges == ('Bearer realm="suture"', 'Basic realm="suture", charset="UTF-8"')


def test_open_reads_without_credentials_only(control: AccessControl) -> None:
    """`open_reads`: no credentials may read; wrong ones are still refused; changes still need operate."""
    open_control = AccessControl([Token("chatops", SecretStr(OPS), "operate")], [], open_reads=True)
    assert open_control.decide(None, "read") == ANONYMOUS
    assert denied(open_control, "Bearer wrong-token", "read").status == 401
    assert denied(open_control, None, "operate").status == 401
    assert denied(open_control, None, "operate").challenges == ('Bearer realm="suture"',)


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"content-type": "application/json"}, True),
        ({"content-type": "Application/JSON; charset=utf-8"}, True),
        ({"content-type": "text/plain"}, False),
        ({"content-type": "application/x-www-form-urlencoded"}, False),
        ({"content-type": "multipart/form-data; boundary=x"}, False),
        ({"content-type": "text/plain", "authorization": f"Bearer {OPS}"}, False),
        ({}, False),
        ({"content-length": "0"}, False),
        ({"content-length": "0", "authorization": basic("alice", "alice-pw")}, False),
        ({"content-length": "0", "authorization": f"Bearer {OPS}"}, True),
        ({"authorization": f"Bearer {OPS}"}, True),
        ({"content-length": "12", "authorization": f"Bearer {OPS}"}, False),
        ({"transfer-encoding": "chunked", "authorization": f"Bearer {OPS}"}, False),
    ],
)
def test_json_required_on_posts(headers: dict[str, str], allowed: bool) -> None:
    """Only JSON bodies, or an empty POST carrying a Bearer token (which no browser adds by itself)."""
    assert (json_problem(headers) is None) is allowed


def test_needed_role_by_method() -> None:
    """GET reads; POST and DELETE change state."""
    assert [needed_role(m) for m in ("GET", "HEAD", "POST", "DELETE", "PUT")] == [
        "read",
        "read",
        "operate",
        "operate",
        "operate",
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("suture.example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only addresses nothing beyond this machine can reach count as loopback."""
    assert is_loopback(host) is loopback


def _config(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": "sqlite:///x.db"}, **sections}, sort_keys=False))
    return path


def test_malformed_password_hash_is_a_config_error_without_the_value(tmp_path: Path) -> None:
    """A password pasted where its hash belongs: one line naming file, line and key, never the value."""
    users = [{"name": "alice", "password_hash": "hunter2-my-password", "role": "operate"}]
    path = _config(tmp_path, access={"users": users})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and "access.users.0: password_hash: expected scrypt:" in message
    assert "hunter2" not in message and "\n" not in message


def test_wrong_role_and_duplicate_users_are_config_errors(tmp_path: Path) -> None:
    """A role other than read/operate, or one user name twice, is refused at load."""
    good = hash_password("pw", n=16, r=1, p=1)
    path = _config(tmp_path, access={"tokens": [{"name": "t", "token_env": "X", "role": "admin"}]})
    with pytest.raises(ConfigError, match=r"access\.tokens\.0\.role: Input should be 'read' or 'operate'"):
        load_config(path)
    twice = [{"name": "bo", "password_hash": good, "role": "read"}] * 2
    with pytest.raises(ConfigError, match="user names must be unique"):
        load_config(_config(tmp_path, access={"users": twice}))


def test_non_loopback_host_needs_access(tmp_path: Path) -> None:
    """server.host 0.0.0.0 is refused without access, naming server.host and its line; accepted with it."""
    path = tmp_path / "config.yaml"
    path.write_text("database: {url: 'sqlite:///x.db'}\nserver:\n  port: 8080\n  host: 0.0.0.0\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: server\.host: '0\.0\.0\.0' is not a loopback"):
        load_config(path)
    tokens = [{"name": "chatops", "token_env": "SUTURE_API_OPS", "role": "operate"}]
    path = _config(tmp_path, server={"host": "0.0.0.0"}, access={"tokens": tokens})
    assert load_config(path).server.host == "0.0.0.0"


def test_token_values_come_from_the_environment_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset or short token variables are config errors; a set one is read once and kept."""
    tokens = [{"name": "chatops", "token_env": "SUTURE_TEST_OPS", "role": "operate"}]
    monkeypatch.delenv("SUTURE_TEST_OPS", raising=False)
    config = load_config(_config(tmp_path, access={"tokens": tokens}))
    with pytest.raises(ConfigError, match=r"access\.tokens\.0\.token_env: .* SUTURE_TEST_OPS is not set"):
        config.access_control()
    monkeypatch.setenv("SUTURE_TEST_OPS", "short")
    with pytest.raises(ConfigError, match="fewer than 16 characters"):
        config.access_control()
    monkeypatch.setenv("SUTURE_TEST_OPS", OPS)
    control = config.access_control()
    monkeypatch.setenv("SUTURE_TEST_OPS", "another-token-0123456789")
    assert config.access_control() is control
    assert control.decide(f"Bearer {OPS}", "operate").name == "chatops"
