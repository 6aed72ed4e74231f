"""A resolver answering from a table: DNS cannot be changed from a test, so one is passed in
(`HttpAction(resolver=...)`, `checked_addresses(..., resolver, ...)`)."""

from __future__ import annotations

import socket
from typing import Any


class FakeDns:
    """A resolver answering from a table, counting look-ups; unknown names fail like getaddrinfo."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = []
        for address in self.table[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            answers.append((family, socket.SOCK_STREAM, 6, "", (address, port)))
        return answers
