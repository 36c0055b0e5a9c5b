"""The session page's data: the transcript matched to its proof traces, the budget gauge, the open
transaction, time left."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from corral.server.console.views import gauge, time_left, timeline, transaction
from corral.store.memory import MemoryStore


def _trace(tid: str, tool: str, args: dict, decision: str = "allowed", kind: str = "call") -> dict:
    return {"id": tid, "kind": kind, "tool": tool, "args": args, "args_sha256": f"{tool}{sorted(args.items())}",
            "decision": decision}


def _assistant(*calls: tuple[str, str, dict]) -> dict:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": cid, "name": name, "arguments": args} for cid, name, args in calls]}


def _result(cid: str, name: str, content: str) -> dict:
    return {"role": "tool", "tool_call_id": cid, "name": name, "content": content}


def test_each_call_gets_its_own_trace_in_order() -> None:
    transcript = [{"role": "user", "content": "go"},
                  {"role": "assistant", "content": "Looking.", "tool_calls": []},
                  _assistant(("c1", "lookup", {"q": "a"}), ("c2", "lookup", {"q": "b"})),
                  _result("c1", "lookup", '{"found": "a"}'), _result("c2", "lookup", "plain text")]
    traces = [_trace("t0", "model:x", {}, kind="spend"), _trace("t1", "lookup", {"q": "a"}),
              _trace("t2", "lookup", {"q": "b"})]
    items, rest = timeline(transcript, traces)
    assert [i.kind for i in items] == ["user", "text", "call", "call"]
    assert [i.trace["id"] for i in items[2:]] == ["t1", "t2"]
    assert items[2].result == {"found": "a"} and items[3].result == "plain text"
    assert rest == []  # spending is not a call


def test_a_call_the_loop_refused_before_governance_takes_no_trace() -> None:
    transcript = [_assistant(("c1", "pay", {"amount": "x"})),
                  _result("c1", "pay", '{"error": "arguments do not fit the tool\'s schema: amount: not a number"}'),
                  _assistant(("c2", "pay", {"amount": 5})), _result("c2", "pay", '{"paid": 5}')]
    items, rest = timeline(transcript, [_trace("t1", "pay", {"amount": 5})])
    assert items[0].traces == [] and items[0].decision == "refused" and "schema" in items[0].note
    assert items[1].trace["id"] == "t1" and rest == []


def test_a_paused_call_shows_its_pending_decision_then_the_one_made_on_resume() -> None:
    transcript = [_assistant(("c1", "pay", {"amount": 250})), _result("c1", "pay", '{"paid": 250}')]
    traces = [_trace("t1", "pay", {"amount": 250}, "pending"), _trace("t2", "pay", {"amount": 250}, "approved")]
    items, rest = timeline(transcript, traces)
    assert [t["decision"] for t in items[0].traces] == ["pending", "approved"] and rest == []
    paused, _ = timeline(transcript[:1], traces[:1])
    assert paused[0].note == "paused: waiting for an approval"


def test_traces_no_transcript_entry_accounts_for_are_listed_after_it() -> None:
    traces = [_trace("t1", "Read", {"file_path": "a"}), _trace("t2", "pay", {"amount": 1}, kind="compensation"),
              _trace("t3", "plan", {}, kind="plan")]
    items, rest = timeline([], traces)
    assert items == [] and [i.trace["id"] for i in rest] == ["t1", "t2"]
    assert rest[1].note == "compensation"


def test_redacted_arguments_still_match() -> None:
    transcript = [_assistant(("c1", "login", {"user": "a", "password": "hunter2"}))]
    items, _ = timeline(transcript, [_trace("t1", "login", {"user": "a", "password": "[redacted]"})])
    assert items[0].trace["id"] == "t1"


def test_the_gauge_marks_every_gate() -> None:
    g = gauge({"limit": 5.0, "spent": 3.9, "reserved": 0.1, "pct": 80.0, "gate": "force_decide"},
              [("degrade", Decimal("0.5")), ("force_decide", Decimal("0.75")), ("stop", Decimal("1"))])
    assert g.marks == (("degrade", 50.0), ("force_decide", 75.0), ("stop", 100.0))
    assert g.fill == 80.0 and g.state == "force_decide"
    assert gauge({"limit": 1.0, "pct": 130.0, "gate": "stop"}, []).fill == 100.0
    assert gauge({"limit": None, "pct": 0.0, "gate": None}, []).state == "ok"


def test_the_open_transaction_shows_each_step_at_its_latest_state() -> None:
    store = MemoryStore()
    store.put_transaction({"id": "tx1", "session": "s1", "state": "open", "plan": "p1", "deferred": []})
    store.log_step("tx1", {"seq": 1, "tool": "book", "args": {"item": "room"}, "status": "INTENT"})
    store.log_step("tx1", {"seq": 1, "tool": "book", "args": {"item": "room"}, "status": "DONE"})
    store.log_step("tx1", {"seq": 2, "tool": "hold", "args": {"item": "room"}, "status": "INTENT"})
    tx = transaction(store, {"tx": "tx1"})
    assert [(s.tool, s.status) for s in tx["steps"]] == [("book", "DONE"), ("hold", "INTENT")]
    assert transaction(store, {}) is None
    store.update_transaction("tx1", {"state": "committed"})
    assert transaction(store, {"tx": "tx1"}) is None


def test_time_left_reads_as_a_person_says_it() -> None:
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert time_left("2026-11-24T10:12:30.000Z", now) == "12 min left"
    assert time_left("2026-11-24T10:00:30Z", now) == "30 s left"
    assert time_left("2026-11-24T09:59:00Z", now) == "expired"
    assert time_left("2026-11-24T12:30:00Z", now) == "2 h 30 min left"
