"""A server that trickles its answer, one byte every 0.3 s, against the one HTTP transport.

The HTTP step (through the registered action, as the runner calls it) and the pull clients must
end at their own timeout, not when the trickle ends: a 0.5 s budget ends within about a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from connectors.pull import PullError, fetch_alertmanager
from connectors.zabbix_api import fetch_zabbix_problems
from engine.config import Config, HttpConfig
from engine.execution.actions import ActionContext, default_registry
from engine.models import HttpStep
from tests.support.trickle import trickling_server

EVERY = 0.3
BUDGET = 0.5
#: The budget plus what a loaded machine may add; the trickle itself would take 6 s or more.
ENDS_WITHIN = 1.5
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
BODY = b"[" + b" " * 18 + b"]"


T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    outcome = call()
    return outcome, time.monotonic() - started


# (head sent at once, trickled part): the body trickles, or the status line and headers do.
TRICKLES = {"body": (HEAD, BODY), "headers": (b"", HEAD + BODY)}


@pytest.mark.parametrize("part", TRICKLES)
def test_http_step_keeps_its_time_budget(part: str) -> None:
    """A 0.5 s HTTP step against a trickling server fails as timed out after 0.5s, within about a second."""
    ctx = ActionContext(
        config=Config(http=HttpConfig(allowed_hosts=["127.0.0.1"])),
        target="web-1",
        timeout_seconds=BUDGET,
        output_limit_bytes=65536,
    )
    with trickling_server(*TRICKLES[part], every=EVERY) as url:
        result, took = timed(lambda: default_registry()["http"].execute(HttpStep(url=f"{url}/slow"), ctx))
    assert took < ENDS_WITHIN, f"the step held its worker {took:.1f}s"
    assert not result.ok
    assert result.timed_out and result.retryable
    assert result.error == f"http GET {url}/slow: timed out after 0.5s"


def _alertmanager(url: str) -> object:
    return fetch_alertmanager(url, source="am", timeout=BUDGET)


def _zabbix(url: str) -> object:
    return fetch_zabbix_problems(f"{url}/api_jsonrpc.php", token="api-token", timeout=BUDGET)


@pytest.mark.parametrize("poll", [_alertmanager, _zabbix], ids=["alertmanager", "zabbix"])
@pytest.mark.parametrize("part", TRICKLES)
def test_pull_client_keeps_its_timeout(part: str, poll: Callable[[str], object]) -> None:
    """A poll with timeout 0.5 against a trickling server fails saying it timed out, within about a second."""
    with trickling_server(*TRICKLES[part], every=EVERY) as url:

        def fails() -> str:
            with pytest.raises(PullError) as caught:
                poll(url)
            return str(caught.value)

        message, took = timed(fails)
    assert took < ENDS_WITHIN, f"the poll took {took:.1f}s"
    expected = "timed out after 0.5s reading the answer" if part == "body" else "timed out after 0.5s"
    assert expected in message
    assert "api-token" not in message
