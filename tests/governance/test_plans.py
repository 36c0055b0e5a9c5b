import pytest

from corral import Blocked, ConfigError, Governor, PhaseError
from corral.governance.plans import Plan

RULES = """
REQUIRE PLAN
"""


@pytest.fixture
def gov():
    gov = Governor(agent="desk", rules=RULES)
    gov.register("refund", lambda order_id, amount: "ok", effect="reversible", compensate=lambda call: None)
    gov.register("email", lambda to, body, cc=None: "sent", effect="irreversible")
    return gov


def decide_plan(s, steps):
    with s.decide():
        return s.propose(steps)


def test_plan_hash_is_sha256_of_canonical_json():
    a = Plan.from_steps([{"tool": "x", "args": {"b": 1, "a": 2}}])
    b = Plan.from_steps([{"args": {"a": 2, "b": 1}, "tool": "x"}])
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    assert a.id != b.id


def test_propose_only_in_decide(gov):
    s = gov.session("alice")
    with pytest.raises(PhaseError, match="decide"):
        s.propose([{"tool": "refund", "args": {}}])


def test_bad_plans_are_config_errors(gov):
    s = gov.session("alice")
    with s.decide():
        with pytest.raises(ConfigError, match="step 0"):
            s.propose(["refund"])
        with pytest.raises(ConfigError, match="unknown tool"):
            s.propose([{"tool": "nope", "args": {}}])


def test_require_plan_binds_calls_to_steps_with_wildcards_and_consumes_them(gov):
    s = gov.session("alice")
    plan = decide_plan(
        s,
        [
            {"tool": "refund", "args": {"order_id": "A1", "amount": 20}},
            {"tool": "email", "args": {"to": "*", "body": "*"}},
        ],
    )
    with s.commit(plan=plan) as tx:
        with pytest.raises(Blocked, match="not in plan"):
            tx.call("refund", order_id="A1", amount=21)
        tx.call("refund", order_id="A1", amount=20)
        with pytest.raises(Blocked, match="not in plan"):
            tx.call("refund", order_id="A1", amount=20)  # the step was used
        tx.defer("email", to="a@b.c", body="refunded")
    assert tx.state == "committed"


def test_commit_without_plan_makes_no_write_under_require_plan(gov):
    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        with pytest.raises(Blocked, match="no plan"):
            tx.call("refund", order_id="A1", amount=1)
    assert tx.state == "committed"


def test_plan_defaults_do_not_break_matching(gov):
    s = gov.session("alice")
    plan = decide_plan(s, [{"tool": "email", "args": {"to": "*", "body": "hi"}}])
    with s.commit(plan=plan) as tx:
        tx.call("email", to="x", body="hi", cc=None)
    assert tx.state == "committed"


def test_a_plan_from_another_session_cannot_be_bound(gov):
    s1, s2 = gov.session("alice"), gov.session("bob")
    plan = decide_plan(s1, [{"tool": "refund", "args": {"order_id": "*", "amount": "*"}}])
    with s2.decide():
        pass
    with pytest.raises(ConfigError, match="not proposed in session"), s2.commit(plan=plan):
        pass


def test_approved_plan_covers_require_approval():
    gov = Governor(rules="REQUIRE APPROVAL FOR refund\nREQUIRE PLAN")
    gov.register("refund", lambda order_id: "ok", effect="reversible", compensate=lambda c: None)
    s = gov.session("alice")
    plan = decide_plan(s, [{"tool": "refund", "args": {"order_id": "A1"}}])
    s.approve_plan(plan, approver="bob")
    with s.commit(plan=plan) as tx:
        tx.call("refund", order_id="A1")
    refund = [t for t in s.traces if t.tool == "refund"][-1]
    assert refund.decision == "approved"
    assert any(c["check"] == "approval" and "approved plan" in c["detail"] for c in refund.checks)


def test_self_approval_of_a_plan_is_refused():
    gov = Governor()
    gov.register("x", lambda: 1, effect="irreversible")
    s = gov.session("alice")
    plan = decide_plan(s, [{"tool": "x", "args": {}}])
    with pytest.raises(ConfigError, match="own plan"):
        s.approve_plan(plan, approver="alice")
