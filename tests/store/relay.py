"""A real TCP relay between a store and PostgreSQL: it counts round trips, and cuts a connection on cue."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest


class Relay:
    """A TCP relay to PostgreSQL that can cut one connection, once: ``cut("request")`` drops the next
    request any connection sends (and the connection); ``cut("answer", after=n)`` lets that connection's
    request through, lets ``n`` answers back, then drops the next answer and the connection."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.plan: tuple[str, int] | None = None
        self.cuts = 0
        self.turns = 0  # round trips: requests sent after an answer came back (or first), on every link
        threading.Thread(target=self._accept, daemon=True).start()

    def round_trips(self, work: Any) -> int:
        """How many round trips ``work()`` makes through the relay (every connection together)."""
        with self.lock:
            before = self.turns
        work()
        with self.lock:
            return self.turns - before

    def cut(self, when: str, *, after: int = 0) -> None:
        with self.lock:
            self.plan = (when, after)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            link = {"answers_left": None, "answered": True}
            threading.Thread(target=self._requests, args=(client, server, link), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, link), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, link: dict[str, Any]) -> None:
        while data := _recv(client):
            with self.lock:
                plan, self.plan = self.plan, None
                if plan is not None and plan[0] == "answer":
                    link["answers_left"] = plan[1]
                if link["answered"]:
                    self.turns += 1
                    link["answered"] = False
            if plan is not None and plan[0] == "request":
                self._drop(client, server)
                return
            server.sendall(data)
        self._drop(client, server)

    def _answers(self, server: socket.socket, client: socket.socket, link: dict[str, Any]) -> None:
        while data := _recv(server):
            with self.lock:
                link["answered"] = True
                left = link["answers_left"]
                if left is not None:
                    link["answers_left"] = left - 1
            if left == 0:
                self._drop(client, server)
                return
            try:
                client.sendall(data)
            except OSError:
                break
        self._drop(client, server)

    def _drop(self, *socks: socket.socket) -> None:
        with self.lock:
            self.cuts += 1
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def relayed(pg_url: str) -> Iterator[tuple[Relay, str]]:
    """(relay, the test's store URL through the relay)."""
    parts = urlsplit(pg_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{relay.port}" if parts.username else f"127.0.0.1:{relay.port}"
    yield relay, urlunsplit(parts._replace(netloc=netloc))
    relay.close()


