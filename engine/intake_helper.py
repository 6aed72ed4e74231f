"""One intake helper process: `python -m engine.intake_helper FD`, started by `HelperPool`.

It reads bodies the daemon already authenticated from the socket FD, admits and commits them
with its own intake writer, and answers each one after its commit. It exits at end of file:
when the daemon retires it, stops, or dies. Signals are left to the daemon, which owns it.
"""

from __future__ import annotations

import functools
import gc
import pickle
import signal
import socket
import sys
import threading
from concurrent.futures import Future
from typing import IO, Any

import structlog

from connectors import CONNECTORS
from engine.intake import CatalogView, Intake
from engine.intake_helpers import FRAME, frame
from engine.logging import configure_logging
from engine.store import Store, open_database
from engine.store.ingest import Receipt
from engine.webhooks import UNAVAILABLE, Answer, Outcome, Rejected, admit, error

log = structlog.get_logger("suture.intake")


def read_frame(stream: IO[bytes]) -> Any | None:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 - our own daemon, over a private socket pair


class Replies:
    """Answers go back from two threads (this one for refusals, the writer after commits)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, message: Any) -> None:
        data = frame(message)
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the daemon is gone; its end of the socket answered nobody


def serve(sock: socket.socket) -> None:
    stream = sock.makefile("rb")
    init = read_frame(stream)
    if init is None or init[0] != "init":
        return
    _, config, catalog = init
    configure_logging(config.logging.level, config.logging.format)
    db = open_database(config.database_url)  # the daemon has migrated it already
    intake = Intake(Store(db), CatalogView.of(catalog))
    intake.start()
    replies = Replies(sock)
    gc.collect()
    gc.freeze()
    replies.send(("ready",))
    try:
        while (message := read_frame(stream)) is not None:
            if message[0] == "catalog":
                intake.view = CatalogView.of(message[1])
                continue
            _, request, source, raw = message
            try:
                admitted = admit(config, intake, CONNECTORS[source], raw)
            except Exception:  # noqa: BLE001 - the daemon's own last resort, as for FastAPI
                log.exception("webhook_failed", source=source)
                replies.send(("answer", request, Outcome(500, error(500, "internal error").render())))
                continue
            if isinstance(admitted, Rejected):
                outcome = Outcome(admitted.answer.status, admitted.answer.render(), reason=admitted.reason)
                replies.send(("answer", request, outcome))
                continue
            intake.submit(admitted).add_done_callback(
                functools.partial(_answer, replies, request, source, len(admitted.alerts))
            )
    finally:
        intake.stop()
        db.dispose()


def _answer(replies: Replies, request: int, source: str, count: int, done: Future[Receipt]) -> None:
    replies.send(("answer", request, _committed(done, source, count)))


def _committed(done: Future[Receipt], source: str, count: int) -> Outcome:
    try:
        receipt = done.result()
    except Exception as exc:  # noqa: BLE001 - StoreUnavailable, or anything the commit raised
        log.error("alerts_not_stored", source=source, error=str(exc) or "commit failed")
        return Outcome(503, UNAVAILABLE.render(), reason="unavailable")
    content = Answer(202, receipt.as_json()).render()
    return Outcome(
        202, content, alerts=count, opened=len(receipt.opened), runs_queued=bool(receipt.runs_queued)
    )


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the daemon decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[1])) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
