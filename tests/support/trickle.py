"""A loopback HTTP peer that trickles its answer: the slow server a deadline per read must beat."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def trickling_server(head: bytes, body: bytes, every: float) -> Iterator[str]:
    """Yields a base URL whose every answer sends `head` at once, then `body` one byte every `every` s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    connections: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(head)
            for byte in body:
                if stop.wait(every):
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            return

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        listener.close()
        for conn in connections:
            conn.close()
        thread.join(timeout=5)
