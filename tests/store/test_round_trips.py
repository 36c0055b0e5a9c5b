"""PostgreSQL: the usual write is one round trip — its COMMIT's — and a head another writer moved is read.

A write seals its records onto the chain head this process last wrote, and the statement that moves the
head checks it is still there; a reservation's room and gate are checked by the statement that takes it.
So nothing is read before the write, and the whole transaction goes out with its COMMIT. Counted by a
real TCP relay in front of a real PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from corral import Governor
from corral.store.audit import verify_chain
from corral.store.protocol import Append, LogStep, Reserve, Settle

LATER = datetime.now(UTC) + timedelta(days=1)


def _store(url: str) -> Any:
    from corral.store.postgres import PostgresStore

    return PostgresStore(url)


def test_a_durable_append_is_one_round_trip_once_the_head_is_known(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.usage(["warm"])  # the pool's first connection is open
    assert relay.round_trips(lambda: store.append("s1", {"id": "r1"})) >= 2  # the head read, then the write
    assert relay.round_trips(lambda: store.append("s1", {"id": "r2"})) == 1
    assert relay.round_trips(lambda: store.append("s1", {"id": "r3"})) == 1
    records = store.records("s1")
    assert [r["id"] for r in records] == ["r1", "r2", "r3"]
    assert verify_chain(records, store.head("s1"))[0]
    store.close()


def test_a_reservation_and_its_settlement_are_one_round_trip_each(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.usage(["warm"])
    box: dict[str, Any] = {}
    assert relay.round_trips(lambda: box.update(rid=store.reserve([("agent:a", Decimal(1))], Decimal("0.4"), LATER))) == 1
    assert relay.round_trips(lambda: store.settle(box["rid"], Decimal("0.1"))) == 1
    assert store.usage(["agent:a"]) == [(Decimal("0.1"), Decimal(0))]
    store.close()


def test_a_reservation_without_room_or_past_its_gate_writes_nothing_of_its_batch(relayed: Any) -> None:
    relay, url = relayed
    store = _store(url)
    store.append("s1", {"id": "r1"})
    assert store.batch([Reserve([("agent:a", Decimal(1))], Decimal("0.75"), LATER), Append("s1", {"id": "r2"})])
    refused = [Reserve([("agent:a", Decimal(1))], Decimal("0.5"), LATER), Append("s1", {"id": "r3"})]
    assert store.batch(refused) is None  # no room: 0.75 + 0.5 > 1
    gated = [Reserve([("agent:a", Decimal(1))], Decimal("0.1"), LATER, gate=Decimal("0.7")), Append("s1", {"id": "r4"})]
    assert store.batch(gated) is None  # 0.75 used is past a 70 % gate
    assert store.batch([Reserve([("agent:a", Decimal(1))], Decimal("0.25"), LATER), Append("s1", {"id": "r5"})])
    assert store.usage(["agent:a"]) == [(Decimal(0), Decimal(1))]  # exactly full, never over
    records = store.records("s1")
    assert [r["id"] for r in records] == ["r1", "r2", "r5"]
    assert verify_chain(records, store.head("s1"))[0]
    store.close()


def test_two_stores_writing_one_session_in_turn_each_find_the_others_head(pg_url: str) -> None:
    a, b = _store(pg_url), _store(pg_url)
    for n in range(12):
        writer = a if n % 2 == 0 else b
        out = writer.batch([Reserve([("agent:x", Decimal(100))], Decimal("0.01"), LATER),
                            Append("s1", {"id": f"r{n}"}), LogStep("tx1", {"n": n})])
        assert out is not None
        writer.settle(out[0], Decimal("0.01"))
    records = a.records("s1")
    assert [r["id"] for r in records] == [f"r{n}" for n in range(12)]
    assert verify_chain(records, a.head("s1"))[0] and verify_chain(records, b.head("s1"))[0]
    assert [step["n"] for step in a.steps("tx1")] == list(range(12))
    assert a.usage(["agent:x"]) == [(Decimal("0.12"), Decimal(0))]
    a.close()
    b.close()


def test_a_governed_durable_write_is_three_round_trips(relayed: Any) -> None:
    """The budget read before the decision; decision, reservation and INTENT; outcome, settlement and DONE."""
    relay, url = relayed
    gov = Governor(agent="desk", budget=10.0, store=url)
    gov.register("refund", lambda: "ok", effect="reversible", compensate=lambda call: None, cost=0.01)
    s = gov.session("alice")
    s.back_to("decide")
    tx = s.begin_commit()
    tx.call("refund")
    assert relay.round_trips(lambda: tx.call("refund")) == 3
    assert relay.round_trips(lambda: tx.call("refund")) == 3
    assert s.budget.spent == pytest.approx(0.03)
    gov.close()


def test_a_settlement_of_an_unknown_reservation_changes_nothing(relayed: Any) -> None:
    _, url = relayed
    store = _store(url)
    store.batch([Settle("no-such-reservation", Decimal(1))])
    assert store.usage(["agent:a"]) == [(Decimal(0), Decimal(0))]
    store.close()
