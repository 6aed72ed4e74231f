"""One intake helper process: `python -m engine.intake_helper FD`, started by `HelperPool`.

It reads submissions the daemon already authenticated, parsed and classified from the socket
FD, commits them with its own intake writer, and answers each one after its commit. It exits
at end of file: when the daemon retires it, stops, or dies. Signals are left to the daemon.
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
import signal
import socket
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from engine.errors import StoreUnavailable
from engine.intake import MAX_BATCH, IntakeWriter
from engine.intake_helpers import FRAME, Unwire, frame_values, outcome_values
from engine.logging import configure_logging
from engine.store import Store, open_database
from engine.store.ingest import Receipt
from engine.webhooks import UNAVAILABLE, Answer, Outcome

log = structlog.get_logger("suture.intake")

RECEIVE_BYTES = 1 << 20


class FrameReader:
    """Frames from the daemon, as many as have arrived at each call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def frames(self) -> list[bytes] | None:
        """Every complete frame received so far, waiting for at least one; None at end of file."""
        while True:
            found = self._complete()
            if found:
                return found
            data = self.sock.recv(RECEIVE_BYTES)
            if not data:
                return None
            self.buffer += data

    def _complete(self) -> list[bytes]:
        found, at, buffer = [], 0, self.buffer
        while len(buffer) - at >= FRAME.size:
            (size,) = FRAME.unpack_from(buffer, at)
            if len(buffer) - at - FRAME.size < size:
                break
            found.append(bytes(buffer[at + FRAME.size : at + FRAME.size + size]))
            at += FRAME.size + size
        del buffer[:at]
        return found


class Replies:
    """Frames back to the daemon; the answers of one commit leave in one write."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, messages: list[Any]) -> None:
        try:
            self.sock.sendall(b"".join(frame_values(message) for message in messages))
        except OSError:
            pass  # the daemon is gone; its end of the socket answered nobody


def serve(sock: socket.socket) -> None:
    """Read, commit, answer, in one thread: submissions that arrive during a commit wait in the
    socket and make up the next batch (group commit without a writer thread, a queue, or
    futures: the helper spent a seventh of its CPU handing bodies between its threads)."""
    reader = FrameReader(sock)
    first = reader.frames()
    if not first:
        return
    # Our own daemon, over a private socket pair: the config as an object, then plain values.
    config = pickle.loads(first[0])  # noqa: S301
    configure_logging(config.logging.level, config.logging.format)
    # Every line this process logs says so: `"intake_helper": <pid>`.
    structlog.configure(processors=[_mark_helper, *structlog.get_config()["processors"]])
    db = open_database(config.database_url)  # the daemon has migrated it already
    writer = IntakeWriter(Store(db))  # never started: this thread commits
    replies = Replies(sock)
    gc.collect()
    gc.freeze()
    replies.send(["ready"])
    unwire = Unwire()
    pending = first[1:]
    try:
        while pending or (pending := reader.frames() or []):
            batch, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
            requests, submissions = [], []
            for data in batch:
                request, wired = marshal.loads(data)
                requests.append(request)
                submissions.append(unwire(wired))
            outcomes = writer.commit(submissions)
            replies.send(
                [
                    outcome_values(request, _outcome(outcome, submission.source))
                    for request, submission, outcome in zip(requests, submissions, outcomes, strict=True)
                ]
            )
            writer.after_commit([outcome for outcome in outcomes if isinstance(outcome, Receipt)])
    finally:
        db.dispose()


def _mark_helper(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["intake_helper"] = os.getpid()
    return event


def _outcome(outcome: Receipt | StoreUnavailable, source: str) -> Outcome:
    if not isinstance(outcome, Receipt):
        log.error("alerts_not_stored", source=source, error=str(outcome) or "commit failed")
        return Outcome(503, UNAVAILABLE.render(), reason="unavailable")
    content = Answer(202, outcome.as_json()).render()
    return Outcome(202, content, opened=len(outcome.opened), runs_queued=bool(outcome.runs_queued))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the daemon decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[1])) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
