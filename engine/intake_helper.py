"""One intake helper process: `python -m engine.intake_helper FD`, started by `HelperPool`.

It reads submissions the daemon already authenticated, parsed and classified from the socket
FD, commits them with its own intake writer, and answers each one after its commit. It exits
at end of file: when the daemon retires it, stops, or dies. Signals are left to the daemon.
"""

from __future__ import annotations

import functools
import gc
import marshal
import os
import pickle
import signal
import socket
import sys
import threading
from collections.abc import MutableMapping
from concurrent.futures import Future
from typing import IO, Any

import structlog

from engine.intake import IntakeWriter
from engine.intake_helpers import FRAME, Unwire, frame_values, outcome_values
from engine.logging import configure_logging
from engine.store import Store, open_database
from engine.store.ingest import Receipt, Submission
from engine.webhooks import UNAVAILABLE, Answer, Outcome

log = structlog.get_logger("suture.intake")


def read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    data = stream.read(size)
    return data if len(data) == size else None


class Replies:
    """Frames back to the daemon: "ready" from the main thread, answers from the writer's callbacks.

    The answers of one commit leave together in one write (`flush`): one system call here and
    one wake-up of the daemon's event loop per commit rather than per body.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.held: list[bytes] = []

    def send(self, message: Any) -> None:
        self.hold(message)
        self.flush()

    def hold(self, message: Any) -> None:
        data = frame_values(message)
        with self.lock:
            self.held.append(data)

    def flush(self) -> None:
        with self.lock:
            data, self.held = b"".join(self.held), []
            if not data:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the daemon is gone; its end of the socket answered nobody


class HelperWriter(IntakeWriter):
    """The intake writer whose answers of each commit go out together."""

    def __init__(self, store: Store, replies: Replies) -> None:
        super().__init__(store)
        self.replies = replies

    def _write(self, batch: list[tuple[Submission, Future[Receipt]]]) -> None:
        try:
            super()._write(batch)
        finally:
            self.replies.flush()


def serve(sock: socket.socket) -> None:
    stream = sock.makefile("rb")
    first = read_frame(stream)
    if first is None:
        return
    # Our own daemon, over a private socket pair: the config as an object, then plain values.
    config = pickle.loads(first)  # noqa: S301
    configure_logging(config.logging.level, config.logging.format)
    # Every line this process logs says so: `"intake_helper": <pid>`.
    structlog.configure(processors=[_mark_helper, *structlog.get_config()["processors"]])
    db = open_database(config.database_url)  # the daemon has migrated it already
    replies = Replies(sock)
    writer = HelperWriter(Store(db), replies)
    writer.start()
    gc.collect()
    gc.freeze()
    replies.send("ready")
    unwire = Unwire()
    try:
        while (data := read_frame(stream)) is not None:
            request, wired = marshal.loads(data)
            submission = unwire(wired)
            done = writer.submit(submission)
            done.add_done_callback(functools.partial(_answer, replies, request, submission.source))
            if done.done():  # refused without reaching the writer: no commit will flush it
                replies.flush()
    finally:
        writer.stop()
        db.dispose()


def _mark_helper(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["intake_helper"] = os.getpid()
    return event


def _answer(replies: Replies, request: int, source: str, done: Future[Receipt]) -> None:
    replies.hold(outcome_values(request, _committed(done, source)))


def _committed(done: Future[Receipt], source: str) -> Outcome:
    try:
        receipt = done.result()
    except Exception as exc:  # noqa: BLE001 - StoreUnavailable, or anything the commit raised
        log.error("alerts_not_stored", source=source, error=str(exc) or "commit failed")
        return Outcome(503, UNAVAILABLE.render(), reason="unavailable")
    content = Answer(202, receipt.as_json()).render()
    return Outcome(202, content, opened=len(receipt.opened), runs_queued=bool(receipt.runs_queued))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the daemon decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[1])) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
