import asyncio

import pytest

from corral import Blocked, Call, Governor, PhaseError, TransactionFailed


class World:
    """A tiny bank, mail room and hotel whose state the tests inspect."""

    def __init__(self, gov: Governor, *, fail_on=(), compensation_fails=()):
        self.log: list[str] = []
        self.compensated: list[Call] = []
        self.fail_on = set(fail_on)
        self.compensation_fails = set(compensation_fails)

        def refund(order_id, amount):
            if "refund" in self.fail_on:
                raise RuntimeError("bank down")
            self.log.append(f"refund {order_id} {amount}")
            return {"refund_id": f"R-{order_id}"}

        def void(call: Call):
            if "refund" in self.compensation_fails:
                raise RuntimeError("void failed")
            self.compensated.append(call)
            self.log.append(f"void {call.result['refund_id']}")

        def reserve(room):
            if "reserve" in self.fail_on:
                raise RuntimeError("hotel full")
            self.log.append(f"reserve {room}")
            return room

        def cancel(call: Call):
            self.compensated.append(call)
            self.log.append(f"cancel {call.args['room']}")

        def email(to):
            if "email" in self.fail_on:
                raise RuntimeError("smtp down")
            self.log.append(f"email {to}")

        gov.register("refund", refund, effect="reversible", compensate=void)
        gov.register("reserve", reserve, effect="reversible", compensate=cancel)
        gov.register("email", email, effect="irreversible")
        gov.register("lookup", lambda q: q, effect="read")


def setup(**kw):
    gov = Governor(agent="tx", retry_backoff=0)
    world = World(gov, **kw)
    s = gov.session("alice")
    with s.decide():
        pass
    return gov, world, s


def test_commit_runs_steps_then_deferred():
    gov, world, s = setup()
    with s.commit() as tx:
        tx.call("refund", order_id="A1", amount=20)
        tx.defer("email", to="a@b.c")
        assert world.log == ["refund A1 20"]
    assert tx.state == "committed"
    assert world.log == ["refund A1 20", "email a@b.c"]
    statuses = [(e["tool"], e["status"]) for e in gov.store.steps(tx.id)]
    assert statuses == [("refund", "INTENT"), ("refund", "DONE"), ("email", "INTENT"), ("email", "DONE")]


def test_failing_step_compensates_done_steps_in_reverse_with_the_call():
    gov, world, s = setup(fail_on={"email"})
    with pytest.raises(TransactionFailed) as info, s.commit() as tx:
        tx.call("refund", order_id="A1", amount=20)
        tx.call("reserve", room="101")
        tx.call("lookup", q="x")
        tx.call("email", to="x")
    assert world.log == ["refund A1 20", "reserve 101", "cancel 101", "void R-A1"]
    assert [c.tool for c in world.compensated] == ["reserve", "refund"]
    first = world.compensated[1]
    assert first.args == {"order_id": "A1", "amount": 20}
    assert first.result == {"refund_id": "R-A1"}
    assert first.idempotency_key == f"{tx.id}:1"
    assert tx.state == "rolled_back"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.tx is tx and info.value.failed_compensations == []
    kinds = [(t.kind, t.tool, t.status) for t in s.traces]
    assert ("compensation", "reserve", "ok") in kinds and ("compensation", "refund", "ok") in kinds
    refund_trace = next(t for t in s.traces if t.kind == "call" and t.tool == "refund")
    assert refund_trace.outcome["status"] == "compensated"
    assert s.phase == "explore"


def test_exception_leaving_the_block_rolls_back():
    gov, world, s = setup()
    with pytest.raises(TransactionFailed) as info, s.commit() as tx:
        tx.call("refund", order_id="A1", amount=20)
        raise ValueError("changed my mind")
    assert isinstance(info.value.__cause__, ValueError)
    assert world.log == ["refund A1 20", "void R-A1"]
    assert tx.state == "rolled_back"


def test_refusal_leaves_transaction_open_and_logs_no_step():
    gov = Governor(agent="tx", rules="BLOCK refund WHEN arg.amount ABOVE 100", retry_backoff=0)
    world = World(gov)
    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        with pytest.raises(Blocked):
            tx.call("refund", order_id="A1", amount=500)
        assert tx.state == "open"
        tx.call("refund", order_id="A2", amount=5)
    assert tx.state == "committed"
    assert world.log == ["refund A2 5"]
    assert [e["status"] for e in gov.store.steps(tx.id)] == ["INTENT", "DONE"]


def test_failed_compensation_ends_needs_attention_and_is_reported():
    gov, world, s = setup(fail_on={"reserve"}, compensation_fails={"refund"})
    with pytest.raises(TransactionFailed, match="void failed") as info, s.commit() as tx:
        tx.call("refund", order_id="A1", amount=20)
        tx.call("reserve", room="1")
    assert tx.state == "needs_attention"
    (failed,) = info.value.failed_compensations
    assert failed["tool"] == "refund" and "void failed" in failed["error"]
    statuses = [e["status"] for e in gov.store.steps(tx.id) if e["tool"] == "refund"]
    assert statuses == ["INTENT", "DONE", "COMPENSATING", "COMPENSATING", "COMPENSATING", "COMPENSATION_FAILED"]


def test_pivot_failure_after_irreversible_needs_attention_without_compensation():
    gov, world, s = setup(fail_on={"reserve"})
    with pytest.raises(TransactionFailed, match="needs attention") as info, s.commit() as tx:
        tx.call("refund", order_id="A1", amount=20)
        tx.call("email", to="x")  # the pivot
        tx.call("reserve", room="1")
    assert tx.state == "needs_attention"
    assert "void" not in " ".join(world.log)
    assert "refund" in str(info.value) and "email" in str(info.value)


def test_retryable_steps_after_the_pivot_are_retried_with_the_same_key():
    gov = Governor(retry_backoff=0)
    attempts = []

    def flaky_notify(to):
        attempts.append(to)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    gov.register("charge", lambda: "charged", effect="irreversible")
    gov.register("notify", flaky_notify, effect="irreversible", retryable=True)
    s = gov.session()
    with s.decide():
        pass
    with s.commit() as tx:
        tx.call("charge")
        assert tx.call("notify", to="x") == "ok"
    assert tx.state == "committed" and len(attempts) == 3
    keys = {e["key"] for e in gov.store.steps(tx.id) if e["tool"] == "notify"}
    assert keys == {f"{tx.id}:2"}


def test_deferred_call_is_checked_when_queued():
    gov = Governor(rules="BLOCK email WHEN arg.to IS banned", retry_backoff=0)
    world = World(gov)
    s = gov.session()
    with s.decide():
        pass
    with s.commit() as tx:
        with pytest.raises(Blocked, match=r"arg\.to IS banned"):
            tx.defer("email", to="banned")
    assert tx.state == "committed" and world.log == []
    assert s.traces[-1].decision == "blocked"


def test_deferred_call_refused_when_it_runs_rolls_back():
    gov = Governor(rules="BLOCK email WHEN calls(refund) AT LEAST 1", retry_backoff=0)
    world = World(gov)
    s = gov.session()
    with s.decide():
        pass
    with pytest.raises(TransactionFailed, match="deferred email was refused") as info, s.commit() as tx:
        tx.defer("email", to="x")  # fine now: no refund yet
        tx.call("refund", order_id="A1", amount=5)
    assert isinstance(info.value.__cause__, Blocked)
    assert tx.state == "rolled_back"
    assert world.log == ["refund A1 5", "void R-A1"]


def test_finished_transaction_refuses_calls():
    gov, world, s = setup()
    with s.commit() as tx:
        pass
    with pytest.raises(PhaseError, match="committed"):
        tx.call("refund", order_id="A", amount=1)
    with pytest.raises(PhaseError):
        tx.defer("email", to="x")


def test_async_transaction_with_async_tools_and_compensations():
    gov = Governor(retry_backoff=0)
    log = []

    async def book(room):
        await asyncio.sleep(0)
        log.append(f"book {room}")
        return room

    async def unbook(call):
        await asyncio.sleep(0)
        log.append(f"unbook {call.args['room']}")

    async def explode():
        raise RuntimeError("boom")

    gov.register("book", book, effect="reversible", compensate=unbook)
    gov.register("explode", explode, effect="reversible", compensate=unbook)

    async def main():
        s = gov.session()
        with s.decide():
            pass
        async with s.commit() as tx:
            assert await tx.acall("book", room="1") == "1"
        assert tx.state == "committed"
        with s.decide():
            pass
        with pytest.raises(TransactionFailed):
            async with s.commit() as tx2:
                await tx2.acall("book", room="2")
                await tx2.acall("explode")
        assert tx2.state == "rolled_back"

    asyncio.run(main())
    assert log == ["book 1", "book 2", "unbook 2"]


def test_s_call_inside_commit_is_a_transaction_step():
    gov, world, s = setup(fail_on={"email"})
    with pytest.raises(TransactionFailed), s.commit():
        s.call("refund", order_id="A1", amount=1)
        s.call("email", to="x")
    assert world.log == ["refund A1 1", "void R-A1"]


def test_calls_after_a_rollback_inside_the_block_are_refused_and_traced():
    gov, world, s = setup(fail_on={"reserve"})
    with pytest.raises(TransactionFailed), s.commit() as tx:
        with pytest.raises(TransactionFailed):
            tx.call("reserve", room="1")
        with pytest.raises(PhaseError, match="rolled_back") as info:
            s.call("email", to="x")  # the session is still inside the block
        assert info.value.trace.decision == "blocked"
        raise TransactionFailed("leave")
    assert "email x" not in world.log
    assert s.traces[-1].decision == "blocked" or any(t.tool == "email" and t.decision == "blocked" for t in s.traces)
