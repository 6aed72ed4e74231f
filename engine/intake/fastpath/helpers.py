"""Intake helper processes: the second core, for alert storms.

The event loop and the intake writer share one GIL, so one process tops out at one core
(bench ingest: about 96 µs of CPU per alert, parse and classify on the loop, the commit on
the writer). A helper is a process with its own intake writer and group commit. The daemon
still answers HTTP, authenticates, parses and classifies, then sends the classified
submission over a socket pair and relays the helper's answer after its commit, so 202 still
means committed.

Helpers start when alerts arrive faster than `server.intake_helpers_above` per second and
leave after `IDLE_SECONDS` without a body, so an idle daemon is a single process. Below that
rate one process keeps up, and a second writer would only make the workers' writes wait
(bench latency: one sender at 350 alerts/s, alert to first step 5 ms alone, 300 ms with a
helper). A helper that dies is replaced on the next burst; bodies it held are committed here."""

from __future__ import annotations

import asyncio
import itertools
import marshal
import socket
import subprocess
import sys
import time

from engine.config import Config
from engine.hooks import NO_HOOKS, Hooks, IntakeHelpers
from engine.intake.answers import OVERLOADED, UNAVAILABLE, Outcome
from engine.intake.fastpath.codec import (
    FRAME,
    HOOKS,
    WITHDRAW,
    frame_object,
    frame_values,
    relayed_events,
    wire,
)
from engine.intake.receive import COMMIT_WAIT_SECONDS, OUTCOME_WAIT_SECONDS
from engine.intake.writer import MAX_QUEUED_ALERTS, MAX_QUEUED_CHARS, WEDGED_SECONDS
from engine.logging import get_logger
from engine.models import Submission

log = get_logger("suture.intake")


WINDOW_SECONDS = 0.25


IDLE_SECONDS = 30.0


START_TIMEOUT_SECONDS = 30.0


RESPAWN_PAUSE_SECONDS = 30.0


class HelperGone(Exception):
    """The helper's process ended before it answered."""


class Helper:
    """One helper process and the bodies it holds, seen from the daemon's event loop.

    A body stays in `pending` until the helper answers it (or is gone), even when its request
    gave up: its frame may still sit in the socket, so the bound on what a helper holds
    (`MAX_QUEUED_ALERTS`, `MAX_QUEUED_CHARS`) counts it until then.
    """

    def __init__(
        self,
        pool: HelperPool,
        process: subprocess.Popen[bytes],
        sock: socket.socket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.pool = pool
        self.process = process
        self.sock = sock
        self.reader = reader
        self.writer = writer
        self.ready = False
        self.retiring = False
        self.started = time.monotonic()
        self.last_used = self.started
        #: request -> (its future, alerts, characters)
        self.pending: dict[int, tuple[asyncio.Future[Outcome], int, int]] = {}
        self.alerts = 0
        self.chars = 0
        #: When the helper last answered, or began to owe an answer: for `intake_health`.
        self.progress_at = self.started
        self.failing = False  # its last answer was a failed commit
        self._ids = itertools.count(1)

    async def forward(self, submission: Submission) -> Outcome | None:
        """The helper's outcome once committed; None if the helper died first (commit it here).

        After `COMMIT_WAIT_SECONDS` the body is withdrawn: the helper skips it unless its commit
        began, and answers either way, so a 503 still means not stored.
        """
        alerts, chars = len(submission.alerts), len(submission.body)
        if self.pending and (
            self.alerts + alerts > MAX_QUEUED_ALERTS or self.chars + chars > MAX_QUEUED_CHARS
        ):
            return Outcome(503, OVERLOADED.render(), reason="overloaded")
        request = next(self._ids)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        if not self.pending:
            self.progress_at = now
        self.pending[request] = (future, alerts, chars)
        self.alerts += alerts
        self.chars += chars
        self.last_used = now
        try:
            self.writer.write(frame_values((request, wire(submission))))
            try:
                async with asyncio.timeout(COMMIT_WAIT_SECONDS):
                    await self.writer.drain()
                    return await asyncio.shield(future)
            except TimeoutError:
                if not future.done() and not self.retiring:
                    self.writer.write(frame_values((request, WITHDRAW)))
            async with asyncio.timeout(OUTCOME_WAIT_SECONDS):
                return await future
        except TimeoutError:
            future.cancel()  # its answer, if it ever comes, only frees its place
            log.error(
                "alerts_outcome_unknown",
                source=submission.source,
                error=f"intake helper did not answer in {COMMIT_WAIT_SECONDS + OUTCOME_WAIT_SECONDS:.0f} s",
            )
            return Outcome(503, UNAVAILABLE.render(), reason="unavailable")
        except (HelperGone, ConnectionError, RuntimeError):
            return None  # RuntimeError: written after end of file, the helper is leaving

    async def read_answers(self) -> None:
        try:
            while True:
                (size,) = FRAME.unpack(await self.reader.readexactly(FRAME.size))
                message = marshal.loads(await self.reader.readexactly(size))
                if message == "ready":
                    self.ready = True
                    self.pool.changed()
                    log.info(
                        "intake_helper_ready",
                        pid=self.process.pid,
                        seconds=round(time.monotonic() - self.started, 3),
                    )
                    continue
                if message[0] == HOOKS:  # what the helper's commit announced
                    for event in relayed_events(message):
                        self.pool.hooks.emit(event)
                    continue
                request, *fields = message  # `outcome_values`
                entry = self.pending.pop(request, None)
                if entry is None:
                    continue
                future, alerts, chars = entry
                self.alerts -= alerts
                self.chars -= chars
                self.progress_at = time.monotonic()
                self.failing = fields[0] == 503
                if not future.done():
                    future.set_result(Outcome(*fields))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        # Cancelled means the event loop is ending: `HelperPool.close` ends the process.
        self.pool.gone(self)

    def close(self) -> None:
        """Stop sending; the helper finishes what it holds, answers, and exits on end of file."""
        self.retiring = True
        if self.writer.can_write_eof():
            self.writer.write_eof()


class HelperPool:
    """Starts helpers under load, picks one per body, retires idle ones; all on the event loop."""

    def __init__(self, config: Config, hooks: Hooks = NO_HOOKS) -> None:
        self.config = config
        self.hooks = hooks
        self.limit = config.server.intake_helpers
        self.above = config.server.intake_helpers_above
        self.helpers: list[Helper] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting = False
        self._no_spawn_until = 0.0
        self._window_start = time.monotonic()
        self._window_count = 0
        self._reaper: asyncio.TimerHandle | None = None

    def pick(self, alerts: int) -> Helper | None:
        """The ready helper with the fewest bodies in flight; None: take the body here.

        Once a helper is ready every body goes to helpers, none stays here: two SQLite
        writers in two processes commit slower together than one alone (bench ingest: 14.1k
        alerts/s sharing with this process, 15.5k with the helper writing alone).
        """
        self._window_count += alerts
        now = time.monotonic()
        if now - self._window_start >= WINDOW_SECONDS or not self.above:
            self._tick(now)
        best = None
        for helper in self.helpers:
            if (
                helper.ready
                and not helper.retiring
                and (best is None or len(helper.pending) < len(best.pending))
            ):
                best = helper
        return best

    def _tick(self, now: float) -> None:
        rate = self._window_count / max(now - self._window_start, 1e-6)
        self._window_start, self._window_count = now, 0
        live = sum(not h.retiring for h in self.helpers)
        if rate >= self.above and live < self.limit and not self._starting and now >= self._no_spawn_until:
            self._starting = True
            self._loop = asyncio.get_running_loop()
            self._loop.create_task(self._spawn())

    async def _spawn(self) -> None:
        try:
            ours, theirs = socket.socketpair()
            try:
                process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [sys.executable, "-m", "engine.intake.fastpath.helper_main", str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                )
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            helper = Helper(self, process, ours, reader, writer)
            writer.write(frame_object(self.config))
            self.helpers.append(helper)
            asyncio.get_running_loop().create_task(helper.read_answers())
            log.info("intake_helper_starting", pid=process.pid)
            self._schedule_reaper()
        except OSError as exc:
            log.error("intake_helper_failed", error=str(exc))
            self._no_spawn_until = time.monotonic() + RESPAWN_PAUSE_SECONDS
        finally:
            self._starting = False

    def gone(self, helper: Helper) -> None:
        if helper in self.helpers:
            self.helpers.remove(helper)
        for future, _, _ in helper.pending.values():
            if not future.done():
                future.set_exception(HelperGone())
        helper.pending.clear()
        helper.writer.close()
        code = helper.process.poll()
        if not helper.retiring:
            log.warning("intake_helper_exited", pid=helper.process.pid, exit_code=code)
            self._no_spawn_until = time.monotonic() + RESPAWN_PAUSE_SECONDS
        if code is None and self._loop is not None:
            self._loop.run_in_executor(None, helper.process.wait)  # reap, never a zombie
        self.changed()

    def intake_health(self) -> str | None:
        """None while every helper commits; otherwise why not, in one line (for `/readyz`).
        Read from another thread: only lengths and numbers of the event loop's objects."""
        now = time.monotonic()
        for helper in list(self.helpers):
            if helper.retiring or not helper.ready:
                continue
            pid = helper.process.pid
            if helper.pending and (waited := now - helper.progress_at) > WEDGED_SECONDS:
                return f"intake helper {pid} has not committed for {waited:.0f} s"
            if helper.failing:
                return f"intake helper {pid} cannot commit: its last commit failed"
        return None

    def changed(self) -> None:
        self.hooks.emit(IntakeHelpers(sum(h.ready and not h.retiring for h in self.helpers)))

    def _schedule_reaper(self) -> None:
        if self._reaper is None and self._loop is not None:
            self._reaper = self._loop.call_later(IDLE_SECONDS / 3, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        now = time.monotonic()
        for helper in list(self.helpers):
            if helper.retiring:
                continue
            idle = helper.ready and not helper.pending and now - helper.last_used > IDLE_SECONDS
            stuck = not helper.ready and now - helper.started > START_TIMEOUT_SECONDS
            if idle or stuck:
                log.info(
                    "intake_helper_retired", pid=helper.process.pid, reason="idle" if idle else "no start"
                )
                helper.close()
                if stuck:
                    helper.process.kill()
        self.changed()
        if self.helpers:
            self._schedule_reaper()

    def close(self, timeout: float = 10.0) -> None:
        """After the event loop ended: end of file to every helper, then wait for them to exit."""
        helpers, self.helpers = list(self.helpers), []
        for helper in helpers:
            helper.retiring = True
            try:
                helper.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for helper in helpers:
            try:
                helper.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                helper.process.kill()
                helper.process.wait()
            helper.sock.close()
        self.hooks.emit(IntakeHelpers(0))
