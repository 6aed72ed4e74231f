"""Allow-listed names are resolved and every address judged; the request goes to the judged address.

DNS cannot be changed from a test, so a resolver is passed in (HttpAction(resolver=...),
tests/support/fakedns.py); the requests themselves go to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, HttpConfig
from engine.execution.actions.base import ActionContext
from engine.execution.actions.http import HttpAction
from engine.models import HttpStep
from tests.support.fakedns import FakeDns
from tests.support.httpserver import TestHttpServer, redirect, running_http_server

# The allow-list's judgement alone (no request): tests/unit/test_http_allow_list.py.


# --- The whole step, against a real server on 127.0.0.1.


@pytest.fixture
def server(http_server: TestHttpServer) -> TestHttpServer:
    """The session's loopback HTTP server, reset for this test (tests/conftest.py)."""
    return http_server


def run(action: HttpAction, url: str, allowed: list[str], **fields: Any) -> Any:
    ctx = ActionContext(
        config=Config(http=HttpConfig(allowed_hosts=allowed)),
        target="web-1",
        timeout_seconds=5,
        output_limit_bytes=65536,
    )
    return action.execute(HttpStep.model_validate({"url": url, **fields}), ctx)


def test_allowed_name_reaches_its_checked_address_with_its_own_host_header(server: TestHttpServer) -> None:
    """A name resolving to a listed loopback address: the server gets the request, Host is the name."""
    dns = FakeDns({"hook.internal.example": ["127.0.0.1"]})
    action = HttpAction(resolver=dns)
    url = f"http://hook.internal.example:{server.port}/hook"
    result = run(action, url, ["*.internal.example", "127.0.0.1"])
    assert result.ok, result.error
    assert [r.header("host") for r in server.requests] == [f"hook.internal.example:{server.port}"]
    assert action.last_connected == ["127.0.0.1"]
    assert dns.calls == ["hook.internal.example"]


def test_name_resolving_to_unlisted_loopback_is_refused_before_connecting(server: TestHttpServer) -> None:
    """The same name without a loopback entry is refused, permanently, and nothing reaches the server."""
    action = HttpAction(resolver=FakeDns({"hook.internal.example": ["127.0.0.1"]}))
    result = run(action, f"http://hook.internal.example:{server.port}/hook", ["*.internal.example"])
    assert not result.ok
    assert not result.retryable
    assert result.error == (
        "http: host 'hook.internal.example' resolves to 127.0.0.1: a loopback address is reached only "
        "when http.allowed_hosts lists it (the address, a CIDR range, or `localhost` for loopback)"
    )
    assert server.requests == []
    assert action.last_connected == []


def test_name_resolving_to_metadata_address_is_refused() -> None:
    """A name under an allowed suffix that resolves to 169.254.169.254 is refused; no socket is opened."""
    action = HttpAction(resolver=FakeDns({"meta.internal.example": ["169.254.169.254"]}))
    result = run(action, "http://meta.internal.example/latest/meta-data/", ["*.internal.example", "*"])
    assert not result.ok
    assert not result.retryable
    assert "resolves to 169.254.169.254: link-local" in (result.error or "")
    assert action.last_connected == []


class Rebinding(FakeDns):
    """Answers the table the first time, then 169.254.169.254: what a rebinding attacker's DNS does."""

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if self.calls:
            self.table[host] = ["169.254.169.254"]
        return super().__call__(host, port, *args, **kwargs)


def test_name_is_resolved_once_and_the_checked_address_is_the_one_connected(server: TestHttpServer) -> None:
    """DNS rebinding: the name is looked up once; the socket goes to that checked answer, not a second one."""
    dns = Rebinding({"hook.internal.example": ["127.0.0.1"]})
    action = HttpAction(resolver=dns)
    result = run(action, f"http://hook.internal.example:{server.port}/a", ["*.internal.example", "127.0.0.1"])
    assert result.ok, result.error
    assert [r.path for r in server.requests] == ["/a"]
    assert dns.calls == ["hook.internal.example"]
    assert action.last_connected == ["127.0.0.1"]


def test_rebinding_between_redirect_hops_is_caught(server: TestHttpServer) -> None:
    """A redirect hop to another port (a new connection) is resolved again: the rebound answer is refused."""
    dns = Rebinding({"hook.internal.example": ["127.0.0.1"]})
    action = HttpAction(resolver=dns)
    with running_http_server() as other:
        server.script("/a", [redirect(f"http://hook.internal.example:{other.port}/b")])
        url = f"http://hook.internal.example:{server.port}/a"
        result = run(action, url, ["*.internal.example", "127.0.0.1"], follow_redirects=True)
        assert other.requests == []
    assert not result.ok
    assert not result.retryable
    assert "resolves to 169.254.169.254: link-local" in (result.error or "")
    assert [r.path for r in server.requests] == ["/a"]
    assert dns.calls == ["hook.internal.example", "hook.internal.example"]
    assert action.last_connected == ["127.0.0.1"]


def test_redirect_to_a_name_resolving_to_metadata_is_refused(server: TestHttpServer) -> None:
    """Every redirect hop is judged: an allowed name pointing at 169.254.169.254 is not followed."""
    dns = FakeDns({"hook.internal.example": ["127.0.0.1"], "evil.internal.example": ["169.254.169.254"]})
    action = HttpAction(resolver=dns)
    server.script("/a", [redirect("http://evil.internal.example/latest/meta-data/")])
    url = f"http://hook.internal.example:{server.port}/a"
    result = run(action, url, ["*.internal.example", "127.0.0.1"], follow_redirects=True)
    assert not result.ok
    assert not result.retryable
    assert "host 'evil.internal.example' resolves to 169.254.169.254: link-local" in (result.error or "")
    assert [r.path for r in server.requests] == ["/a"]
    assert action.last_connected == ["127.0.0.1"]


def test_unresolvable_name_is_retryable(server: TestHttpServer) -> None:
    """A name DNS does not know fails the attempt, retryable, naming the name."""
    result = run(HttpAction(resolver=FakeDns({})), "http://gone.internal.example/x", ["*.internal.example"])
    assert not result.ok
    assert result.retryable
    assert "cannot resolve 'gone.internal.example'" in (result.error or "")


# --- https: the socket goes to the checked address, TLS still speaks to the name.


def _certificates(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `name`, written as PEM files (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "suture test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@contextmanager
def https_server(cert: Path, key: Path) -> Iterator[tuple[int, list[str | None], list[str]]]:
    """A TLS server on 127.0.0.1 answering 200; yields (port, SNI names seen, Host headers seen)."""
    sni: list[str | None] = []
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hosts.append(self.headers.get("Host", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], sni, hosts
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_to_checked_address_uses_the_name_for_sni_and_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https to a name pinned to 127.0.0.1: SNI and certificate check use the name; Host is the name."""
    ca, cert, key = _certificates(tmp_path, "hook.internal.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    action = HttpAction(resolver=FakeDns({"hook.internal.example": ["127.0.0.1"]}))
    with https_server(cert, key) as (port, sni, hosts):
        result = run(action, f"https://hook.internal.example:{port}/x", ["*.internal.example", "127.0.0.1"])
    assert result.ok, result.error
    assert sni == ["hook.internal.example"]
    assert hosts == [f"hook.internal.example:{port}"]
    assert action.last_connected == ["127.0.0.1"]


def test_https_certificate_for_another_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate that does not name the URL's host fails verification: a TLS error, not retried."""
    ca, cert, key = _certificates(tmp_path, "other.internal.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    action = HttpAction(resolver=FakeDns({"hook.internal.example": ["127.0.0.1"]}))
    with https_server(cert, key) as (port, _sni, hosts):
        result = run(action, f"https://hook.internal.example:{port}/x", ["*.internal.example", "127.0.0.1"])
    assert not result.ok
    assert not result.retryable
    assert "TLS error" in (result.error or "") and "hook.internal.example" in (result.error or "")
    assert hosts == []
