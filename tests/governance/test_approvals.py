import asyncio
import time

import pytest

from corral import Approval, ApprovalDenied, ApprovalPending, Blocked, ConfigError, Governor

RULES = 'REQUIRE APPROVAL FOR refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"'


def make(approver=None, clock=None, **kw):
    gov = Governor(agent="desk", rules=RULES, approver=approver, phases=False, clock=clock, **kw)
    done = []
    gov.register("refund", lambda order_id, amount: done.append((order_id, amount)) or "ok", effect="irreversible")
    return gov, done


def test_small_refund_needs_no_approval():
    gov, done = make()
    gov.session("alice").call("refund", order_id="A1", amount=20)
    assert done == [("A1", 20)]


def test_sync_approver_true_runs_and_records_the_approver():
    asked = []

    def bob(request):
        asked.append(request)
        return Approval(True, approver="bob", reason="looks fine")

    gov, done = make(bob)
    s = gov.session("alice")
    s.call("refund", order_id="A1", amount=120)
    assert done == [("A1", 120)]
    (request,) = asked
    assert request.tool == "refund" and request.args == {"order_id": "A1", "amount": 120}
    assert len(request.binding) == 64
    trace = s.traces[-1]
    assert trace.decision == "approved"
    assert trace.reason == "refunds over $100 need a human (<rules>:1)"
    check = next(c for c in trace.checks if c["check"] == "approval")
    assert check["approver"] == "bob" and check["passed"]


def test_plain_callable_is_recorded_under_its_name_and_tuple_reason():
    def carol(request):
        return (False, "not today")

    gov, done = make(carol)
    s = gov.session("alice")
    with pytest.raises(ApprovalDenied, match="not today") as info:
        s.call("refund", order_id="A1", amount=120)
    assert done == []
    assert info.value.trace.decision == "denied"
    check = next(c for c in info.value.trace.checks if c["check"] == "approval")
    assert check["approver"] == "carol"


def test_async_approver_in_sync_and_async_calls():
    async def dave(request):
        await asyncio.sleep(0)
        return True

    gov, done = make(dave)
    s = gov.session("alice")
    s.call("refund", order_id="A1", amount=120)

    async def main():
        await s.acall("refund", order_id="A2", amount=130)

    asyncio.run(main())
    assert done == [("A1", 120), ("A2", 130)]


@pytest.mark.parametrize("kind", ["raises", "garbage", "timeout"])
def test_approver_faults_fail_closed_with_a_trace(kind):
    def approver(request):
        if kind == "raises":
            raise RuntimeError("approver crashed")
        if kind == "timeout":
            time.sleep(1)
            return True
        return "yes please"

    gov, done = make(approver, approver_timeout=0.2)
    s = gov.session("alice")
    with pytest.raises(Blocked, match="the approver failed") as info:
        s.call("refund", order_id="A1", amount=120)
    assert done == []
    assert info.value.trace.decision == "blocked"
    assert s.traces[-1].decision == "blocked"


def test_self_approval_is_refused():
    gov, done = make(lambda r: Approval(True, approver="alice"))
    s = gov.session("alice")
    with pytest.raises(ApprovalDenied, match="own request"):
        s.call("refund", order_id="A1", amount=120)
    assert done == []


def test_pending_then_approved_runs_exactly_once(clock):
    gov, done = make(clock=clock)
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as info:
        s.call("refund", order_id="A1", amount=120)
    request = info.value.request
    assert info.value.trace.decision == "pending"
    assert [r.id for r in gov.pending_approvals()] == [request.id]
    # asking again while pending does not create a second request
    with pytest.raises(ApprovalPending) as again:
        s.call("refund", order_id="A1", amount=120)
    assert again.value.request.id == request.id
    with pytest.raises(ConfigError, match="own request"):
        gov.approve(request.id, approver="alice")
    gov.approve(request.id, approver="bob", reason="ok")
    # a different call is not covered by the approval
    with pytest.raises(ApprovalPending):
        s.call("refund", order_id="A1", amount=121)
    s.call("refund", order_id="A1", amount=120)
    assert done == [("A1", 120)]
    # single use: the same call needs a new approval
    with pytest.raises(ApprovalPending):
        s.call("refund", order_id="A1", amount=120)
    assert done == [("A1", 120)]


def test_approval_resumes_in_a_resumed_session(clock):
    gov, done = make(clock=clock)
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as info:
        s.call("refund", order_id="A1", amount=120)
    gov.approve(info.value.request.id, approver="bob")
    resumed = gov.session(id=s.id)
    resumed.call("refund", order_id="A1", amount=120)
    assert done == [("A1", 120)]


def test_expired_approval_is_denied(clock):
    gov, done = make(clock=clock)
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as info:
        s.call("refund", order_id="A1", amount=120)
    gov.approve(info.value.request.id, approver="bob")
    clock.advance(minutes=16)
    with pytest.raises(ApprovalDenied, match="expired"):
        s.call("refund", order_id="A1", amount=120)
    assert done == []


def test_approving_after_expiry_is_refused(clock):
    gov, _ = make(clock=clock)
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as info:
        s.call("refund", order_id="A1", amount=120)
    clock.advance(minutes=15)
    with pytest.raises(ApprovalDenied, match="expired"):
        gov.approve(info.value.request.id, approver="bob")


def test_denied_pending_request_is_reported_once():
    gov, done = make()
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as info:
        s.call("refund", order_id="A1", amount=120)
    gov.deny(info.value.request.id, approver="bob", reason="fraud risk")
    with pytest.raises(ApprovalDenied, match="fraud risk"):
        s.call("refund", order_id="A1", amount=120)
    assert done == []


def test_approval_is_asked_only_after_every_other_check_passes():
    asked = []
    gov = Governor(rules=RULES + "\nBLOCK refund WHEN arg.order_id IS X", approver=lambda r: asked.append(r) or True)
    gov.register("refund", lambda order_id, amount: "ok", effect="irreversible")
    s = gov.session("alice")
    with pytest.raises(Blocked):
        s.call("refund", order_id="A1", amount=120)  # explore: the phase refuses first
    with s.decide():
        pass
    with s.commit() as tx, pytest.raises(Blocked):
        tx.call("refund", order_id="X", amount=120)  # a BLOCK rule refuses
    assert asked == []


def test_unknown_approval_ids_and_missing_approver_are_errors():
    gov, _ = make()
    with pytest.raises(ConfigError, match="no approval request"):
        gov.approve("nope", approver="bob")
    with pytest.raises(ConfigError, match="must name who decides"):
        gov.approve("nope", approver="")


def test_a_synchronous_denial_is_not_reused_for_the_next_call():
    answers = iter([False, True])
    gov, done = make(lambda r: next(answers))
    s = gov.session("alice")
    with pytest.raises(ApprovalDenied):
        s.call("refund", order_id="A1", amount=120)
    s.call("refund", order_id="A1", amount=120)  # asked again, approved this time
    assert done == [("A1", 120)]
