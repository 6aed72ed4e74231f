"""One intake helper process: `python -m engine.intake.fastpath.helper_main FD`, started by `HelperPool`.

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
from engine.intake.answers import UNAVAILABLE, Answer, Outcome
from engine.intake.fastpath.codec import FRAME, WITHDRAW, HookRecorder, Unwire, frame_values, outcome_values
from engine.intake.writer import MAX_BATCH, IntakeWriter
from engine.logging import configure_logging, get_logger
from engine.policy.guards import Rails
from engine.records import Receipt
from engine.store import Store, open_database

log = get_logger("suture.intake")

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

    def arrived(self) -> list[bytes] | None:
        """The complete frames received so far, without waiting; None at end of file."""
        try:
            data = self.sock.recv(RECEIVE_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return self._complete()
        if not data:
            return None
        self.buffer += data
        return self._complete()

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


class Inbox:
    """Submissions read and not yet committed, less those the daemon withdrew.

    A withdrawal always follows its submission on the socket: it either finds the body here
    (skipped, answered 503) or names one already committed and answered (ignored).
    """

    def __init__(self) -> None:
        self.waiting: list[tuple[int, Any]] = []
        self.withdrawn: set[int] = set()

    def add(self, frames: list[bytes]) -> None:
        waiting = self.waiting
        for data in frames:
            request, wired = marshal.loads(data)
            if wired is WITHDRAW:
                self.withdrawn.add(request)
            else:
                waiting.append((request, wired))
        if not waiting:
            self.withdrawn.clear()  # each named a body answered already

    def take(self) -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
        """The next batch to commit, and the withdrawn bodies met on the way."""
        batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
        withdrawn = self.withdrawn
        if not withdrawn:
            return batch, []
        kept = [item for item in batch if item[0] not in withdrawn]
        dropped = [item for item in batch if item[0] in withdrawn]
        withdrawn.difference_update(request for request, _ in dropped)
        if not self.waiting:
            withdrawn.clear()
        return kept, dropped


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
    futures: the helper spent a seventh of its CPU handing bodies between its threads).

    The daemon bounds what it sends ahead of the answers, so the socket and `Inbox` are bounded.
    """
    reader = FrameReader(sock)
    first = reader.frames()
    if not first:
        return
    # Our own daemon, over a private socket pair: the config as an object, then plain values.
    config = pickle.loads(first[0])  # noqa: S301
    configure_logging(config.logging.level, config.logging.format)
    # Every line this process logs says so: `"intake_helper": <pid>`.
    structlog.configure(processors=[_mark_helper, *structlog.get_config()["processors"]])
    # The daemon has migrated it already; its config says how durable a commit is.
    db = open_database(config.database_url, sqlite_synchronous=config.database.sqlite_synchronous)
    # Never started: this thread commits.
    hooks = HookRecorder()  # what the commits announce goes to the daemon's hooks
    writer = IntakeWriter(Store(db, config.heard_events()), hooks=hooks, rails=Rails.of(config))
    replies = Replies(sock)
    gc.collect()
    gc.freeze()
    replies.send(["ready"])
    unwire = Unwire()
    inbox = Inbox()
    inbox.add(first[1:])
    ended = False  # end of file: commit what is held, then exit
    try:
        while True:
            if not inbox.waiting:
                if ended or (frames := reader.frames()) is None:
                    return
                inbox.add(frames)
                continue
            batch, dropped = inbox.take()
            answers = [outcome_values(request, _withdrawn(wired[0])) for request, wired in dropped]
            submissions = [unwire(wired) for _, wired in batch]
            outcomes = writer.commit(submissions) if submissions else []
            answers += [
                outcome_values(request, _outcome(outcome, submission.source))
                for (request, _), submission, outcome in zip(batch, submissions, outcomes, strict=True)
            ]
            replies.send(answers)
            try:
                writer.after_commit([outcome for outcome in outcomes if isinstance(outcome, Receipt)])
            except Exception as exc:  # noqa: BLE001 - stored and answered already; keep going
                log.exception("intake_after_commit_failed", error=str(exc))
            if (relayed := hooks.take()) is not None:
                replies.send([relayed])
            # Bodies and withdrawals sent during the commit, without waiting for more.
            if not ended:
                arrived = reader.arrived()
                if arrived is None:
                    ended = True
                else:
                    inbox.add(arrived)
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


def _withdrawn(source: str) -> Outcome:
    log.error("alerts_not_stored", source=source, error="withdrawn by the daemon before its commit began")
    return Outcome(503, UNAVAILABLE.render(), reason="unavailable")


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the daemon decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[1])) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
