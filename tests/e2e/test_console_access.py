"""The console's access rules through the real daemon, over plain HTTP (what a browser sends):
sign-in with `access.users`, a session cookie, CSRF tokens on every action, roles, no open
redirect, and headers that keep every page to the daemon's own origin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.access import hash_password
from tests.conftest import DaemonProcess, free_port, write_config

OPERATOR, READER = ("alice", "alice-pass-1"), ("bob", "bob-pass-1")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    folder = tmp_path_factory.mktemp("console-access")
    users = [
        {"name": name, "password_hash": hash_password(password, n=2**10), "role": role}
        for (name, password), role in ((OPERATOR, "operate"), (READER, "read"))
    ]
    port = free_port()
    config = write_config(folder, f"sqlite:///{folder}/suture.db", port=port, access={"users": users})
    process = DaemonProcess(config, port).start()
    yield process
    process.stop()


def signed_in(daemon: DaemonProcess, user: tuple[str, str]) -> httpx.Client:
    client = httpx.Client(base_url=daemon.url, follow_redirects=False, timeout=10)
    answer = client.post("/login", data={"name": user[0], "password": user[1], "next": "/status"})
    assert answer.status_code == 303 and answer.headers["location"] == "/status", answer.text
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def paused(daemon: DaemonProcess) -> Any:
    """What `suture status` says (the API needs credentials of its own here)."""
    return daemon.cli("status")["paused"]


def test_pages_need_a_sign_in_and_come_back_after_it(daemon: DaemonProcess) -> None:
    answer = httpx.get(f"{daemon.url}/incidents?status=open", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/incidents%3Fstatus%3Dopen"

    client = httpx.Client(base_url=daemon.url, follow_redirects=False, timeout=10)
    wrong = client.post("/login", data={"name": OPERATOR[0], "password": "nope", "next": "/incidents"})
    assert wrong.status_code == 401 and "wrong name or password" in wrong.text
    assert "suture_session" not in client.cookies

    right = client.post("/login", data={"name": OPERATOR[0], "password": OPERATOR[1], "next": "/incidents"})
    assert right.status_code == 303 and right.headers["location"] == "/incidents"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    page = client.get("/incidents")
    assert page.status_code == 200 and 'id="signed-in-as">alice<' in page.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_sign_in_never_sends_anyone_elsewhere(daemon: DaemonProcess, target: str) -> None:
    client = httpx.Client(base_url=daemon.url, follow_redirects=False, timeout=10)
    answer = client.post("/login", data={"name": OPERATOR[0], "password": OPERATOR[1], "next": target})
    assert answer.status_code == 303 and answer.headers["location"] == "/incidents"


def test_an_action_without_its_csrf_token_is_refused_and_changes_nothing(daemon: DaemonProcess) -> None:
    client = signed_in(daemon, OPERATOR)
    token = csrf_of(client.get("/status").text)
    before = paused(daemon)

    for form in ({}, {"csrf": "0" * 64}, {"csrf": token + "0"}):
        refused = client.post("/pause", data={**form, "reason": "should not happen"})
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text
    assert paused(daemon) == before is False

    # Another session's token does not fit this session either.
    other = signed_in(daemon, OPERATOR)
    assert other.post("/pause", data={"csrf": token}).status_code == 403
    assert paused(daemon) is False

    done = client.post("/pause", data={"csrf": token, "reason": "console test"})
    assert done.status_code == 303 and paused(daemon) is True
    assert client.post("/resume", data={"csrf": token}).status_code == 303
    assert paused(daemon) is False


def test_a_reader_sees_pages_but_cannot_act(daemon: DaemonProcess) -> None:
    client = signed_in(daemon, READER)
    page = client.get("/status")
    assert page.status_code == 200 and 'id="pause"' not in page.text  # no button to press
    token = csrf_of(page.text)  # the sign-out form's
    refused = client.post("/pause", data={"csrf": token})
    assert refused.status_code == 403 and "needs role operate" in refused.text
    assert paused(daemon) is False


def test_an_anonymous_post_is_refused(daemon: DaemonProcess) -> None:
    answer = httpx.post(f"{daemon.url}/pause", data={"csrf": "x"}, follow_redirects=False)
    assert answer.status_code == 403 and paused(daemon) is False


def test_every_page_keeps_to_the_daemons_own_origin(daemon: DaemonProcess) -> None:
    client = signed_in(daemon, OPERATOR)
    for path in ("/incidents", "/approvals", "/silences", "/status", "/login"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert not re.search(r'(src|href)="(https?:)?//', answer.text), path
