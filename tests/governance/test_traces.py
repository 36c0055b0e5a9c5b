import json

import pytest

from corral import Blocked, Governor
from corral.canonical import canonical_sha256
from corral.store.audit import verify_chain

RULES = """
REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
FLAG lookup_order WHEN arg.order_id MATCHES "Z*"
"""


@pytest.fixture
def gov(clock):
    gov = Governor(agent="refund-desk", budget=5.0, rules=RULES, clock=clock, redact=["card_number"],
                   approver=lambda r: True)
    gov.register("lookup_order", lambda order_id: {"id": order_id}, effect="read")
    gov.register("issue_refund", lambda order_id, amount, card_number="": "ok", effect="reversible",
                 compensate=lambda c: None, cost=0.01)
    return gov


def test_trace_has_every_field_of_the_contract(gov):
    s = gov.session("alice", roles=["agent"])
    with s.decide():
        pass
    with s.commit() as tx:
        tx.call("issue_refund", order_id="A1", amount=120, card_number="4111")
    trace = [t for t in s.traces if t.tool == "issue_refund"][-1]
    data = trace.to_dict()
    for key in ("id", "ts", "session", "agent", "principal", "tool", "effect", "phase", "tx", "plan", "args",
                "args_sha256", "decision", "reason", "checks", "policy_sha256", "budget", "outcome", "prev",
                "hash"):
        assert key in data, key
    assert data["ts"] == "2026-11-24T10:00:00.000Z"
    assert (trace.agent, trace.principal, trace.effect, trace.phase) == ("refund-desk", "alice", "reversible",
                                                                          "commit")
    assert trace.decision == "approved"
    assert trace.reason == "refunds over $100 need a human (<rules>:2)"
    assert [c["check"] for c in trace.checks] == ["tool", "phase", "budget", "rule", "approval"]
    rule = trace.checks[3]
    assert rule["matched"] is True and rule["source"] == "<rules>:2" and "120" in rule["detail"]
    budget = trace.checks[2]
    assert budget["detail"].startswith("reserved $0.01")
    assert trace.budget == {"limit": 5.0, "spent": 0.0, "reserved": 0.01, "pct": 0.2, "gate": None}
    assert trace.outcome["status"] == "ok" and trace.outcome["cost"] == 0.01
    # redaction, with the hash over the real arguments
    assert trace.args["card_number"] == "[redacted]"
    assert trace.args_sha256 == canonical_sha256({"order_id": "A1", "amount": 120, "card_number": "4111"})
    json.dumps(data)  # JSON all the way down


def test_every_target_matching_rule_and_no_other_is_in_the_trace(gov):
    s = gov.session("alice")
    s.call("lookup_order", order_id="Z9")
    trace = s.traces[-1]
    rules = [c for c in trace.checks if c["check"] == "rule"]
    assert [r["rule"] for r in rules] == ['FLAG lookup_order WHEN arg.order_id MATCHES "Z*"']
    assert trace.decision == "flagged"


def test_unknown_tool_and_raising_tool_are_traced(gov):
    s = gov.session("alice")
    with pytest.raises(Blocked, match="unknown tool 'nope'"):
        s.call("nope", x=1)

    def broken(order_id):
        raise ZeroDivisionError("oops")

    gov.register("broken", broken, effect="read")
    with pytest.raises(ZeroDivisionError):
        s.call("broken", order_id="1")
    unknown, failed = s.traces[-2:]
    assert unknown.decision == "blocked" and unknown.tool == "nope"
    assert failed.decision == "allowed" and failed.outcome["status"] == "error"
    assert "ZeroDivisionError" in failed.outcome["error"]


def test_hash_chain_is_intact_and_detects_edits(gov):
    s = gov.session("alice")
    for i in range(5):
        s.call("lookup_order", order_id=str(i))
    with pytest.raises(Blocked):
        s.call("issue_refund", order_id="1", amount=1)
    records = gov.store.records(s.id)
    ok, bad, _ = verify_chain(records, gov.store.head(s.id))
    assert ok and bad is None
    records[2]["args"] = {"order_id": "tampered"}
    ok, bad, why = verify_chain(records)
    assert not ok and bad == 2 and "edited" in why
    records[2]["args"] = {"order_id": "2"}
    del records[1]
    ok, bad, why = verify_chain(records)
    assert not ok and bad == 1


def test_explain_reads_like_an_argument(gov):
    s = gov.session("alice")
    with pytest.raises(Blocked) as info:
        s.call("issue_refund", order_id="A1", amount=500)
    text = info.value.trace.explain()
    assert text.startswith("issue_refund — blocked because")
    assert "explore" in text
    s.call("lookup_order", order_id="Z1")
    text = s.traces[-1].explain()
    assert "flagged" in text and "<rules>:3" in text and "Z1" in text


def test_traces_are_read_only(gov):
    s = gov.session("alice")
    s.call("lookup_order", order_id="1")
    with pytest.raises(AttributeError):
        s.traces[-1].decision = "allowed"
