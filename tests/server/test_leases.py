"""Session leases: one run per session across servers, renewed while it runs, claimed for recovery."""

from __future__ import annotations

from datetime import timedelta

import pytest

from corral.server.leases import LeaseLost, Leases, session_key
from corral.store.memory import MemoryStore


def test_a_session_is_run_by_one_holder_at_a_time() -> None:
    store = MemoryStore()
    a, b = Leases(store, ttl=30, holder="a"), Leases(store, ttl=30, holder="b")
    a.acquire("s1")
    with pytest.raises(LeaseLost, match="on this server"):
        a.acquire("s1")
    with pytest.raises(LeaseLost, match=r"another server \(a\)"):
        b.acquire("s1")
    assert a.holds("s1") and not b.holds("s1") and b.running_elsewhere("s1")
    a.release("s1")
    b.acquire("s1")
    assert store.get_lease(session_key("s1"))["holder"] == "b"


def test_renewal_moves_the_lease_and_stamps_the_open_transaction() -> None:
    store = MemoryStore()
    store.put_session({"id": "s1", "agent": "x", "phase": "commit", "tx": "t1"})
    store.put_transaction({"id": "t1", "session": "s1", "state": "open"})
    leases = Leases(store, ttl=30, holder="a")
    leases.acquire("s1")
    before = store.get_lease(session_key("s1"))["expires_at"]
    leases.renew_all()
    after = store.get_lease(session_key("s1"))["expires_at"]
    assert after >= before
    stamp = store.get_transaction("t1")["lease_until"]
    assert stamp.startswith(str(after.year)) and stamp.endswith("Z")


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops_renewing() -> None:
    store = MemoryStore()
    a, b = Leases(store, ttl=30, holder="a"), Leases(store, ttl=30, holder="b")
    a.acquire("s1")
    lease = store.get_lease(session_key("s1"))
    store.acquire_lease(session_key("s1"), "a", lease["expires_at"], lease["expires_at"] - timedelta(seconds=60))
    b.acquire("s1")  # a's lease ran out (a died)
    a.renew_all()  # a's keeper finds the lease gone and leaves it
    assert store.get_lease(session_key("s1"))["holder"] == "b"


def test_recovery_claims_a_transaction_only_when_nobody_runs_its_session() -> None:
    store = MemoryStore()
    a, b = Leases(store, ttl=30, holder="a"), Leases(store, ttl=30, holder="b")
    a.acquire("s1")
    assert b.claim_for_recovery({"id": "t1", "session": "s1"}) is None  # a runs it
    assert a.claim_for_recovery({"id": "t1", "session": "s1"}) is None  # a's own run: not abandoned
    done = b.claim_for_recovery({"id": "t2", "session": "s2"})
    assert done is not None and store.get_lease(session_key("s2"))["holder"] == "b"
    with pytest.raises(LeaseLost):
        a.acquire("s2")  # no run starts while b recovers it
    done()
    a.acquire("s2")
    assert b.claim_for_recovery({"id": "t3"}) is None
