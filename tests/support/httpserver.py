"""A real, scriptable HTTP server on 127.0.0.1 for tests.

    with running_http_server() as server:
        server.script("/hook", [respond(500), respond(200, json={"done": True})])
        ...  # send requests to server.url + "/hook"
        assert server.requests[0].json() == {...}

Every request is recorded (method, path, headers, body) before it is answered.
Each path has a queue of canned responses; when it is empty the answer is
`server.default` (200 with `{"ok": true}`). Slow answers wait on an event that
`stop()` and `reset()` set, so neither waits for a sleeping handler.

The suite shares one server per session (the `http_server` fixture in tests/conftest.py):
`reset()` between tests forgets the requests, scripts and default of the last test.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CannedResponse",
    "RecordedRequest",
    "TestHttpServer",
    "redirect",
    "respond",
    "running_http_server",
    "slow",
]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    #: The request target as sent, query string included (`/hook?x=1`).
    path: str
    #: Header names as sent; use `header()` for a case-insensitive look-up.
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass(frozen=True)
class CannedResponse:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    #: Seconds to wait before answering (interrupted by `stop()`).
    delay: float = 0.0


def respond(
    status: int = 200,
    *,
    json: Any = None,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    delay: float = 0.0,
) -> CannedResponse:
    """A canned answer: `json` is serialised, else `body` is sent as is, else `{"ok": true}`."""
    all_headers: dict[str, str] = {}
    if json is not None:
        payload = jsonlib.dumps(json).encode("utf-8")
        all_headers["Content-Type"] = "application/json"
    elif body is not None:
        payload = body.encode("utf-8") if isinstance(body, str) else body
        all_headers["Content-Type"] = "text/plain; charset=utf-8"
    else:
        payload = b'{"ok": true}'
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    return CannedResponse(status=status, body=payload, headers=all_headers, delay=delay)


def redirect(location: str, status: int = 302) -> CannedResponse:
    return CannedResponse(status=status, body=b"", headers={"Location": location})


def slow(seconds: float, status: int = 200, **kwargs: Any) -> CannedResponse:
    return respond(status, delay=seconds, **kwargs)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: TestHttpServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up are expected in tests; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    #: Bounds a handler blocked on a client that never sends its request.
    timeout = 10

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        owner = self.server.owner
        record = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=dict(self.headers.items()),
            body=self._read_body(),
        )
        canned, interrupted = owner._record_and_pick(record)
        if canned.delay > 0 and interrupted.wait(canned.delay):
            return
        self.send_response(canned.status)
        for key, value in canned.headers.items():
            self.send_header(key, value)
        body = b"" if self.command == "HEAD" else canned.body
        self.send_header("Content-Length", str(len(canned.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class TestHttpServer:
    """The object `running_http_server()` yields."""

    __test__ = False  # not a pytest test class

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[CannedResponse]] = {}
        #: Set by `stop()` or `reset()`: slow answers picked before it give up.
        self._interrupted = threading.Event()
        self.default: CannedResponse = respond(200)
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self.url: str = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"test-http-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def url_for(self, path: str) -> str:
        return self.url + path

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def script(self, path: str, responses: Iterable[CannedResponse | int]) -> None:
        """Queue answers for `path` (without query string); ints are shorthand for `respond(status)`."""
        canned = [respond(item) if isinstance(item, int) else item for item in responses]
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(canned)

    def _record_and_pick(self, record: RecordedRequest) -> tuple[CannedResponse, threading.Event]:
        with self._lock:
            self._requests.append(record)
            for key in (record.path, urlsplit(record.path).path):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft(), self._interrupted
            return self.default, self._interrupted

    def reset(self) -> None:
        """As if just started: no requests, no scripts, the default answer, no slow answer pending."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self.default = respond(200)
            self._interrupted.set()
            self._interrupted = threading.Event()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with self._lock:
            self._interrupted.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def running_http_server(port: int = 0) -> Iterator[TestHttpServer]:
    """A recording server on 127.0.0.1, on `port` when given (a channel that comes up later)."""
    server = TestHttpServer(port)
    try:
        yield server
    finally:
        server.stop()
