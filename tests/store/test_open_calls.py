"""A call begun durably is finished by its id — by another governor on the same store (another process, another
server) — exactly once; one nobody ever finishes is recorded ``no outcome`` by recovery. On every store."""

from __future__ import annotations

from typing import Any

import pytest

from corral import CallNotOpen, Governor


def _governor(backend: Any, clock: Any = None) -> Governor:
    gov = Governor(agent="desk", budget=1.0, store=backend.target, clock=clock)
    gov.register("lookup", lambda order_id: {"id": order_id}, effect="read", cost=0.10)
    gov.register("refund", lambda order_id: "ok", effect="reversible", cost=0.20, compensate=lambda call: None)
    return gov


def test_a_call_decided_by_one_governor_is_finished_by_another_once(backend: Any) -> None:
    a, b = _governor(backend), _governor(backend)
    s = a.session("alice")
    handle = s.begin_call("lookup", {"order_id": "A1"}, durable=True)
    assert s.budget.reserved == pytest.approx(0.10)
    elsewhere = b.resume_call(handle.call_id)
    assert (elsewhere.tool, elsewhere.session, elsewhere.decision) == ("lookup", s.id, "allowed")
    trace = elsewhere.finish(result={"id": "A1"}, cost=0.04)
    assert trace.outcome["status"] == "ok" and trace.outcome["cost"] == pytest.approx(0.04)
    assert s.budget.spent == pytest.approx(0.04) and s.budget.reserved == 0
    with pytest.raises(CallNotOpen):
        b.resume_call(handle.call_id)
    with pytest.raises(CallNotOpen):
        elsewhere.finish(result={})
    with pytest.raises(CallNotOpen):
        handle.finish(result={})  # the process that decided it learns it was finished elsewhere
    [merged] = [t for t in b.session(id=s.id).traces if t.tool == "lookup"]
    assert merged.id == handle.call_id and merged.outcome["cost"] == pytest.approx(0.04)
    assert s.budget.spent == pytest.approx(0.04)


def test_a_step_finished_elsewhere_is_logged_done_and_the_session_commits(backend: Any) -> None:
    a, b = _governor(backend), _governor(backend)
    s = a.session("alice")
    with s.decide():
        pass
    tx = s.begin_commit()
    handle = tx.begin_call("refund", {"order_id": "A1"}, durable=True)
    b.resume_call(handle.call_id).finish(result="refunded")
    assert [e["status"] for e in a.store.steps(tx.id)] == ["INTENT", "DONE"]
    s.end_commit()
    assert a.store.get_transaction(tx.id)["state"] == "committed"


def test_an_error_reported_elsewhere_settles_at_zero_and_logs_the_step_failed(backend: Any) -> None:
    a, b = _governor(backend), _governor(backend)
    s = a.session("alice")
    with s.decide():
        pass
    tx = s.begin_commit()
    handle = tx.begin_call("refund", {"order_id": "A1"}, durable=True)
    trace = b.resume_call(handle.call_id).finish(error="bank said no")
    assert trace.outcome == {"status": "error", "cost": 0.0, "duration_ms": None, "error": "bank said no"}
    assert [e["status"] for e in a.store.steps(tx.id)] == ["INTENT", "FAILED"]
    assert s.budget.spent == 0 and s.budget.reserved == 0
    assert a.store.get_transaction(tx.id)["state"] == "open"  # the session decides what happens next


def test_recovery_records_no_outcome_for_a_call_nobody_finished(backend: Any, clock: Any) -> None:
    a = _governor(backend, clock)
    s = a.session("alice")
    handle = s.begin_call("lookup", {"order_id": "A1"}, durable=True)
    assert a.recover().abandoned_calls == []  # not yet expired
    clock.advance(seconds=a.call_ttl + 1)
    report = _governor(backend, clock).recover()
    assert [c["call"] for c in report.abandoned_calls] == [handle.call_id]
    [trace] = [t for t in s.traces if t.tool == "lookup"]
    assert trace.outcome["error"] == "no outcome" and s.budget.reserved == 0 and s.budget.spent == 0
    assert _governor(backend, clock).recover().abandoned_calls == []
