"""The http step action against a real loopback HTTP server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from engine.config import Config, HttpConfig
from engine.execution.actions.base import ActionContext
from engine.execution.actions.http import HttpAction, host_allowed, parse_retry_after
from engine.models import HttpStep
from tests.support.httpserver import TestHttpServer, redirect, respond, running_http_server, slow


@pytest.fixture
def server(http_server: TestHttpServer) -> TestHttpServer:
    """The session's loopback HTTP server, reset for this test (tests/conftest.py)."""
    return http_server


def make_ctx(budget: float = 5, output_limit: int = 65536, **http: Any) -> ActionContext:
    http.setdefault("allowed_hosts", ["127.0.0.1"])
    return ActionContext(
        config=Config(http=HttpConfig(**http)),
        target="web-1",
        timeout_seconds=budget,
        output_limit_bytes=output_limit,
    )


def step(url: str, **fields: Any) -> HttpStep:
    return HttpStep.model_validate({"url": url, **fields})


def run(params: HttpStep, ctx: ActionContext | None = None):
    return HttpAction().execute(params, ctx or make_ctx())


def test_post_json_reaches_server_with_exact_body_and_headers(server: TestHttpServer) -> None:
    """A POST with json arrives with the exact JSON body, content type and custom header."""
    params = step(
        server.url_for("/hook"),
        method="post",
        headers={"X-Token": "s3cret"},
        json={"text": "cleaned web-1", "n": 1},
    )
    result = run(params)
    assert result.ok, result.error
    assert result.http_status == 200
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.json() == {"text": "cleaned web-1", "n": 1}
    assert request.body == b'{"text": "cleaned web-1", "n": 1}'
    assert request.header("content-type") == "application/json"
    assert request.header("x-token") == "s3cret"


def test_string_body_is_sent_as_utf8(server: TestHttpServer) -> None:
    """A string body is sent byte for byte as UTF-8."""
    result = run(
        step(server.url_for("/raw"), method="PUT", body="héllo", headers={"Content-Type": "text/plain"})
    )
    assert result.ok, result.error
    (request,) = server.requests
    assert request.method == "PUT"
    assert request.body == "héllo".encode()


def test_json_and_body_together_are_refused(server: TestHttpServer) -> None:
    """Giving both json and body is an error and nothing is sent."""
    result = run(step(server.url_for("/x"), method="POST", json={"a": 1}, body="a"))
    assert not result.ok
    assert not result.retryable
    assert "not both" in (result.error or "")
    assert server.requests == []


def test_expect_status_mismatch_is_not_ok(server: TestHttpServer) -> None:
    """A 200 answer when only 204 is expected fails, not retryable, and says what was expected."""
    result = run(step(server.url_for("/hook"), method="POST", expect_status=[204]))
    assert not result.ok
    assert not result.retryable
    assert result.http_status == 200
    assert result.error == f"http POST {server.url}/hook answered 200 (expected 204)"


def test_500_is_retryable(server: TestHttpServer) -> None:
    """A 5xx answer fails and may be retried; the next attempt sees the next canned answer."""
    server.script("/hook", [500, 200])
    params = step(server.url_for("/hook"), method="POST", expect_status=[200, 204])
    first = run(params)
    assert not first.ok
    assert first.retryable
    assert first.http_status == 500
    assert first.error == f"http POST {server.url}/hook answered 500 (expected 200, 204)"
    second = run(params)
    assert second.ok
    assert second.http_status == 200


def test_404_is_not_retryable(server: TestHttpServer) -> None:
    """A 4xx answer other than 429 is permanent."""
    server.script("/missing", [404])
    result = run(step(server.url_for("/missing")))
    assert not result.ok
    assert not result.retryable
    assert result.http_status == 404
    assert result.registered["status"] == 404


def test_429_with_retry_after_seconds(server: TestHttpServer) -> None:
    """A 429 with Retry-After: 1 is retryable and registers retry_after = 1."""
    server.script("/hook", [respond(429, headers={"Retry-After": "1"})])
    result = run(step(server.url_for("/hook")))
    assert not result.ok
    assert result.retryable
    assert result.http_status == 429
    assert result.registered["retry_after"] == 1


def test_429_retry_after_is_bounded_by_config(server: TestHttpServer) -> None:
    """A huge Retry-After is cut to http.max_retry_after."""
    server.script("/hook", [respond(429, headers={"Retry-After": "3600"})])
    result = run(step(server.url_for("/hook")), make_ctx(max_retry_after=timedelta(seconds=7)))
    assert result.retryable
    assert result.registered["retry_after"] == 7


def test_429_retry_after_http_date(server: TestHttpServer) -> None:
    """Retry-After as an HTTP-date becomes the seconds until then."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    server.script("/hook", [respond(429, headers={"Retry-After": when})])
    result = run(step(server.url_for("/hook")))
    assert result.retryable
    assert 15 <= result.registered["retry_after"] <= 20


def test_429_without_retry_after_has_no_wait(server: TestHttpServer) -> None:
    """A 429 with no Retry-After is retryable but registers no retry_after."""
    server.script("/hook", [429])
    result = run(step(server.url_for("/hook")))
    assert result.retryable
    assert "retry_after" not in result.registered


def test_parse_retry_after_forms() -> None:
    """Delta-seconds, past and future HTTP-dates, and garbage."""
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_host_outside_allow_list_is_refused_before_sending(server: TestHttpServer) -> None:
    """A host not in allowed_hosts is refused and the server receives nothing."""
    url = server.url_for("/hook").replace("127.0.0.1", "localhost")
    result = run(step(url), make_ctx(allowed_hosts=["10.0.0.1", "*.internal.example"]))
    assert not result.ok
    assert not result.retryable
    assert result.error == "http: host 'localhost' is not in http.allowed_hosts"
    assert server.requests == []


def test_disallowed_host_message_names_host() -> None:
    """The refusal names the host exactly as the brief's message says."""
    result = run(step("http://evil.example/x"))
    assert result.error == "http: host 'evil.example' is not in http.allowed_hosts"
    assert not result.retryable


def test_userinfo_trick_is_judged_by_real_host(server: TestHttpServer) -> None:
    """`http://127.0.0.1@evil.example/` goes to evil.example and is refused."""
    result = run(step("http://127.0.0.1@evil.example/"))
    assert result.error == "http: host 'evil.example' is not in http.allowed_hosts"


def test_backslash_trick_is_refused(server: TestHttpServer) -> None:
    """A backslash authority trick never reaches a disallowed host."""
    result = run(step("http://evil.example\\@127.0.0.1/"))
    assert not result.ok
    assert not result.retryable
    assert "evil.example" in (result.error or "")


def test_only_http_and_https(server: TestHttpServer) -> None:
    """Other schemes are refused."""
    result = run(step("file:///etc/passwd"))
    assert not result.ok
    assert not result.retryable
    assert "only http and https" in (result.error or "")


def test_host_matching_rules() -> None:
    """Globs, exact names, IPs, IPv6 brackets, CIDR, case and trailing dots."""
    patterns = ["*.internal.example", "127.0.0.1", "[::1]", "api.example.com", "10.0.*", "192.168.0.0/16"]
    assert host_allowed("hook.internal.example", patterns)
    assert host_allowed("HOOK.Internal.Example.", patterns)
    assert not host_allowed("internal.example", patterns)
    assert not host_allowed("internal.example.evil.com", patterns)
    assert host_allowed("127.0.0.1", patterns)
    assert host_allowed("::1", patterns)
    assert host_allowed("[0:0:0:0:0:0:0:1]", patterns)
    assert host_allowed("API.example.com", patterns)
    assert host_allowed("10.0.3.4", patterns)
    assert not host_allowed("10.0.evil.example", patterns)
    assert host_allowed("192.168.4.5", patterns)
    assert not host_allowed("192.169.0.1", patterns)
    assert not host_allowed("", patterns)
    assert host_allowed("anything.example", ["*"])


def test_redirect_to_disallowed_host_is_not_followed(server: TestHttpServer) -> None:
    """A 302 to a host outside the allow-list is refused without following it."""
    server.script("/start", [redirect("http://evil.example/")])
    result = run(step(server.url_for("/start"), follow_redirects=True))
    assert not result.ok
    assert not result.retryable
    assert result.error == "http: host 'evil.example' is not in http.allowed_hosts"
    assert [r.path for r in server.requests] == ["/start"]


def test_redirect_to_allowed_path_is_followed(server: TestHttpServer) -> None:
    """A relative Location on an allowed host is followed and the final answer counts."""
    server.script("/start", [redirect("/final?x=1")])
    server.script("/final", [respond(200, json={"arrived": True})])
    result = run(step(server.url_for("/start"), follow_redirects=True))
    assert result.ok, result.error
    assert result.http_status == 200
    assert result.registered["json"] == {"arrived": True}
    assert [r.path for r in server.requests] == ["/start", "/final?x=1"]


def test_redirect_303_after_post_becomes_get_and_307_keeps_post(server: TestHttpServer) -> None:
    """303 switches to GET without body; 307 repeats the POST with its body."""
    server.script("/a", [redirect("/b", status=303)])
    result = run(step(server.url_for("/a"), method="POST", json={"k": 1}, follow_redirects=True))
    assert result.ok, result.error
    assert [(r.method, r.path, r.body) for r in server.requests] == [
        ("POST", "/a", b'{"k": 1}'),
        ("GET", "/b", b""),
    ]
    server.script("/c", [redirect("/d", status=307)])
    result = run(step(server.url_for("/c"), method="POST", json={"k": 2}, follow_redirects=True))
    assert result.ok, result.error
    assert [(r.method, r.path, r.body) for r in server.requests[2:]] == [
        ("POST", "/c", b'{"k": 2}'),
        ("POST", "/d", b'{"k": 2}'),
    ]


def test_too_many_redirects(server: TestHttpServer) -> None:
    """More than 5 redirects is a permanent failure."""
    server.script("/loop", [redirect("/loop")] * 10)
    result = run(step(server.url_for("/loop"), follow_redirects=True))
    assert not result.ok
    assert not result.retryable
    assert "more than 5 redirects" in (result.error or "")
    assert len(server.requests) == 6


def test_redirect_not_followed_by_default(server: TestHttpServer) -> None:
    """Without follow_redirects a 302 is just the status."""
    server.script("/start", [redirect("/final"), redirect("http://evil.example/")])
    result = run(step(server.url_for("/start"), expect_status=[302]))
    assert result.ok, result.error
    assert result.http_status == 302
    assert [r.path for r in server.requests] == ["/start"]
    other = run(step(server.url_for("/start")))
    assert not other.ok
    assert not other.retryable
    assert other.http_status == 302
    assert len(server.requests) == 2


def test_slow_server_times_out_retryable(server: TestHttpServer) -> None:
    """An answer slower than the timeout is a retryable timeout."""
    server.script("/slow", [slow(3)])
    started = time.monotonic()
    result = run(step(server.url_for("/slow")), make_ctx(budget=0.3))
    assert time.monotonic() - started < 2
    assert not result.ok
    assert result.retryable
    assert result.timed_out
    assert "timed out" in (result.error or "")


def test_timeout_uses_config_when_smaller(server: TestHttpServer) -> None:
    """http.timeout caps the step budget."""
    server.script("/slow", [slow(3)])
    started = time.monotonic()
    result = run(step(server.url_for("/slow")), make_ctx(budget=30, timeout=timedelta(seconds=0.3)))
    assert time.monotonic() - started < 2
    assert result.timed_out
    assert result.retryable
    assert "timed out after 0.3s" in (result.error or "")


def test_connection_refused_is_retryable() -> None:
    """Nobody listening is a retryable connection error."""
    with running_http_server() as srv:
        url = srv.url_for("/hook")
    result = run(step(url))
    assert not result.ok
    assert result.retryable
    assert not result.timed_out
    assert result.http_status is None
    assert result.error
    assert result.error.startswith(f"http GET {url}: ")


def test_body_is_capped_with_marker(server: TestHttpServer) -> None:
    """A body over the output limit is cut, says how much was cut, and is not parsed as JSON."""
    server.script("/big", [respond(200, body="x" * 5000)])
    result = run(step(server.url_for("/big")), make_ctx(output_limit=1000))
    assert result.ok
    assert result.stdout.startswith("x" * 1000)
    assert "output truncated by suture: 4000 more bytes" in result.stdout
    assert result.registered["body"] == result.stdout
    assert result.registered["json"] is None


def test_registered_json_is_parsed(server: TestHttpServer) -> None:
    """A JSON answer is registered as status, body text and parsed json."""
    server.script("/status", [respond(200, json={"healthy": True, "items": [1, 2]})])
    result = run(step(server.url_for("/status")))
    assert result.ok
    assert result.registered == {
        "status": 200,
        "body": '{"healthy": true, "items": [1, 2]}',
        "json": {"healthy": True, "items": [1, 2]},
    }
    assert result.stdout == '{"healthy": true, "items": [1, 2]}'


def test_non_json_body_registers_none(server: TestHttpServer) -> None:
    """A plain text answer has json None."""
    server.script("/text", [respond(200, body="hello")])
    result = run(step(server.url_for("/text")))
    assert result.registered["json"] is None
    assert result.registered["body"] == "hello"


def test_request_headers_never_in_output(server: TestHttpServer) -> None:
    """Secret request headers appear in no output or error, even on failure."""
    server.script("/hook", [500])
    result = run(step(server.url_for("/hook"), headers={"Authorization": "Bearer topsecret"}))
    assert not result.ok
    for text in (result.stdout, result.stderr, result.error or "", repr(result.registered)):
        assert "topsecret" not in text
    assert server.requests[0].header("authorization") == "Bearer topsecret"


def test_query_string_kept_out_of_error(server: TestHttpServer) -> None:
    """The error text does not repeat a URL's query string, which may hold a token."""
    server.script("/hook", [500])
    result = run(step(server.url_for("/hook?token=topsecret")))
    assert "topsecret" not in (result.error or "")
    assert server.requests[0].path == "/hook?token=topsecret"


@pytest.mark.parametrize(
    "spelling",
    [
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "127.0.0.1.",
        "allowed@127.0.0.1",
        "localhost",
    ],
)
def test_loopback_spellings_need_a_loopback_entry(server: TestHttpServer, spelling: str) -> None:
    """With only a name glob (`*`), every spelling of 127.0.0.1 is refused and the server gets nothing."""
    result = run(step(f"http://{spelling}:{server.port}/hook"), make_ctx(allowed_hosts=["*"]))
    assert not result.ok
    assert not result.retryable
    error = result.error or ""
    assert "a loopback address is reached only when http.allowed_hosts lists it" in error or (
        spelling == "0177.0.0.1" and "Invalid IPv4 address" in error  # httpx refuses octal outright
    ), error
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254./latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://allowed@169.254.169.254/",
        "http://127.0.0.1@169.254.169.254/",
        "http://2852039166/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0251.0376.0251.0376/",
    ],
)
def test_metadata_spellings_stay_refused(url: str) -> None:
    """Every spelling of the metadata address is refused with the shipped allow-list, never retried."""
    result = run(step(url), make_ctx(allowed_hosts=["127.0.0.1", "localhost"]))
    assert not result.ok
    assert not result.retryable
    error = result.error or ""
    assert "http.allowed_hosts" in error or "Invalid IPv4 address" in error, error


def test_shipped_allow_list_reaches_localhost_through_loopback(server: TestHttpServer) -> None:
    """The shipped list (127.0.0.1, localhost): http://localhost:PORT works, over 127.0.0.1, Host kept."""
    action = HttpAction()
    ctx = make_ctx(allowed_hosts=["127.0.0.1", "localhost"])
    result = action.execute(step(f"http://localhost:{server.port}/hook"), ctx)
    assert result.ok, result.error
    assert action.last_connected == ["127.0.0.1"]
    assert [r.header("host") for r in server.requests] == [f"localhost:{server.port}"]


def test_name_glob_alone_does_not_allow_localhost_loopback(server: TestHttpServer) -> None:
    """`local*` matches the name localhost, but no entry allows loopback: refused before connecting."""
    result = run(step(f"http://localhost:{server.port}/hook"), make_ctx(allowed_hosts=["local*"]))
    assert not result.ok
    assert not result.retryable
    assert (result.error or "").startswith("http: host 'localhost' resolves to 127.0.0.1: a loopback address")
    assert server.requests == []
