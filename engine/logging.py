"""structlog set-up: JSON lines in the daemon, ids bound by the callers.

Modules take their logger from `get_logger`, which imports structlog on the first line logged, not
at import: a read command such as `suture incidents list` logs nothing and never pays for
structlog's import. A command that does log without configuring first (`configure_logging`, as
`serve` does) gets the command line's default: warnings and worse on stderr, so nothing reaches a
command's `--json` on stdout.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

_configured = False
_lock = threading.Lock()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    import structlog

    global _configured
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write per line (PrintLogger writes the newline apart): lines of the daemon and its
        # intake helpers, appended to one file, never run together.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    _configured = True


def configure_command_line() -> None:
    """The command line's logging, decided now and set up on the first line logged: stdlib
    warnings (paramiko's, say) go to stderr at once; structlog waits."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")


def _bound(name: str) -> FilteringBoundLogger:
    if not _configured:
        with _lock:
            if not _configured:
                configure_logging("warning", "console")
    import structlog

    # The lazy proxy's own bind(): the configured bound logger, which it keeps from now on
    # (cache_logger_on_first_use), so the proxy is asked once, not at every line logged.
    logger: FilteringBoundLogger = structlog.get_logger(name).bind()
    return logger


class Logger:
    """A named structlog logger, imported and bound when it first logs. Each method asked for is
    then kept on the instance: a line below the level costs a call of structlog's no-op only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: FilteringBoundLogger | None = None

    def __getattr__(self, method: str) -> Any:
        logger = self._logger
        if logger is None:
            logger = self._logger = _bound(self.name)
        found = getattr(logger, method)
        if not method.startswith("_"):
            setattr(self, method, found)
        return found


def get_logger(name: str) -> FilteringBoundLogger:
    """The logger of one part of the engine (`suture.store`, `suture.worker`, ...)."""
    logger: Any = Logger(name)  # it answers every method of the bound logger
    return logger
