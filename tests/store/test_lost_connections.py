"""A PostgreSQL connection lost under a write: run again only when the server never started it, never twice.

The store checks a pooled connection without a round trip (a dropped one has its goodbye waiting on the
socket), so a connection that dies a moment after that check is met by the write itself. These tests put
a real TCP relay between the store and a real PostgreSQL and cut one connection at the moment that
matters: as the write goes out (the server never sees it), as an answer before its COMMIT's comes back
(the transaction begun, nothing committed), and as its COMMIT's answer comes back (committed, the answer
lost).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from corral import Blocked, Governor
from corral.errors import StoreError
from corral.store.audit import verify_chain
from corral.store.protocol import Reserve

LATER = datetime.now(UTC) + timedelta(days=1)


def _ids(store: Any, session_id: str) -> list[str]:
    """The ids of a session's chain, in order."""
    return [r["id"] for r in store.records(session_id)]


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


def test_a_write_cut_at_an_answer_before_its_commit_is_rolled_back_and_run_once_more(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    # a session this store has not written yet: its head is locked and read first (a round trip of its own)
    relay.cut("answer")
    store.append("s2", {"id": "a1"})
    assert relay.cuts >= 1
    assert _ids(store, "s2") == ["a1"]
    assert verify_chain(store.records("s2"), store.head("s2"))[0]
    # two reservations in one batch: the ledger rows are locked and read first
    relay.cut("answer")
    first, second = store.batch([Reserve([("agent:a", Decimal(1))], Decimal("0.25"), LATER),
                                 Reserve([("agent:a", Decimal(1))], Decimal("0.5"), LATER)])
    assert first and second
    assert store.usage(["agent:a"]) == [(Decimal(0), Decimal("0.75"))]  # reserved once each, not twice
    store.close()


def test_a_write_whose_commit_answer_is_lost_is_an_error_never_a_second_copy(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    relay.cut("answer")  # the head is the one this store wrote: the write is one round trip, its COMMIT's
    with pytest.raises(StoreError, match="PostgreSQL store"):
        store.append("s1", {"id": "r2"})
    records = store.records("s1")
    assert [r["id"] for r in records] == ["r1", "r2"]  # it did commit: once
    assert verify_chain(records, store.head("s1"))[0]
    store.append("s1", {"id": "r3"})
    assert _ids(store, "s1") == ["r1", "r2", "r3"]
    relay.cut("answer")
    with pytest.raises(StoreError, match="reserve failed"):
        store.reserve([("agent:a", Decimal(1))], Decimal("0.25"), LATER)
    assert store.usage(["agent:a"]) == [(Decimal(0), Decimal("0.25"))]  # committed once, not run again
    store.close()


def test_a_read_cut_under_it_is_read_again(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    relay.cut("request")
    assert _ids(store, "s1") == ["r1"]
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
    relay.cut("answer")  # the decision's batch is one round trip: its COMMIT's answer is the one lost
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


def test_a_connection_the_server_closed_while_idle_is_not_lent(pg_url: str) -> None:
    """The server ends idle sessions after 300 ms here: its goodbye waits on the socket, so the pool's
    connection is replaced before it is lent, and every call after the pause succeeds."""
    from corral.store.postgres import PostgresStore

    url = pg_url.replace("options=", "options=-cidle_session_timeout%3D300%20", 1)
    store = PostgresStore(url, pool_size=1)
    store.append("s1", {"id": "r1"})
    time.sleep(0.8)
    store.append("s1", {"id": "r2"})
    store.reserve([("agent:a", Decimal(1))], Decimal("0.25"), LATER)
    time.sleep(0.8)
    assert _ids(store, "s1") == ["r1", "r2"]
    assert store.usage(["agent:a"]) == [(Decimal(0), Decimal("0.25"))]
    store.close()
