"""A PostgreSQL connection lost under a write: run again only when the server never started it, never twice.

The store checks a pooled connection without a round trip (a dropped one has its goodbye waiting on the
socket), so a connection that dies a moment after that check is met by the write itself. These tests put
a real TCP relay between the store and a real PostgreSQL and cut one connection at the moment that
matters: as the write goes out (the server never sees it), as the server's first answer comes back (the
transaction begun, nothing committed), and as its last answer comes back (committed, the answer lost).
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from corral import Blocked, Governor
from corral.errors import StoreError
from corral.store.audit import verify_chain

# A durable write's answers from the server before its COMMIT's: the locks it read (the relay lets them through).
ANSWERS_BEFORE_COMMIT = 1


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
        threading.Thread(target=self._accept, daemon=True).start()

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
            link = {"answers_left": None}
            threading.Thread(target=self._requests, args=(client, server, link), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, link), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, link: dict[str, Any]) -> None:
        while data := _recv(client):
            with self.lock:
                plan, self.plan = self.plan, None
                if plan is not None and plan[0] == "answer":
                    link["answers_left"] = plan[1]
            if plan is not None and plan[0] == "request":
                self._drop(client, server)
                return
            server.sendall(data)
        self._drop(client, server)

    def _answers(self, server: socket.socket, client: socket.socket, link: dict[str, Any]) -> None:
        while data := _recv(server):
            with self.lock:
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
def relayed(pg_url: str) -> Any:
    """(relay, the test's store URL through the relay)."""
    parts = urlsplit(pg_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{relay.port}" if parts.username else f"127.0.0.1:{relay.port}"
    yield relay, urlunsplit(parts._replace(netloc=netloc))
    relay.close()


def _store(url: str) -> Any:
    from corral.store.postgres import PostgresStore

    return PostgresStore(url, pool_size=2)


def test_a_write_cut_on_its_way_out_runs_once_on_a_fresh_connection(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    relay.cut("request")
    store.append("s1", {"id": "r2"})  # the server never saw the first try
    assert relay.cuts >= 1
    records = store.records("s1")
    assert [r["id"] for r in records] == ["r1", "r2"]
    assert verify_chain(records, store.head("s1"))[0]
    store.close()


def test_a_write_cut_at_its_first_answer_is_rolled_back_and_run_once_more(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    expires = datetime.now(UTC) + timedelta(hours=1)
    relay.cut("answer")
    rid = store.reserve([("agent:a", Decimal(1))], Decimal("0.25"), expires)
    assert rid is not None and relay.cuts >= 1
    assert store.usage(["agent:a"]) == [(Decimal(0), Decimal("0.25"))]  # reserved once, not twice
    relay.cut("answer")
    store.append("s1", {"id": "r2"})
    assert [r["id"] for r in store.records("s1")] == ["r1", "r2"]
    store.close()


def test_a_write_whose_commit_answer_is_lost_is_an_error_never_a_second_copy(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    relay.cut("answer", after=ANSWERS_BEFORE_COMMIT)
    with pytest.raises(StoreError, match="PostgreSQL store"):
        store.append("s1", {"id": "r2"})
    records = store.records("s1")
    assert [r["id"] for r in records] == ["r1", "r2"]  # it did commit: once
    assert verify_chain(records, store.head("s1"))[0]
    store.append("s1", {"id": "r3"})
    assert [r["id"] for r in store.records("s1")] == ["r1", "r2", "r3"]
    store.close()


def test_a_read_cut_under_it_is_read_again(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    relay.cut("request")
    assert [r["id"] for r in store.records("s1")] == ["r1"]
    assert relay.cuts >= 1
    store.close()


def test_governed_calls_through_cut_connections_run_once_each(relayed: Any) -> None:
    relay, url = relayed
    ran: list[str] = []
    gov = Governor(agent="desk", budget=1.0, store=url, phases=False)
    gov.register("priced_read", lambda: ran.append("read"), effect="read", cost=0.01)
    gov.register("wipe", lambda: ran.append("wipe"), effect="irreversible")
    s = gov.session("alice")
    s.call("wipe")
    for when in ("request", "answer", "request", "answer"):
        for tool in ("wipe", "priced_read"):
            relay.cut(when)
            s.call(tool)
    assert ran == ["wipe"] + ["wipe", "read"] * 4
    records = gov.store.records(s.id)
    assert verify_chain(records, gov.store.head(s.id))[0]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))  # nothing written twice
    assert s.budget.spent == pytest.approx(0.04) and s.budget.reserved == 0
    gov.close()


def test_a_call_whose_decision_commit_answer_is_lost_is_blocked_and_says_so(relayed: Any) -> None:
    relay, url = relayed
    ran: list[str] = []
    gov = Governor(agent="desk", store=url, phases=False)
    gov.register("wipe", lambda: ran.append("wipe"), effect="irreversible")
    s = gov.session("alice")
    s.call("wipe")
    relay.cut("answer", after=ANSWERS_BEFORE_COMMIT)
    with pytest.raises(Blocked) as refused:
        s.call("wipe")
    assert "PostgreSQL store" in refused.value.reason
    assert ran == ["wipe"]  # the tool did not run: its decision's durability was not confirmed
    records = gov.store.records(s.id)
    assert verify_chain(records, gov.store.head(s.id))[0]
    last = [r for r in records if r["id"] == refused.value.trace.id]
    # the decision did commit (once); the kernel's record after it says the call was blocked, and why
    assert [r["decision"] for r in last] == ["allowed", "blocked"]
    assert "could not be stored" in last[1]["reason"]
    gov.close()
