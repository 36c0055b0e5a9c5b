"""The public seam: ``s.begin_call`` / ``tx.begin_call`` and ``CallHandle`` (DESIGN §10)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    CallHandle,
    Governor,
    PhaseError,
    TransactionFailed,
)
from corral.governance.events import CallDecided, CallFinished, CallRefused


def _gov(**options: Any) -> tuple[Governor, list[Any]]:
    undone: list[Any] = []
    gov = Governor(agent="desk", **options)
    gov.register("lookup", lambda order_id: {"id": order_id}, effect="read", cost=0.01)
    gov.register("refund", lambda order_id, amount: "ok", effect="reversible", cost=0.05,
                 compensate=lambda call: undone.append(call.args))
    gov.register("email", lambda to: "sent", effect="irreversible")
    return gov, undone


def _outcomes(s: Any, tool: str) -> list[Any]:
    return [t.outcome for t in s.traces if t.tool == tool and t.kind == "call"]


def test_begin_call_decides_and_finish_records_the_outcome() -> None:
    gov, _ = _gov(budget=1.0)
    s = gov.session("alice")
    h = s.begin_call("lookup", {"order_id": "A1"})
    assert isinstance(h, CallHandle)
    assert h.decision == "allowed" and h.tool == "lookup" and h.effect == "read"
    assert h.trace.id == h.call_id and h.trace.outcome is None
    assert s.budget.reserved == pytest.approx(0.01)  # reserved at the decision, before the tool runs
    trace = h.finish(result={"id": "A1"}, cost=0.004)
    assert trace.outcome["status"] == "ok" and trace.outcome["cost"] == pytest.approx(0.004)
    assert s.budget.spent == pytest.approx(0.004) and s.budget.reserved == 0
    assert _outcomes(s, "lookup") == [trace.outcome]
    assert h.finished and h.result == {"id": "A1"}
    with pytest.raises(RuntimeError, match="already finished"):
        h.finish(result=None)


def test_an_error_settles_at_zero_and_is_recorded_as_text_or_exception() -> None:
    gov, _ = _gov(budget=1.0)
    s = gov.session("alice")
    h = s.begin_call("lookup", {"order_id": "A1"})
    h.finish(error="the upstream timed out")
    h2 = s.begin_call("lookup", {"order_id": "A2"})
    h2.finish(error=ValueError("bad id"))
    errors = [o["error"] for o in _outcomes(s, "lookup")]
    assert errors == ["the upstream timed out", "ValueError: bad id"]  # text as reported, an exception named
    assert s.budget.spent == 0 and s.budget.reserved == 0


def test_begin_call_raises_exactly_what_call_raises() -> None:
    gov, _ = _gov(rules="REQUIRE APPROVAL FOR email")
    s = gov.session("alice")
    with pytest.raises(Blocked, match="not allowed in explore") as via_handle:
        s.begin_call("refund", {"order_id": "A1", "amount": 5})
    with pytest.raises(Blocked, match="not allowed in explore") as via_call:
        s.call("refund", order_id="A1", amount=5)
    assert via_handle.value.trace.checks == via_call.value.trace.checks
    with pytest.raises(Blocked, match="unknown tool"):
        s.begin_call("nope", {})
    with pytest.raises(Blocked, match="arguments do not fit"):
        s.begin_call("lookup", {"order": "A1"})
    with s.decide():
        pass
    with s.commit() as tx:
        with pytest.raises(ApprovalPending) as pending:
            tx.begin_call("email", {"to": "x"})
        gov.deny(pending.value.approval_id, "bob", "no")
        with pytest.raises(ApprovalDenied):
            tx.begin_call("email", {"to": "x"})
    with pytest.raises(PhaseError, match="takes no more calls"):
        tx.begin_call("email", {"to": "x"})


def test_a_step_handle_logs_intent_now_and_done_at_finish() -> None:
    gov, _ = _gov()
    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        h = tx.begin_call("refund", {"order_id": "A1", "amount": 5})
        assert h.tx == tx.id and h.idempotency_key == f"{tx.id}:1"
        assert [e["status"] for e in gov.store.steps(tx.id)] == ["INTENT"]
        h.finish(result="ok")
        assert [e["status"] for e in gov.store.steps(tx.id)] == ["INTENT", "DONE"]
    assert tx.state == "committed"


def test_finishing_a_step_with_an_error_rolls_back_and_raises() -> None:
    gov, undone = _gov()
    s = gov.session("alice")
    with s.decide():
        pass
    with pytest.raises(TransactionFailed), s.commit() as tx:
        tx.call("refund", order_id="A1", amount=5)
        h = tx.begin_call("refund", {"order_id": "A2", "amount": 6})
        with pytest.raises(TransactionFailed, match="rolled back") as failed:
            h.finish(error=RuntimeError("bank down"))
        assert isinstance(failed.value.__cause__, RuntimeError)
        raise failed.value
    assert undone == [{"order_id": "A1", "amount": 5}]
    assert tx.state == "rolled_back"


def test_rollback_false_keeps_the_transaction_open_with_the_step_failed() -> None:
    gov, undone = _gov()
    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        h = tx.begin_call("refund", {"order_id": "A1", "amount": 5})
        h.finish(error="card declined", rollback=False)
        assert tx.state == "open"
        assert [e["status"] for e in gov.store.steps(tx.id)] == ["INTENT", "FAILED"]
        tx.call("refund", order_id="A1", amount=4)
    assert tx.state == "committed" and undone == []


def test_cancel_gives_back_the_plan_step_and_the_reservation() -> None:
    gov, _ = _gov(budget=1.0, rules="REQUIRE PLAN")
    s = gov.session("alice")
    with s.decide():
        plan = s.propose([{"tool": "refund", "args": {"order_id": "A1", "amount": 5}}])
    with s.commit(plan=plan) as tx:
        h = tx.begin_call("refund", {"order_id": "A1", "amount": 5})
        assert plan.used == [True] and s.budget.reserved == pytest.approx(0.05)
        trace = h.cancel("the framework did not run it")
        assert plan.used == [False] and s.budget.reserved == 0
        assert trace.outcome["status"] == "error" and "did not run it" in trace.outcome["error"]
        tx.call("refund", order_id="A1", amount=5)  # the step can still be used
    assert tx.state == "committed"


def test_with_phases_off_a_write_handle_is_its_own_one_step_transaction() -> None:
    gov, _ = _gov(phases=False)
    s = gov.session("alice")
    h = s.begin_call("email", {"to": "x"})
    assert h.tx is not None
    assert gov.store.get_transaction(h.tx)["state"] == "open"
    h.finish(result="sent")
    assert gov.store.get_transaction(h.tx)["state"] == "committed"
    failing = s.begin_call("email", {"to": "y"})
    failing.finish(error="smtp refused")  # nothing to roll back, and nothing raised: the caller has the error
    assert gov.store.get_transaction(failing.tx)["state"] == "rolled_back"


def test_a_handle_never_finished_is_recorded_no_outcome_when_its_session_closes() -> None:
    gov, _ = _gov(budget=1.0)
    s = gov.session("alice")
    h = s.begin_call("lookup", {"order_id": "A1"})
    done = s.begin_call("lookup", {"order_id": "A2"})
    done.finish(result={})
    assert s.open_calls == [h]
    s.close()
    assert s.open_calls == [] and h.finished
    never = next(t for t in s.traces if t.id == h.call_id)
    assert never.outcome["status"] == "error" and never.outcome["error"] == "no outcome"
    assert never.outcome["cost"] == 0
    assert s.budget.reserved == 0 and s.budget.spent == pytest.approx(0.01)


def test_durable_writes_a_reads_decision_before_it_runs() -> None:
    gov, _ = _gov()
    s = gov.session("alice")
    h = s.begin_call("lookup", {"order_id": "A1"}, durable=True, annotate={"origin": {"hook": "x"}})
    stored = gov.store.find_record(h.call_id)
    assert stored is not None and stored["decision"] == "allowed" and stored["origin"] == {"hook": "x"}
    h.finish(result={})
    assert _outcomes(s, "lookup")[0]["status"] == "ok"


async def test_async_twins() -> None:
    gov, undone = _gov()
    s = gov.session("alice")
    h = await s.abegin_call("lookup", {"order_id": "A1"})
    await h.afinish(result={})
    with s.decide():
        pass
    async with s.commit() as tx:
        await tx.acall("refund", order_id="A1", amount=5)
        h = await tx.abegin_call("refund", {"order_id": "A2", "amount": 6})
        with pytest.raises(TransactionFailed):
            await h.afinish(error=RuntimeError("down"))
    assert undone == [{"order_id": "A1", "amount": 5}]
    await asyncio.sleep(0)


def test_listeners_hear_each_decision_refusal_and_outcome_and_cannot_change_them() -> None:
    gov, _ = _gov()
    heard: list[Any] = []
    unsubscribe = gov.subscribe(heard.append)

    def broken(event: Any) -> None:
        raise RuntimeError("observer bug")

    gov.subscribe(broken)
    s = gov.session("alice")
    s.call("lookup", order_id="A1")
    with pytest.raises(Blocked):
        s.call("email", to="x")
    kinds = [type(e) for e in heard]
    assert kinds == [CallDecided, CallFinished, CallRefused]
    assert heard[1].trace.outcome["status"] == "ok" and heard[2].trace.decision == "blocked"
    unsubscribe()
    s.call("lookup", order_id="A2")
    assert len(heard) == 3


def test_submit_routes_reads_outside_and_defers_irreversible_calls() -> None:
    gov, _ = _gov()
    s = gov.session("alice")
    with s.decide():
        pass
    tx = s.begin_commit()
    read = s.submit("lookup", {"order_id": "A1"})
    assert read.trace.tx is None and read.result == {"id": "A1"}
    deferred = s.submit("email", {"to": "x"}, defer_irreversible=True)
    assert deferred.deferred and tx.deferred == [("email", {"to": "x"})]
    assert gov.store.get_transaction(tx.id)["deferred"] == [["email", {"to": "x"}]]
    step = s.submit("refund", {"order_id": "A1", "amount": 5})
    assert step.trace.tx == tx.id and step.result == "ok"
    s.end_commit()
    assert [t.tool for t in s.traces if t.kind == "call"][-1] == "email"


def test_a_per_call_estimate_is_reserved_instead_of_the_declared_cost() -> None:
    gov, _ = _gov(budget=1.0)
    s = gov.session("alice")
    h = s.begin_call("lookup", {"order_id": "A1"}, estimate=0.25)
    assert s.budget.reserved == pytest.approx(0.25)
    h.finish(result={})
    assert s.budget.spent == pytest.approx(0.25)
    with pytest.raises(Blocked, match="more than the budget has left"):
        s.begin_call("lookup", {"order_id": "A2"}, estimate=0.80)


def test_a_deferred_call_holds_its_plan_step_so_a_second_one_is_refused_at_once() -> None:
    gov, _ = _gov(rules="REQUIRE PLAN")
    ran: list[str] = []
    gov.register("notify", lambda to: ran.append(to), effect="irreversible")
    s = gov.session("alice")
    with s.decide():
        plan = s.propose([{"tool": "notify", "args": {"to": "*"}}])
    with s.commit(plan=plan) as tx:
        tx.defer("notify", to="a")
        with pytest.raises(Blocked, match="not in plan"):
            tx.defer("notify", to="b")  # the one step is held by the first deferral
        assert tx.deferred == [("notify", {"to": "a"})]
    assert tx.state == "committed" and ran == ["a"] and plan.used == [True]


def test_a_deferred_call_paused_for_approval_keeps_its_plan_step() -> None:
    gov, _ = _gov(rules="REQUIRE PLAN\nREQUIRE APPROVAL FOR notify")
    gov.register("notify", lambda to: "sent", effect="irreversible")
    s = gov.session("alice")
    with s.decide():
        plan = s.propose([{"tool": "notify", "args": {"to": "*"}}])
    tx = s.begin_commit(plan)
    tx.defer("notify", to="a")
    with pytest.raises(ApprovalPending) as pending:
        s.end_commit(pause_on_pending=True)
    assert plan.used == [True] and tx.state == "open"
    with pytest.raises(Blocked, match="not in plan"):
        tx.defer("notify", to="b")
    gov.approve(pending.value.approval_id, "bob")
    s.end_commit(pause_on_pending=True)
    assert tx.state == "committed"


def test_rollback_past_the_pivot_is_refused_with_what_is_stuck() -> None:
    gov, undone = _gov()
    s = gov.session("alice")
    with s.decide():
        pass
    tx = s.begin_commit()
    tx.call("refund", order_id="A1", amount=5)
    tx.call("email", to="x")  # irreversible: the pivot
    with pytest.raises(TransactionFailed, match="cannot roll back past the pivot"):
        tx.rollback()
    assert tx.state == "needs_attention" and undone == []
