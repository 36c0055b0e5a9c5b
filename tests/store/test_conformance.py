"""One conformance suite for every store: the memory store is the reference, the SQL stores must match it;
and the kernel end to end on each of them.

Each test runs against memory, SQLite and PostgreSQL (``backend``); the tests that need a second
process or a second instance on the same data run against the durable stores (``durable_backend``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from corral import ApprovalPending, Call, Governor, TransactionFailed
from corral.ids import new_id
from corral.store import Store
from corral.store.audit import verify_chain, verify_session

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def test_every_store_is_a_store(store: Any) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.url, str)


# ------------------------------------------------------------------------------------------ sessions


def test_sessions_are_upserted_listed_and_copied(store: Any) -> None:
    a = {"id": "s-a", "agent": "desk", "principal": "alice", "roles": ["agent"], "phase": "explore",
         "plan": None, "plans": [], "created": "2026-11-24T10:00:00Z"}
    b = {**a, "id": "s-b", "agent": "other"}
    c = {**a, "id": "s-c"}
    for record in (a, b, c):
        store.put_session(record)
    assert store.get_session("s-a") == a
    assert store.get_session("nope") is None
    assert [s["id"] for s in store.list_sessions()] == ["s-a", "s-b", "s-c"]
    assert [s["id"] for s in store.list_sessions("desk")] == ["s-a", "s-c"]
    assert store.list_sessions("nobody") == []
    store.put_session({**a, "phase": "decide", "plan": "p1"})  # an upsert keeps the session's place
    assert store.get_session("s-a")["phase"] == "decide"
    assert [s["id"] for s in store.list_sessions()] == ["s-a", "s-b", "s-c"]
    got = store.get_session("s-a")
    got["phase"] = "mutated"
    assert store.get_session("s-a")["phase"] == "decide"


# --------------------------------------------------------------------------------------- audit chain


def _trace(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": new_id(), "kind": "call", "tool": f"t{i}", "decision": "allowed", "args": {"n": i},
            "outcome": {"status": "ok", "cost": 0.01 * i}, **extra}


def test_append_seals_records_into_a_chain_per_session(store: Any) -> None:
    first = store.append("s1", _trace(1))
    assert first["prev"] == "" and len(first["hash"]) == 64
    second = store.append("s1", _trace(2))
    assert second["prev"] == first["hash"]
    other = store.append("s2", _trace(3))
    assert other["prev"] == ""
    records = store.records("s1")
    assert [r["tool"] for r in records] == ["t1", "t2"]
    assert records == [first, second]
    assert store.head("s1") == second["hash"]
    assert verify_chain(records, store.head("s1")) == (True, None, "intact")
    assert store.records("unknown") == [] and store.head("unknown") is None


def test_records_survive_the_round_trip_and_still_verify(store: Any) -> None:
    odd = {"ints": {1: "a", 10: "b", 2: "c"}, "unicode": "€ ✓ 日本", "nul": "a\x00b", "float": 0.1 + 0.2,
           "big": 10**30, "nested": [{"x": None, "y": True}], "tuple": (1, 2), "decimal": Decimal("0.01")}
    store.append("s1", _trace(1, args=odd))
    store.append("s1", _trace(2), durable=False)
    records = store.records("s1")
    assert verify_chain(records, store.head("s1"))[0], verify_chain(records)
    assert records[0]["args"]["unicode"] == "€ ✓ 日本" and records[0]["args"]["nul"] == "a\x00b"


def test_the_chain_outline_is_the_records_cut_down_to_what_a_resume_reads(store: Any) -> None:
    from corral.store.protocol import outline

    def call(i: int, **extra: Any) -> dict[str, Any]:
        return {"id": new_id(), "kind": "call", "ts": f"2026-01-01T00:00:0{i}.000Z", "tool": f"t{i}",
                "decision": "allowed", "args": {"ref": "an argument, not the ref"}, **extra}

    decision = store.append("s1", call(1))
    store.append("s1", {"id": new_id(), "kind": "outcome", "ts": "2026-01-01T00:00:01.500Z", "session": "s1",
                        "ref": decision["id"], "outcome": {"status": "ok", "labels": ["pii"], "cost": 0.5}})
    store.append("s1", call(2, outcome={"status": "ok", "error": None}), durable=False)  # a read, inline
    store.append("s1", call(3, kind="phase", decision=None))
    store.append("s1", call(4, decision="blocked", reason="no"))
    records = store.records("s1")
    cut = store.chain_outline("s1")
    assert cut == [outline(r) for r in records]
    assert [c["kind"] for c in cut] == ["call", "outcome", "call", "phase", "call"]
    assert cut[1]["ref"] == decision["id"] and cut[1]["outcome"]["labels"] == ["pii"]
    assert "ref" not in cut[0] and "outcome" not in cut[0] and cut[2]["outcome"] == {"status": "ok", "error": None}
    assert cut[3]["decision"] is None
    assert cut[4] == {"kind": "call", "id": records[4]["id"], "tool": "t4", "ts": "2026-01-01T00:00:04.000Z",
                      "decision": "blocked"}
    assert store.chain_outline("unknown") == []


def test_group_committed_reads_keep_call_order(store: Any) -> None:
    sealed = []
    for i in range(10):
        sealed.append(store.append("s1", _trace(i), durable=i % 3 == 0))
    store.append("s2", _trace(99), durable=False)
    records = store.records("s1")  # records() writes what is buffered first
    assert [r["tool"] for r in records] == [f"t{i}" for i in range(10)]
    assert verify_chain(records, store.head("s1"))[0]
    assert [r["hash"] for r in sealed] == [r["hash"] for r in records]  # the caller's dicts are sealed too
    assert [r["tool"] for r in store.records("s2")] == ["t99"]


def test_many_buffered_reads_from_many_threads(store: Any) -> None:
    def work(n: int) -> None:
        for i in range(50):
            store.append(f"s{n % 2}", _trace(i, worker=n), durable=(i % 10 == 9))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    for parity, sid in enumerate(("s0", "s1")):
        records = store.records(sid)
        assert len(records) == 150
        assert verify_chain(records, store.head(sid))[0]
        for n in range(parity, 6, 2):  # within a thread, chain order is call order
            assert [r["tool"] for r in records if r["worker"] == n] == [f"t{i}" for i in range(50)]


def _tamper(backend: Any, store: Any, session: str, how: str) -> None:
    """Change the stored chain under the store, the way an attacker with database access would."""
    if backend.kind == "memory":
        chain = store._chains[session]
        if how == "edit":
            chain[1]["decision"] = "blocked"
        elif how == "delete":
            del chain[1]
        elif how == "reorder":
            chain[1], chain[2] = chain[2], chain[1]
        elif how == "truncate":
            del chain[-1]
        return
    if how == "edit":
        (text,) = backend.sql("SELECT record FROM audit WHERE session_id = ? AND seq = 2", (session,))[0]
        backend.sql("UPDATE audit SET record = ? WHERE session_id = ? AND seq = 2",
                    (text.replace('"allowed"', '"blocked"'), session))
    elif how == "delete":
        backend.sql("DELETE FROM audit WHERE session_id = ? AND seq = 2", (session,))
    elif how == "reorder":
        backend.sql("UPDATE audit SET seq = -1 WHERE session_id = ? AND seq = 2", (session,))
        backend.sql("UPDATE audit SET seq = 2 WHERE session_id = ? AND seq = 3", (session,))
        backend.sql("UPDATE audit SET seq = 3 WHERE session_id = ? AND seq = -1", (session,))
    elif how == "truncate":
        backend.sql("DELETE FROM audit WHERE session_id = ? AND seq = 4", (session,))


@pytest.mark.parametrize(("how", "index", "why"), [
    ("edit", 1, "edited"),
    ("delete", 1, "deleted or reordered"),
    ("reorder", 1, "deleted or reordered"),
    ("truncate", 3, "truncated"),
])
def test_the_chain_detects_tampering(backend: Any, how: str, index: int, why: str) -> None:
    store = backend.open()
    for i in range(4):
        store.append("s1", _trace(i), durable=i != 2)
    assert verify_chain(store.records("s1"), store.head("s1"))[0]
    _tamper(backend, store, "s1", how)
    ok, bad, reason = verify_chain(store.records("s1"), store.head("s1"))
    assert not ok and bad == index and why in reason


def test_find_record_across_sessions(store: Any) -> None:
    a = store.append("s1", _trace(1))
    b = store.append("s2", _trace(2), durable=False)
    store.append("s2", {"kind": "outcome", "id": 7})  # an id that is not a string is never found by one
    found = store.find_record(b["id"])  # a buffered record is written first
    assert found is not None and found["tool"] == "t2" and found["hash"] == b["hash"]
    assert store.find_record(a["id"]) == a
    assert store.find_record("7") is None and store.find_record("nope") is None


def test_scan_records_streams_chains_unparsed_per_agent_and_session(backend: Any) -> None:
    import json

    store = backend.open()
    store.put_session({"id": "s2", "agent": "a"})
    store.put_session({"id": "s1", "agent": "a"})
    store.put_session({"id": "s3", "agent": "b"})
    for i in range(3):
        store.append("s1", _trace(i))
    store.append("s2", _trace(9), durable=False)  # buffered: written before the scan reads
    store.append("s3", _trace(5))

    def read(raw: Any) -> dict[str, Any]:
        return raw if isinstance(raw, dict) else json.loads(raw)

    rows = list(store.scan_records(agent="a"))
    assert [(sid, seq, read(raw)["tool"]) for sid, seq, raw in rows] == [
        ("s1", 1, "t0"), ("s1", 2, "t1"), ("s1", 3, "t2"), ("s2", 1, "t9")
    ]
    assert [(sid, seq) for sid, seq, _ in store.scan_records(session="s3")] == [("s3", 1)]
    assert list(store.scan_records(agent="a", session="s3")) == []
    assert len(list(store.scan_records())) == 5
    if backend.durable:  # a corrupt row comes out as it is stored, for the reader to judge
        backend.sql("UPDATE audit SET record = ? WHERE session_id = ? AND seq = ?", ("{not json", "s1", 2))
        assert [raw for sid, seq, raw in store.scan_records(session="s1")][1] == "{not json"


def test_heads_are_signed_when_a_key_is_set(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_AUDIT_KEY", "sekrit")
    store = backend.open()
    store.put_session({"id": "s1", "agent": "desk"})
    for i in range(3):
        store.append("s1", _trace(i), durable=i != 1)
    assert store.head_signature("s1") is not None and store.head_signature("none") is None
    assert verify_session(store, "s1")["ok"]
    if backend.kind == "memory":
        store._signatures["s1"] = "0" * 64
    else:
        backend.sql("UPDATE heads SET hmac = ? WHERE session_id = ?", ("0" * 64, "s1"))
    report = verify_session(store, "s1")
    assert not report["ok"] and "HMAC" in report["why"]
    monkeypatch.setenv("CORRAL_AUDIT_KEY", "another key")
    assert not verify_session(store, "s1")["ok"]


def test_heads_are_unsigned_without_a_key(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_AUDIT_KEY", raising=False)
    store = backend.open()
    store.put_session({"id": "s1", "agent": "desk"})
    store.append("s1", _trace(1))
    assert store.head_signature("s1") is None and verify_session(store, "s1")["ok"]


def _delete_chain(backend: Any, store: Any, sid: str) -> None:
    """What an attacker with the database does: every audit row and the head of one session, gone."""
    if backend.kind == "memory":
        store._chains.pop(sid, None)
        store._heads.pop(sid, None)
        store._signatures.pop(sid, None)
        store._opened.discard(sid)
    else:
        backend.sql("DELETE FROM audit WHERE session_id = ?", (sid,))
        backend.sql("DELETE FROM heads WHERE session_id = ?", (sid,))


def _delete_session(backend: Any, store: Any, sid: str) -> None:
    if backend.kind == "memory":
        store._sessions.pop(sid)
    else:
        backend.sql("DELETE FROM sessions WHERE id = ?", (sid,))


@pytest.mark.parametrize("key", [None, "sekrit"])
def test_a_session_whose_whole_chain_was_deleted_is_tampering_not_an_empty_session(
        backend: Any, monkeypatch: pytest.MonkeyPatch, key: str | None) -> None:
    from corral.store.audit import verify_store

    if key:
        monkeypatch.setenv("CORRAL_AUDIT_KEY", key)
    else:
        monkeypatch.delenv("CORRAL_AUDIT_KEY", raising=False)
    store = backend.open()
    for sid in ("fresh", "used"):
        store.put_session({"id": sid, "agent": "desk"})
    for i in range(3):
        store.append("used", _trace(i))
    assert verify_session(store, "fresh") == {"session": "fresh", "ok": True, "records": 0, "bad_index": None,
                                              "bad_record": None, "why": "intact"}
    assert verify_session(store, "used")["ok"]
    _delete_chain(backend, store, "used")
    report = verify_session(store, "used")
    assert not report["ok"] and "missing" in report["why"], report
    assert [(r["session"], r["ok"]) for r in verify_store(store)] == [("fresh", True), ("used", False)]


def test_a_chain_without_its_session_is_tampering(backend: Any) -> None:
    from corral.store.audit import verify_store

    store = backend.open()
    store.put_session({"id": "s1", "agent": "desk"})
    store.append("s1", _trace(1))
    _delete_session(backend, store, "s1")
    [report] = verify_store(store)
    assert report["session"] == "s1" and not report["ok"] and "without its session" in report["why"]


def test_a_replaced_empty_head_is_caught_by_its_signature(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_AUDIT_KEY", "sekrit")
    store = backend.open()
    store.put_session({"id": "s1", "agent": "desk"})
    store.append("s1", _trace(1))
    if backend.kind == "memory":  # the attacker empties the chain and writes an empty head without the key
        store._chains.pop("s1")
        store._heads.pop("s1")
        store._signatures.pop("s1")
    else:
        backend.sql("DELETE FROM audit WHERE session_id = ?", ("s1",))
        backend.sql("UPDATE heads SET seq = 0, head = '', hmac = NULL WHERE session_id = ?", ("s1",))
    report = verify_session(store, "s1")
    assert not report["ok"], report


# -------------------------------------------------------------------------------------- open calls


def test_an_open_call_is_closed_exactly_once(store: Any) -> None:
    from corral.store import Append, CloseCall, OpenCall

    store.put_session({"id": "s1", "agent": "desk"})
    doc = {"tool": "t", "effect": "read", "estimate": "0.5"}
    assert store.batch([Append("s1", _trace(1)), OpenCall("c1", "s1", LATER, doc)]) is not None
    store.batch([OpenCall("c2", "s1", NOW, doc)])
    found = store.get_open_call("c1")
    assert found == {**doc, "id": "c1", "session": "s1", "expires": "2026-11-24T10:05:00.000Z"}
    assert [c["id"] for c in store.open_calls()] == ["c1", "c2"]
    assert [c["id"] for c in store.open_calls(before=NOW + timedelta(minutes=1))] == ["c2"]
    outcome = {"id": new_id(), "kind": "outcome", "ref": "c1"}
    assert store.batch([Append("s1", outcome), CloseCall("c1")]) is not None
    assert store.get_open_call("c1") is None
    again = {"id": new_id(), "kind": "outcome", "ref": "c1"}
    assert store.batch([Append("s1", again), CloseCall("c1")]) is None  # finished already: nothing written
    assert [r["id"] for r in store.records("s1")] == [r["id"] for r in store.records("s1")[:2]]
    assert len(store.records("s1")) == 2


def test_buffered_reads_are_written_by_the_background_flusher(durable_backend: Any) -> None:
    store = durable_backend.open(flush_interval=0.02)
    store.append("s1", _trace(1), durable=False)
    other = durable_backend.open()
    deadline = time.monotonic() + 5
    while not other.records("s1") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r["tool"] for r in other.records("s1")] == ["t1"]


def test_a_full_batch_is_written_at_once(durable_backend: Any) -> None:
    store = durable_backend.open(batch_size=5, flush_interval=60)
    for i in range(5):
        store.append("s1", _trace(i), durable=False)
    other = durable_backend.open()
    deadline = time.monotonic() + 5
    while len(other.records("s1")) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(other.records("s1")) == 5


def test_close_writes_buffered_reads(durable_backend: Any) -> None:
    store = durable_backend.open(flush_interval=60)
    store.append("s1", _trace(1), durable=False)
    store.close()
    assert [r["tool"] for r in durable_backend.open().records("s1")] == ["t1"]
    store.append("s1", _trace(2))  # a closed store reopens on use, as the memory store goes on working
    assert len(durable_backend.open().records("s1")) == 2


def test_two_instances_extend_one_chain(durable_backend: Any) -> None:
    a, b = durable_backend.open(), durable_backend.open()
    for i in range(6):
        (a if i % 2 else b).append("s1", _trace(i), durable=i != 3)
    a.flush()
    b.flush()
    records = a.records("s1")
    assert len(records) == 6 and verify_chain(records, b.head("s1"))[0]


# ------------------------------------------------------------------------------------------ ledger

D = Decimal


def test_reserve_is_all_or_nothing_across_scopes(store: Any) -> None:
    scopes = [("session:s1", D("1.00")), ("agent:desk", D("10.00"))]
    r1 = store.reserve(scopes, D("0.60"), LATER)
    assert r1 is not None
    assert store.usage(["session:s1", "agent:desk"]) == [(D(0), D("0.60")), (D(0), D("0.60"))]
    # the session scope is too small: nothing is reserved anywhere
    assert store.reserve(scopes, D("0.50"), LATER) is None
    assert store.usage(["session:s1", "agent:desk"]) == [(D(0), D("0.60")), (D(0), D("0.60"))]
    # the agent scope is too small for another session's call: nothing is reserved in its session scope
    assert store.reserve([("session:s2", D("100")), ("agent:desk", D("1.00"))], D("0.50"), LATER) is None
    assert store.usage(["session:s2"]) == [(D(0), D(0))]
    # filling a scope exactly fits; one cent more does not
    r2 = store.reserve(scopes, D("0.40"), LATER)
    assert r2 is not None and r2 != r1
    assert store.reserve(scopes, D("0.01"), LATER) is None
    assert store.reserve(scopes, D("0"), LATER) is not None  # a free call fits a full budget


def test_settle_release_and_usage(store: Any) -> None:
    scopes = [("session:s1", D("5")), ("tenant:t", D("50"))]
    rid = store.reserve(scopes, D("0.30"), LATER)
    store.settle(rid, D("0.25"))
    assert store.usage(["session:s1", "tenant:t", "none"]) == [(D("0.25"), D(0)), (D("0.25"), D(0)), (D(0), D(0))]
    store.settle(rid, D("9"))  # settled already: a no-op
    store.release(rid)
    assert store.usage(["session:s1"]) == [(D("0.25"), D(0))]
    rid = store.reserve(scopes, D("1.10"), LATER)
    store.release(rid)
    store.release(rid)
    store.release("no-such-reservation")
    store.settle("no-such-reservation", D(1))
    assert store.usage(["session:s1", "tenant:t"]) == [(D("0.25"), D(0)), (D("0.25"), D(0))]
    rid = store.reserve(scopes, D("1"), LATER)
    store.settle(rid, D("1.50"))  # a call may cost more than estimated; the ledger says so
    assert store.usage(["session:s1"]) == [(D("1.75"), D(0))]


def test_release_expired(store: Any) -> None:
    scopes = [("session:s1", D("5"))]
    early = store.reserve(scopes, D("1"), NOW)
    store.reserve(scopes, D("2"), NOW + timedelta(seconds=1))
    assert store.release_expired(NOW - timedelta(seconds=1)) == 0
    assert store.release_expired(NOW) == 1  # expiry at exactly now counts as expired
    assert store.usage(["session:s1"]) == [(D(0), D(2))]
    store.settle(early, D(1))  # released already: settling it changes nothing
    assert store.usage(["session:s1"]) == [(D(0), D(2))]
    assert store.release_expired(NOW + timedelta(hours=1)) == 1
    assert store.usage(["session:s1"]) == [(D(0), D(0))]
    assert store.release_expired(NOW + timedelta(hours=2)) == 0


def test_decimals_stay_exact_over_thousands_of_reservations(store: Any) -> None:
    limit = D("105.00")
    scopes = [("session:s1", limit), ("agent:desk", D("1000"))]
    ids = []
    for _ in range(1500):
        rid = store.reserve(scopes, D("0.07"), NOW)
        assert rid is not None
        ids.append(rid)
    assert store.reserve(scopes, D("0.01"), NOW) is None  # exactly full: 1500 × 0.07 = 105.00
    spent, reserved = store.usage(["session:s1"])[0]
    assert (spent, reserved) == (D(0), D("105.00"))
    for rid in ids[:300]:
        store.settle(rid, D("0.03"))
    assert store.release_expired(NOW) == 1200
    assert store.usage(["session:s1", "agent:desk"]) == [(D("9.00"), D(0)), (D("9.00"), D(0))]
    assert sum([0.07] * 1500) != 105.0  # what floats would have made of it


def test_reservations_from_many_threads_never_pass_the_limit(store: Any) -> None:
    scopes = [("agent:desk", D("1.00")), ("tenant:t", D("2.00"))]
    granted = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(30):
            rid = store.reserve(scopes, D("0.01"), LATER)
            if rid is not None:
                with lock:
                    granted.append(rid)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100 and len(set(granted)) == 100
    assert store.usage(["agent:desk", "tenant:t"]) == [(D(0), D("1.00")), (D(0), D("1.00"))]


# ----------------------------------------------------------------------------------------- approvals


def _approval(aid: str, **extra: Any) -> dict[str, Any]:
    return {"id": aid, "binding": "b1", "session": "s1", "tool": "refund", "args": {"amount": 120},
            "status": "pending", "created": "2026-11-24T10:00:00Z", "expires": "2026-11-24T10:15:00Z", **extra}


def test_approvals_put_get_find(store: Any) -> None:
    store.put_approval(_approval("a1"))
    store.put_approval(_approval("a2", binding="b2", status="approved"))
    store.put_approval(_approval("a3", session="s2"))
    assert store.get_approval("a1") == _approval("a1")
    assert store.get_approval("nope") is None
    assert [a["id"] for a in store.find_approvals()] == ["a1", "a2", "a3"]
    assert [a["id"] for a in store.find_approvals(binding="b1")] == ["a1", "a3"]
    assert [a["id"] for a in store.find_approvals(session="s1")] == ["a1", "a2"]
    assert [a["id"] for a in store.find_approvals(status="pending")] == ["a1", "a3"]
    assert [a["id"] for a in store.find_approvals(binding="b1", session="s1", status="pending")] == ["a1"]
    assert store.find_approvals(status="used") == []


def test_resolve_approval_is_compare_and_set(store: Any) -> None:
    store.put_approval(_approval("a1"))
    assert store.resolve_approval("a1", "approved", {"status": "used"}) is False
    assert store.get_approval("a1")["status"] == "pending"
    assert store.resolve_approval("a1", "pending", {"status": "approved", "approver": "bob"}) is True
    found = store.get_approval("a1")
    assert found["status"] == "approved" and found["approver"] == "bob" and found["tool"] == "refund"
    assert [a["id"] for a in store.find_approvals(status="approved")] == ["a1"]
    assert store.resolve_approval("a1", "pending", {"status": "denied"}) is False
    assert store.resolve_approval("a1", "approved", {"status": "used"}) is True
    assert store.resolve_approval("a1", "approved", {"status": "used"}) is False  # single use
    assert store.resolve_approval("missing", "pending", {"status": "used"}) is False


def test_only_one_of_many_racing_resolvers_wins(backend: Any) -> None:
    store = backend.open()
    store.put_approval(_approval("a1"))
    stores = [backend.open() for _ in range(4)]
    results: dict[int, bool] = {}
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        results[n] = stores[n % 4].resolve_approval("a1", "pending", {"status": "used", "by": n})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False] * 7 + [True]
    assert results[store.get_approval("a1")["by"]] is True


# -------------------------------------------------------------------------------------- transactions


def test_transactions_and_their_log(store: Any) -> None:
    store.put_transaction({"id": "tx1", "session": "s1", "state": "open", "owner": {"pid": 1}})
    store.put_transaction({"id": "tx2", "session": "s1", "state": "open"})
    store.put_transaction({"id": "tx3", "session": "s2", "state": "committed"})
    store.update_transaction("tx1", {"state": "rolling_back", "lease_until": "2026-11-24T10:05:00Z"})
    tx1 = store.get_transaction("tx1")
    assert tx1 == {"id": "tx1", "session": "s1", "state": "rolling_back", "owner": {"pid": 1},
                   "lease_until": "2026-11-24T10:05:00Z"}
    assert store.get_transaction("nope") is None
    assert [t["id"] for t in store.transactions()] == ["tx1", "tx2", "tx3"]
    assert [t["id"] for t in store.transactions(["open", "rolling_back"])] == ["tx1", "tx2"]
    assert [t["id"] for t in store.transactions(states=["committed"])] == ["tx3"]
    assert store.transactions(states=[]) == []
    for status in ("INTENT", "DONE", "COMPENSATING", "COMPENSATED"):
        store.log_step("tx1", {"seq": 1, "status": status, "tool": "refund", "args": {"amount": 20}})
    store.log_step("tx2", {"seq": 1, "status": "INTENT"})
    assert [e["status"] for e in store.steps("tx1")] == ["INTENT", "DONE", "COMPENSATING", "COMPENSATED"]
    assert store.steps("tx1")[0]["args"] == {"amount": 20}
    assert [e["status"] for e in store.steps("tx2")] == ["INTENT"]
    assert store.steps("tx9") == []


def test_close_then_everything_is_still_there(durable_backend: Any) -> None:
    store = durable_backend.open()
    store.put_session({"id": "s1", "agent": "desk"})
    store.append("s1", _trace(1))
    rid = store.reserve([("session:s1", D(1))], D("0.5"), LATER)
    store.put_approval(_approval("a1"))
    store.put_transaction({"id": "tx1", "state": "open"})
    store.log_step("tx1", {"status": "INTENT"})
    store.close()
    again = durable_backend.open()
    assert again.get_session("s1") == {"id": "s1", "agent": "desk"}
    assert len(again.records("s1")) == 1
    assert again.usage(["session:s1"]) == [(D(0), D("0.5"))]
    again.settle(rid, D("0.5"))
    assert again.usage(["session:s1"]) == [(D("0.5"), D(0))]
    assert again.get_approval("a1")["status"] == "pending"
    assert again.steps("tx1") == [{"status": "INTENT"}]


# ---------------------------------------------------------------------------------- long-term memory
# (its own suite, over every store: tests/store/test_memory_search.py)


# ------------------------------------------------------------------------- the kernel, end to end

RULES = """
REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
FLAG lookup_order WHEN arg.order_id IS A9
"""


@dataclass
class World:
    reads: list[str] = field(default_factory=list)
    refunds: list[tuple[str, float]] = field(default_factory=list)
    voided: list[tuple[str, str]] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)


def build(target: Any, world: World) -> Governor:
    gov = Governor(agent="desk", budget={"session": 5, "agent": 100}, rules=RULES, store=target)

    def lookup_order(order_id: str) -> dict[str, Any]:
        world.reads.append(order_id)
        return {"order_id": order_id, "total": 200}

    def issue_refund(order_id: str, amount: float) -> dict[str, Any]:
        world.refunds.append((order_id, amount))
        return {"refund": f"R-{order_id}"}

    def void_refund(call: Call) -> None:
        world.voided.append((call.args["order_id"], call.result["refund"]))

    def send_email(to: str, body: str) -> str:
        world.emails.append(to)
        return "sent"

    gov.register("lookup_order", lookup_order, effect="read")
    gov.register("issue_refund", issue_refund, effect="reversible", cost=0.01, compensate=void_refund)
    gov.register("send_email", send_email, effect="irreversible", cost=0.10)
    return gov


def test_a_session_end_to_end_and_resumed_by_a_new_governor(backend: Any) -> None:
    world = World()
    gov = build(backend.target, world)
    s = gov.session("alice", roles=["agent"])
    with s.explore():
        for order in ("A1", "A2", "A9"):
            s.call("lookup_order", order_id=order)
    with s.decide():
        plan = s.propose([{"tool": "issue_refund", "args": {"order_id": "A1", "amount": 20}},
                          {"tool": "send_email", "args": {"to": "*", "body": "*"}}])
    with s.commit(plan=plan) as tx:
        tx.call("issue_refund", order_id="A1", amount=20)
        tx.defer("send_email", to="a@b.c", body="refunded")
    assert tx.state == "committed"

    s.back_to("decide")
    with pytest.raises(TransactionFailed), s.commit() as tx:  # a commit that rolls back: A2 is compensated
        tx.call("issue_refund", order_id="A2", amount=30)
        raise RuntimeError("the customer changed their mind")
    assert tx.state == "rolled_back" and world.voided == [("A2", "R-A2")]

    s.back_to("decide")
    with s.commit() as tx:  # an approval: pending, approved elsewhere, then run exactly once
        with pytest.raises(ApprovalPending) as pending:
            tx.call("issue_refund", order_id="A3", amount=150)
    request = pending.value.request
    other = build(backend.target, World())  # another process's governor on the same store approves
    assert [r.id for r in other.pending_approvals()] == [request.id]
    other.approve(request.id, approver="bob", reason="checked the receipt")
    s.back_to("decide")
    with s.commit() as tx:
        tx.call("issue_refund", order_id="A3", amount=150)
        with pytest.raises(ApprovalPending):  # single use: the same call needs a new approval
            tx.call("issue_refund", order_id="A3", amount=150)
    assert world.refunds == [("A1", 20), ("A2", 30), ("A3", 150)] and world.emails == ["a@b.c"]
    assert world.reads == ["A1", "A2", "A9"]

    decisions = [t.decision for t in s.traces if t.kind == "call"]
    assert decisions[:3] == ["allowed", "allowed", "flagged"]
    assert "approved" in decisions and decisions.count("pending") == 2
    budget = s.budget
    assert budget.spent == pytest.approx(0.01 * 3 + 0.10) and budget.reserved == 0

    with s.decide():  # leave the session in decide, with a plan proposed for the next commit
        plan2 = s.propose([{"tool": "issue_refund", "args": {"order_id": "A4", "amount": 5}}], rationale="next")

    resumed_world = World()
    fresh = build(backend.target, resumed_world)  # a new governor, as after a restart
    again = fresh.session(id=s.id)
    assert again.phase == s.phase == "decide"
    assert again.plan is not None and again.plan.id == plan2.id and again.plan.sha256 == plan2.sha256
    assert set(again.plans) == {plan.id, plan2.id}
    assert again.budget.to_dict() == budget.to_dict()
    assert [t.to_dict() for t in again.traces] == [t.to_dict() for t in s.traces]
    records = fresh.store.records(s.id)
    assert verify_chain(records, fresh.store.head(s.id))[0] and verify_session(fresh.store, s.id)["ok"]
    with again.commit(plan=again.plan) as tx:
        tx.call("issue_refund", order_id="A4", amount=5)
    assert resumed_world.refunds == [("A4", 5)] and len(s.traces) == len(again.traces)
    assert again.budget.spent == pytest.approx(budget.spent + 0.01)
    for g in (gov, other, fresh):
        g.close()
