"""``store.batch``: several writes as one transaction, all or nothing, on every store.

The kernel writes a governed call's reservation, decision and INTENT as one batch, and its settlement,
DONE and outcome as another; these tests hold each store to the batch's contract, and the kernel to
what it promises on top of it: a refused call leaves no decision and no INTENT behind.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from corral import Blocked, Governor
from corral.errors import StoreError
from corral.ids import new_id
from corral.store import Append, LogStep, PutTransaction, Reserve, Settle, UpdateTransaction
from corral.store.audit import verify_chain

LATER = datetime(2099, 1, 1, tzinfo=UTC)
D = Decimal
SCOPES = [("session:s1", D("1.00")), ("agent:desk", D("5.00"))]


def _record(i: int) -> dict[str, Any]:
    return {"id": new_id(), "kind": "call", "tool": f"t{i}", "decision": "allowed", "args": {"n": i}}


def _tx(tx_id: str) -> dict[str, Any]:
    return {"id": tx_id, "session": "s1", "agent": "desk", "state": "open", "plan": None, "deferred": []}


def _step(seq: int, status: str) -> dict[str, Any]:
    return {"seq": seq, "status": status, "tool": "refund", "args": {"n": seq}, "key": f"tx1:{seq}"}


def _nothing_written(store: Any, tx_id: str = "tx1") -> None:
    assert store.records("s1") == []
    assert store.get_transaction(tx_id) is None
    assert store.steps(tx_id) == []
    assert store.usage([k for k, _ in SCOPES]) == [(D(0), D(0))] * 2


# -------------------------------------------------------------------------------------- the contract


def test_a_batch_writes_every_operation_and_returns_their_results(store: Any) -> None:
    before = _record(1)
    rid, sealed, put, logged = store.batch(
        [Reserve(SCOPES, D("0.30"), LATER), Append("s1", before), PutTransaction(_tx("tx1")),
         LogStep("tx1", _step(1, "INTENT"))]
    )
    assert isinstance(rid, str) and put is None and logged is None
    assert sealed is before and sealed["prev"] == "" and len(sealed["hash"]) == 64
    assert store.usage(["session:s1", "agent:desk"]) == [(D(0), D("0.30"))] * 2
    assert store.get_transaction("tx1")["state"] == "open"

    after = _record(2)
    results = store.batch(
        [Settle(rid, D("0.25")), LogStep("tx1", _step(1, "DONE")), UpdateTransaction("tx1", {"state": "committed"}),
         Append("s1", after)]
    )
    assert results == [None, None, None, after]
    assert after["prev"] == before["hash"]
    assert store.usage(["session:s1", "agent:desk"]) == [(D("0.25"), D(0))] * 2
    assert [e["status"] for e in store.steps("tx1")] == ["INTENT", "DONE"]
    assert store.get_transaction("tx1")["state"] == "committed"
    records = store.records("s1")
    assert [r["id"] for r in records] == [before["id"], after["id"]]
    assert verify_chain(records, store.head("s1")) == (True, None, "intact")
    assert store.batch([]) == []


def test_a_reservation_that_does_not_fit_writes_nothing(store: Any) -> None:
    result = store.batch(
        [Append("s1", _record(1)), PutTransaction(_tx("tx1")), LogStep("tx1", _step(1, "INTENT")),
         Reserve(SCOPES, D("1.01"), LATER)]
    )
    assert result is None
    _nothing_written(store)
    # a batch that fits, on a ledger that others have used, still sees exactly what is left
    store.reserve(SCOPES, D("0.60"), LATER)
    assert store.batch([Reserve(SCOPES, D("0.41"), LATER), Append("s1", _record(2))]) is None
    assert store.records("s1") == []
    rid, _ = store.batch([Reserve(SCOPES, D("0.40"), LATER), Append("s1", _record(3))])
    assert store.usage(["session:s1"]) == [(D(0), D("1.00"))]
    assert [r["tool"] for r in store.records("s1")] == ["t3"]
    store.settle(rid, D(0))


def test_a_failing_operation_leaves_nothing_written(store: Any) -> None:
    rid = store.reserve(SCOPES, D("0.10"), LATER)
    with pytest.raises(StoreError, match="no transaction"):
        store.batch(
            [Reserve(SCOPES, D("0.20"), LATER), Settle(rid, D("0.10")), Append("s1", _record(1)),
             LogStep("tx1", _step(1, "INTENT")), UpdateTransaction("missing", {"state": "committed"})]
        )
    assert store.records("s1") == [] and store.head("s1") is None
    assert store.steps("tx1") == []
    assert store.usage(["session:s1"]) == [(D(0), D("0.10"))]  # the settle was undone, the reserve too
    store.settle(rid, D("0.10"))  # the reservation is still there to settle
    assert store.usage(["session:s1"]) == [(D("0.10"), D(0))]


def test_buffered_reads_keep_their_place_before_a_batch_and_survive_a_failed_one(store: Any) -> None:
    store.append("s1", {"id": "read-1", "n": 1}, durable=False)
    with pytest.raises(StoreError):
        store.batch([Append("s1", {"id": "write-1"}), UpdateTransaction("missing", {})])
    store.append("s1", {"id": "read-2", "n": 2}, durable=False)
    store.batch([Append("s1", {"id": "write-2"})])
    records = store.records("s1")
    assert [r["id"] for r in records] == ["read-1", "read-2", "write-2"]
    assert verify_chain(records, store.head("s1")) == (True, None, "intact")


def test_a_settle_of_an_unknown_reservation_changes_nothing(store: Any) -> None:
    assert store.batch([Settle("nope", D(1)), Append("s1", _record(1))])[0] is None
    assert store.usage(["session:s1"]) == [(D(0), D(0))]
    assert len(store.records("s1")) == 1


def test_a_batch_takes_only_operations(store: Any) -> None:
    with pytest.raises(TypeError, match="not an operation"):
        store.batch([("reserve", SCOPES, D(1), LATER)])


def test_batches_and_buffered_reads_from_many_threads_keep_one_chain(store: Any) -> None:
    """Batches take the group commit's chain lock before the database's, as the flusher does: no deadlock,
    one chain, and within a thread the chain keeps call order."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                if i % 2:
                    store.append("s1", {"id": f"r{n}-{i}", "w": n, "i": i}, durable=False)
                else:
                    store.batch([Reserve([("agent:desk", D(100))], D("0.01"), LATER),
                                 Append("s1", {"id": f"w{n}-{i}", "w": n, "i": i})])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and errors == []
    records = store.records("s1")
    assert len(records) == 80
    assert verify_chain(records, store.head("s1")) == (True, None, "intact")
    for n in range(4):
        assert [r["i"] for r in records if r["w"] == n] == list(range(20))
    assert store.usage(["agent:desk"]) == [(D(0), D("0.40"))]


def test_processes_racing_with_batches_never_overspend_and_keep_one_chain(durable_backend: Any) -> None:
    from .test_concurrency import PROCESSES, _race
    from .workers import reserve_in_batches

    store = durable_backend.open()
    out = _race(reserve_in_batches, lambda n: (durable_backend.url, n, 40, "1.00", "0.01"))
    granted = sum(r[1] for r in out)
    assert granted == 100
    assert store.usage(["agent:race", "tenant:race"]) == [(D(0), D("1.00"))] * 2
    records = store.records("race")
    assert len(records) == granted
    assert verify_chain(records, store.head("race")) == (True, None, "intact")
    for n in range(PROCESSES):  # within a process, chain order is call order
        mine = [r["i"] for r in records if r["worker"] == n]
        assert mine == sorted(mine)


# -------------------------------------------------------------------------------- through the kernel


def _governor(backend: Any, **options: Any) -> tuple[Governor, list[str]]:
    ran: list[str] = []
    gov = Governor(agent="desk", store=backend.target, budget={"agent": 1.0}, **options)
    gov.register("lookup", lambda: ran.append("lookup"), effect="read")
    gov.register("refund", lambda amount: ran.append(f"refund {amount}"), effect="reversible",
                 compensate=lambda call: ran.append("undo"), cost=lambda args: args["amount"])
    return gov, ran


def _decisions(gov: Governor, session: Any, tool: str) -> list[str]:
    return [r["decision"] for r in gov.store.records(session.id) if r.get("tool") == tool]


def test_a_reservation_lost_to_a_race_leaves_no_decision_and_no_intent(backend: Any) -> None:
    """The decision saw room; by the time of the batch another process took it. Nothing is written but
    the refusal, the plan step is given back, and the call can be made once there is room again."""
    gov, ran = _governor(backend, rules="REQUIRE PLAN")
    s = gov.session("alice")
    with s.decide():
        plan = s.propose([{"tool": "refund", "args": {"amount": "*"}}])
    store = gov.store
    real_batch = store.batch
    rival: list[str] = []

    def racing_batch(ops: Any) -> Any:  # another process reserves between the decision and the batch
        if not rival and any(isinstance(op, Reserve) for op in ops):
            rival.append(store.reserve([("agent:desk", D(1))], D("0.90"), datetime.now(UTC) + timedelta(minutes=5)))
        return real_batch(ops)

    store.batch = racing_batch  # type: ignore[method-assign]
    try:
        with s.commit(plan=plan) as tx:
            with pytest.raises(Blocked, match="more than the budget has left") as refused:
                tx.call("refund", amount=0.5)
            assert refused.value.trace.decision == "blocked"
            assert ran == []
            assert store.steps(tx.id) == [] and store.get_transaction(tx.id)["state"] == "open"  # no INTENT
            assert _decisions(gov, s, "refund") == ["blocked"]
            assert s.budget.reserved == pytest.approx(0.9) and s.budget.spent == 0
            store.release(rival[0])
            tx.call("refund", amount=0.5)  # the plan step was given back: it can still be used
            assert plan.used == [True]
    finally:
        store.batch = real_batch  # type: ignore[method-assign]
    assert ran == ["refund 0.5"]
    assert _decisions(gov, s, "refund") == ["blocked", "allowed"]
    assert s.budget.spent == pytest.approx(0.5) and s.budget.reserved == 0


def _break_the_step_log(backend: Any, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every write to the transaction log fail, as a full disk would, below the kernel."""
    if backend.kind == "memory":
        def broken(*args: Any, **kwargs: Any) -> None:
            raise StoreError("memory store: log_step failed: disk full")

        monkeypatch.setattr(store, "log_step", broken)
    elif backend.kind == "sqlite":
        backend.sql("CREATE TRIGGER full_disk BEFORE INSERT ON tx_steps BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    else:
        backend.sql("CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$")
        backend.sql("CREATE TRIGGER full_disk BEFORE INSERT ON tx_steps FOR EACH ROW EXECUTE FUNCTION full_disk()")


def test_an_intent_that_cannot_be_written_takes_the_decision_and_reservation_with_it(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gov, ran = _governor(backend, phases=False)
    s = gov.session("alice")
    s.call("lookup")
    _break_the_step_log(backend, gov.store, monkeypatch)
    with pytest.raises(Blocked, match="governance fault: the decision could not be stored") as refused:
        s.call("refund", amount=0.25)
    assert "disk full" in refused.value.reason and ran == ["lookup"]
    assert _decisions(gov, s, "refund") == ["blocked"]  # no "allowed" decision without its INTENT
    assert s.budget.spent == 0 and s.budget.reserved == 0
    assert gov.store.transactions() == []
    assert verify_chain(gov.store.records(s.id), gov.store.head(s.id)) == (True, None, "intact")


def test_a_governed_write_is_one_batch_before_and_one_after(backend: Any) -> None:
    gov, ran = _governor(backend)
    s = gov.session("alice")
    batches: list[list[str]] = []
    real_batch = gov.store.batch

    def counting(ops: Any) -> Any:
        batches.append([type(op).__name__ for op in ops])
        return real_batch(ops)

    gov.store.batch = counting  # type: ignore[method-assign]
    with s.decide():
        pass
    with s.commit() as tx:
        tx.call("refund", amount=0.1)
        tx.call("refund", amount=0.2)
        tx.call("lookup")
    # (the transaction record itself was stored when the commit began, so a resumed session finds it)
    assert batches == [
        ["Reserve", "Append", "LogStep"], ["Settle", "LogStep", "Append"],
        ["Reserve", "Append", "LogStep"], ["Settle", "LogStep", "Append"],
    ]
    assert [e["status"] for e in gov.store.steps(tx.id)] == ["INTENT", "DONE", "INTENT", "DONE"]
    intents = [e for e in gov.store.steps(tx.id) if e["status"] == "INTENT"]
    allowed = [r["id"] for r in gov.store.records(s.id) if r.get("tool") == "refund" and r["decision"] == "allowed"]
    assert [e["trace"] for e in intents] == allowed
    assert s.budget.spent == pytest.approx(0.3) and s.budget.reserved == 0


def test_on_sqlite_a_governed_write_is_two_commits_and_a_free_read_none(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.store.sqlite import SQLiteStore

    commits: list[str] = []
    connect = SQLiteStore._connect

    def counting_connect(self: SQLiteStore) -> Any:
        conn = connect(self)
        state = {"open": False}

        def trace(statement: str) -> None:
            head = statement.lstrip().split(None, 1)[0].upper()
            if head == "BEGIN":
                state["open"] = True
            elif head in ("COMMIT", "ROLLBACK"):
                state["open"] = False
                if head == "COMMIT":
                    commits.append(statement)
            elif head in ("INSERT", "UPDATE", "DELETE") and not state["open"]:
                commits.append(statement)  # a write on its own is a transaction of its own

        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", counting_connect)
    ran: list[str] = []
    store = SQLiteStore(f"sqlite:///{tmp_path}/c.db", flush_interval=60)  # no background flush mid-count
    gov = Governor(agent="desk", store=store, budget={"agent": 100})
    gov.register("lookup", lambda: ran.append("lookup"), effect="read")
    gov.register("refund", lambda: ran.append("refund"), effect="reversible", compensate=lambda call: None,
                 cost=0.01)
    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        tx.call("refund")  # the transaction's first step: its record goes in the same batch
        commits.clear()
        for _ in range(5):
            tx.call("refund")
        assert len(commits) == 10
        commits.clear()
        for _ in range(5):
            tx.call("lookup")
        assert commits == []  # group-committed: written with the next write's batch, or by the flusher
    gov.close()
    assert ran.count("refund") == 6 and ran.count("lookup") == 5


def test_with_phases_off_a_write_and_its_one_step_transaction_are_two_batches(backend: Any) -> None:
    gov, ran = _governor(backend, phases=False)
    s = gov.session("alice")
    batches: list[list[str]] = []
    real_batch = gov.store.batch

    def counting(ops: Any) -> Any:
        batches.append([type(op).__name__ for op in ops])
        return real_batch(ops)

    gov.store.batch = counting  # type: ignore[method-assign]
    s.call("refund", amount=0.1)
    assert batches == [["Reserve", "Append", "PutTransaction", "LogStep"],
                       ["Settle", "LogStep", "UpdateTransaction", "Append"]]
    (tx,) = gov.store.transactions()
    assert tx["state"] == "committed"
    assert [e["status"] for e in gov.store.steps(tx["id"])] == ["INTENT", "DONE"]
    assert ran == ["refund 0.1"] and s.budget.spent == pytest.approx(0.1)
