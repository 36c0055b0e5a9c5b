"""corral.compat.shape.agent: Shape's Agent (github.com/vidanov/shape) on corral's kernel.

Three parts: Shape's README and example programs, run unchanged apart from the import line; the
behaviours Shape's own test_shape.py checks, in our words; and the places where Shape's semantics were
wrong and corral's are asserted instead — each marked "corrected:" with what Shape did.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import corral
from corral import Call
from corral.compat.shape import (
    Agent,
    ApprovalRequired,
    Phase,
    PhaseError,
    ProofTrace,
    RuleViolation,
    ShapeError,
    ToolEffect,
    TxState,
    wrap_tool,
)
from corral.store.audit import verify_chain


class Clock:
    def __init__(self, hour: int, minute: int = 0) -> None:
        self.now = datetime(2026, 11, 24, hour, minute, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def fail(message: str):
    def tool(**kw):
        raise RuntimeError(message)

    return tool


def in_commit(agent: Agent) -> None:
    """Shape's tests step through decide with ``agent.phase.transition`` before ``agent.commit()``."""
    agent.phase.transition(Phase.DECIDE)


# =========================================================================== Shape's README, unchanged


class ReadmeWorld:
    """The functions Shape's README leaves to the reader, recording what happened."""

    def __init__(self, email_fails: bool = False) -> None:
        self.log: list[str] = []
        self.undone: list[Call] = []
        self.email_fails = email_fails

    def lookup_fn(self, id):
        self.log.append(f"lookup {id}")
        return {"id": id, "email": "c1234@example.com"}

    def update_fn(self, id, status):
        self.log.append(f"update {id} {status}")
        return {"id": id, "status": status}

    def undo_fn(self, call):
        self.undone.append(call)
        self.log.append(f"undo {call.args['id']}")

    def email_fn(self, to, template):
        if self.email_fails:
            raise ConnectionError("smtp down")
        self.log.append(f"email {to} {template}")
        return {"sent": True}


def readme_agent(world: ReadmeWorld) -> Agent:
    lookup_fn, update_fn, undo_fn, email_fn = world.lookup_fn, world.update_fn, world.undo_fn, world.email_fn
    # --- from Shape's README, "Quick start" ---
    agent = Agent("support-bot", budget=5.00)

    agent.tool("lookup_customer", effect=ToolEffect.READ,         fn=lookup_fn)
    agent.tool("update_record",   effect=ToolEffect.REVERSIBLE,   fn=update_fn, compensation=undo_fn)
    agent.tool("send_email",      effect=ToolEffect.IRREVERSIBLE, fn=email_fn)

    agent.rules("""
        BLOCK send_email WHEN phase IS NOT commit
        BLOCK * WHEN budget ABOVE 90%
    """)
    return agent


def test_readme_quick_start_as_written_stops_at_commit_because_it_skips_decide():
    # The README goes from explore straight to commit. Shape itself raises PhaseError there (its phase
    # table allows explore → decide only), and so does corral: you decide before you commit.
    world = ReadmeWorld()
    agent = readme_agent(world)
    with pytest.raises(PhaseError):
        # EXPLORE: read tools only. Calling send_email here raises PhaseError.
        with agent.explore() as ctx:
            customer = ctx.call("lookup_customer", id="C-1234")

        # COMMIT: writes unlock, wrapped in a transaction.
        with agent.commit() as tx:
            tx.call("update_record", cost=0.01, id="C-1234", status="welcomed")
            tx.call("send_email",    cost=0.10, to=customer["email"], template="welcome")
            # if send_email raises, update_record is compensated automatically
    assert world.log == ["lookup C-1234"]
    assert [t.tool for t in agent.traces] == ["lookup_customer"]
    assert agent.budget.spent == 0


def test_readme_quick_start_with_its_decide_step_runs_the_transaction():
    world = ReadmeWorld()
    agent = readme_agent(world)
    with agent.explore() as ctx:
        customer = ctx.call("lookup_customer", id="C-1234")
    with agent.decide() as ctx:
        ctx.propose(action="welcome", id="C-1234")
    with agent.commit() as tx:
        tx.call("update_record", cost=0.01, id="C-1234", status="welcomed")
        tx.call("send_email",    cost=0.10, to=customer["email"], template="welcome")
    assert world.log == ["lookup C-1234", "update C-1234 welcomed", "email c1234@example.com welcome"]
    assert tx.tx.state is TxState.COMMITTED
    assert agent.budget.spent == pytest.approx(0.11)
    assert [(t.tool, t.decision, t.tx_id) for t in agent.traces] == [
        ("lookup_customer", "ALLOWED", None),
        ("update_record", "ALLOWED", "T1"),
        ("send_email", "ALLOWED", "T1"),
    ]


def test_readme_send_email_in_explore_raises_phase_error():
    # The README says so; Shape's code raised RuleViolation. What is raised here is both.
    agent = readme_agent(ReadmeWorld())
    with agent.explore() as ctx, pytest.raises(PhaseError) as refused:
        ctx.call("send_email", to="x@example.com", template="welcome")
    assert isinstance(refused.value, RuleViolation)
    assert agent.traces[-1].decision == "BLOCKED"


def test_readme_if_send_email_raises_update_record_is_compensated():
    world = ReadmeWorld(email_fails=True)
    agent = readme_agent(world)
    with agent.explore() as ctx:
        customer = ctx.call("lookup_customer", id="C-1234")
    with agent.decide():
        pass
    with pytest.raises(ConnectionError, match="smtp down"):  # the original error, not TransactionFailed
        with agent.commit() as tx:
            tx.call("update_record", cost=0.01, id="C-1234", status="welcomed")
            tx.call("send_email", cost=0.10, to=customer["email"], template="welcome")
    assert tx.tx.state is TxState.ABORTED
    # corrected: the compensation receives the Call it undoes (Shape called it with no arguments).
    assert [c.tool for c in world.undone] == ["update_record"]
    assert world.undone[0].args == {"id": "C-1234", "status": "welcomed"}
    assert world.undone[0].result == {"id": "C-1234", "status": "welcomed"}
    # corrected: the failed send_email costs nothing (Shape charged both costs before running anything).
    assert agent.budget.spent == pytest.approx(0.01)
    assert agent.traces[-1].error == "ConnectionError: smtp down"


def test_readme_govern_a_framework_agent_with_wrap_tool():
    sent = []

    def search_fn(query):
        return [f"result for {query}"]

    def email_fn(to):
        sent.append(to)
        return "sent"

    # --- from Shape's README, "Govern a framework agent" ---
    agent = Agent("my-agent", budget=5.00)
    governed_search = wrap_tool(agent, "search", search_fn, ToolEffect.READ)
    governed_email  = wrap_tool(agent, "send_email", email_fn, ToolEffect.IRREVERSIBLE)

    with agent.explore():
        assert governed_search(query="shape") == ["result for shape"]
        assert governed_search("corral") == ["result for corral"]  # positional arguments bind too
        with pytest.raises(RuleViolation):
            governed_email(to="a@example.com")
    assert sent == []
    with agent.decide():
        pass
    with agent.commit():
        assert governed_email(to="a@example.com") == "sent"
    assert sent == ["a@example.com"]
    assert governed_email.__name__ == "governed_send_email"


def test_readme_metering_real_llm_cost_with_a_cost_fn():
    class Response(dict):
        pass

    client, MODEL_ID = object(), "anthropic.claude"

    def converse(client, model_id, messages):
        return Response(usage={"inputTokens": 1000, "outputTokens": 200})

    def bedrock_cost(response):
        return response["usage"]["inputTokens"] * 3e-6 + response["usage"]["outputTokens"] * 15e-6

    agent = Agent("my-agent", budget=5.00)
    # --- from Shape's README, "Metering real LLM cost" ---
    agent.tool("call_llm", effect=ToolEffect.READ,
               fn=lambda **kw: converse(client, MODEL_ID, kw["messages"]),
               cost_fn=bedrock_cost)   # budget gates now fire on real dollars

    with agent.explore() as ctx:
        ctx.call("call_llm", messages=[{"role": "user", "content": "hi"}])
    assert agent.budget.spent == pytest.approx(0.006)
    assert agent.traces[-1].budget_spent == pytest.approx(0.006)


# ==================================================================== Shape's example programs


def test_example_customer_service_refund_flow():
    printed = []

    def lookup_order(order_id: str = "", **kw) -> dict:
        return {"order_id": order_id, "amount": 89.99, "status": "delivered", "customer": "alice@example.com"}

    def check_refund_policy(order_id: str = "", **kw) -> dict:
        return {"eligible": True, "reason": "within 30-day window", "max_refund": 89.99}

    def process_refund(order_id: str = "", amount: float = 0, **kw) -> dict:
        printed.append(f"refund {amount:.2f}")
        return {"refunded": True, "amount": amount, "tx_ref": "REF-20260425-001"}

    def undo_refund(tx_ref: str = "REF-20260425-001") -> dict:
        return {"reversed": True}

    def update_order_status(order_id: str = "", status: str = "", **kw) -> dict:
        printed.append(f"status {status}")
        return {"updated": True}

    def send_email(to: str = "", subject: str = "", **kw) -> dict:
        printed.append(f"email {to}")
        return {"sent": True}

    agent = Agent("refund-agent", budget=2.00)

    agent.tool("lookup_order",       effect=ToolEffect.READ,         fn=lookup_order)
    agent.tool("check_refund_policy", effect=ToolEffect.READ,        fn=check_refund_policy)
    agent.tool("process_refund",     effect=ToolEffect.REVERSIBLE,   fn=process_refund, compensation=undo_refund)
    agent.tool("update_order_status", effect=ToolEffect.REVERSIBLE,  fn=update_order_status)
    agent.tool("send_email",         effect=ToolEffect.IRREVERSIBLE, fn=send_email)

    agent.rules("""
        BLOCK send_email WHEN phase IS NOT commit
        BLOCK * WHEN budget ABOVE 90%
        REQUIRE APPROVAL FOR * WHEN tool IS irreversible
        FLAG * WHEN time OUTSIDE 09:00-17:00
    """)

    agent.on_approval(lambda tool, kw: True)  # auto-approve for demo

    with agent.explore() as ctx:
        order = ctx.call("lookup_order", order_id="ORD-7891")
        policy = ctx.call("check_refund_policy", order_id="ORD-7891")

    with agent.decide() as ctx:
        ctx.propose(
            action="full_refund",
            order_id="ORD-7891",
            amount=order["amount"],
            reason=policy["reason"],
        )

    with agent.commit() as tx:
        tx.call("process_refund",      cost=0.50, order_id="ORD-7891", amount=89.99)
        tx.call("update_order_status", cost=0.01, order_id="ORD-7891", status="refunded")
        tx.call("send_email",          cost=0.10, to="alice@example.com", subject="Your refund has been processed")

    # "5 tool calls. 5 proof traces. 1 transaction. $0.61 spent."
    assert tx.tx.state.value == "committed"
    assert f"${agent.budget.spent:.2f} / ${agent.budget.limit:.2f} ({agent.budget.pct:.0f}%)" == "$0.61 / $2.00 (30%)"
    assert len(agent.traces) == 5
    assert all(t.decision in ("ALLOWED", "FLAGGED") for t in agent.traces)
    assert [t.tx_id for t in agent.traces] == [None, None, "T1", "T1", "T1"]
    assert printed == ["refund 89.99", "status refunded", "email alice@example.com"]
    for trace in agent.traces:  # the example prints these fields for every trace
        assert f"{trace.tool} → {trace.decision} ({trace.phase}, ${trace.budget_spent:.2f})"


def test_example_manufacturing_plc_change_behind_approvals():
    written = []

    def read_plc(device: str = "line-3", register: str = "speed") -> dict:
        return {"device": device, "register": register, "value": 100, "unit": "rpm"}

    def write_mes(record: dict = None, **kw) -> dict:  # noqa: RUF013 - the example's own signature
        written.append("mes")
        return {"written": True, "id": "MES-2026-04-20-001"}

    def delete_mes(record_id: str = "MES-2026-04-20-001") -> dict:
        return {"deleted": True}

    def write_plc(device: str = "line-3", value: int = 0, **kw) -> dict:
        written.append(f"plc {value}")
        return {"written": True, "device": device, "value": value}

    def notify_shift(msg: str = "", **kw) -> dict:
        written.append("notify")
        return {"notified": True}

    asked = []
    agent = Agent("production-adjuster", budget=5.00, clock=Clock(3))  # 03:00: after hours

    agent.tool("read_plc", effect=ToolEffect.READ, fn=read_plc)
    agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=write_mes, compensation=delete_mes)
    agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=write_plc)
    agent.tool("notify_shift", effect=ToolEffect.IRREVERSIBLE, fn=notify_shift)

    agent.rules("""
        BLOCK write_plc WHEN phase IS NOT commit
        REQUIRE APPROVAL FOR * WHEN tool IS irreversible
        FLAG * WHEN time OUTSIDE 06:00-22:00
    """)

    agent.on_approval(lambda tool, kw: asked.append(tool) or True)

    with agent.explore() as ctx:
        state = ctx.call("read_plc", device="line-3", register="speed")
    with agent.decide() as ctx:
        plan = ctx.propose(
            adjustment={"speed": 105},
            reason="Production target requires 5% increase",
            confidence=0.92,
        )
    with agent.commit() as tx:
        tx.call("write_mes", cost=0.10, record=plan)
        tx.call("write_plc", cost=0.20, device="line-3", value=105)
        tx.call("notify_shift", cost=0.05, msg="Speed adjusted to 105 rpm on line-3")

    # "4 tool calls, 4 proof traces, 1 transaction, $0.35 spent."
    assert state["value"] == 100
    assert tx.tx.state is TxState.COMMITTED
    assert agent.budget.spent == pytest.approx(0.35)
    assert written == ["mes", "plc 105", "notify"]
    assert asked == ["write_plc", "notify_shift"]
    # after hours: the reads and the write_mes are flagged; approved calls are ALLOWED, as in Shape
    assert [t.decision for t in agent.traces] == ["FLAGGED", "FLAGGED", "ALLOWED", "ALLOWED"]
    for trace in agent.traces:  # the example prints every check's mark and detail
        for rule in trace.rules_evaluated:
            assert isinstance(rule["passed"], bool) and isinstance(rule["detail"], str)


# ======================================================== what Shape's test_shape.py checks, our words


class TestRules:
    def agent(self, **kw) -> Agent:
        agent = Agent("a", **kw)
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: 42)
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        return agent

    def test_a_line_that_does_not_parse_is_a_value_error(self):
        with pytest.raises(ValueError):
            Agent("a").rules("INVALID RULE TEXT")

    def test_comments_and_blank_lines_are_ignored(self):
        agent = self.agent()
        agent.rules("""
            # This is a comment

            BLOCK read_plc WHEN phase IS explore
        """)
        with agent.explore() as ctx, pytest.raises(RuleViolation):
            ctx.call("read_plc")

    def test_block_rule_that_does_not_match_lets_the_call_run(self):
        agent = self.agent()
        agent.rules("BLOCK write_plc WHEN phase IS NOT commit")
        agent.phase.transition(Phase.DECIDE)
        agent.phase.transition(Phase.COMMIT)
        assert agent._execute("write_plc", {}) == "ok"

    def test_block_rule_refuses_a_read(self):
        agent = self.agent()
        agent.rules("BLOCK read_plc WHEN phase IS explore")
        with agent.explore() as ctx, pytest.raises(RuleViolation):
            ctx.call("read_plc")

    def test_wildcard_and_budget_above(self):
        agent = self.agent(budget=10.0)
        agent.rules("BLOCK * WHEN budget ABOVE 80%")
        agent.budget.record(7.0)
        with agent.explore() as ctx:
            assert ctx.call("read_plc") == 42
        agent.budget.record(1.5)
        with agent.explore() as ctx, pytest.raises(RuleViolation):
            ctx.call("read_plc")

    def test_unless(self):
        agent = self.agent(budget=10.0)
        agent.rules("BLOCK * WHEN budget ABOVE 80% UNLESS tool IS read")
        agent.budget.record(8.5)
        with agent.explore() as ctx:
            assert ctx.call("read_plc") == 42

    @pytest.mark.parametrize(("hour", "decision"), [(3, "FLAGGED"), (14, "ALLOWED")])
    def test_time_outside(self, hour, decision):
        agent = self.agent(clock=Clock(hour))
        agent.rules("FLAG * WHEN time OUTSIDE 06:00-22:00")
        with agent.explore() as ctx:
            ctx.call("read_plc")
        assert agent.traces[-1].decision == decision

    def test_flag_lets_the_call_run_and_marks_it(self):
        agent = self.agent()
        agent.rules("FLAG read_plc WHEN phase IS explore")
        with agent.explore() as ctx:
            assert ctx.call("read_plc") == 42
        assert agent.traces[-1].decision == "FLAGGED"

    def test_approval_granted(self):
        agent = self.agent()
        agent.rules("REQUIRE APPROVAL FOR write_plc WHEN tool IS irreversible")
        asked = []
        agent.on_approval(lambda tool, kw: asked.append((tool, kw)) or True)
        in_commit(agent)
        with agent.commit() as tx:
            assert tx.call("write_plc", cost=0.5, value=105) == "ok"
        assert asked == [("write_plc", {"value": 105})]  # (tool_name, kwargs), without the cost
        assert agent.traces[-1].decision == "ALLOWED"
        assert any(c["check"] == "approval" and c["passed"] for c in agent.traces[-1].rules_evaluated)

    def test_approval_denied(self):
        agent = self.agent()
        ran = []
        agent.tool("fire", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: ran.append(kw))
        agent.rules("REQUIRE APPROVAL FOR fire WHEN tool IS irreversible")
        agent.on_approval(lambda tool, kw: False)
        agent.phase.transition(Phase.DECIDE)
        agent.phase.transition(Phase.COMMIT)
        with pytest.raises(ApprovalRequired) as refused:
            agent._execute("fire", {})
        assert isinstance(refused.value, corral.ApprovalDenied)
        assert ran == []
        assert agent.traces[-1].decision == "APPROVAL_REQUIRED"
        assert agent.traces[-1].error.startswith("Approval not granted")


class TestTransactions:
    def test_success_commits(self):
        agent = Agent("a")
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=lambda: None)
        in_commit(agent)
        with agent.commit() as tx:
            tx.call("write_mes", record="plan")
        assert tx.tx.state is TxState.COMMITTED
        assert tx.tx.buffered == [{"tool": "write_mes", "kwargs": {"record": "plan"}, "result": "ok"}]

    def test_a_failing_step_rolls_back_and_its_error_goes_on(self):
        undone = []
        agent = Agent("a")
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok",
                   compensation=lambda: undone.append("write_mes"))
        agent.tool("fail_tool", effect=ToolEffect.REVERSIBLE, fn=fail("boom"), compensation=lambda: None)
        in_commit(agent)
        with pytest.raises(RuntimeError, match="boom"), agent.commit() as tx:
            tx.call("write_mes", record="plan")
            tx.call("fail_tool")
        assert tx.tx.state is TxState.ABORTED
        assert undone == ["write_mes"]

    def test_the_callers_own_exception_rolls_back(self):
        undone = []
        agent = Agent("a")
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok",
                   compensation=lambda: undone.append("write_mes"))
        in_commit(agent)
        with pytest.raises(KeyError), agent.commit() as tx:
            tx.call("write_mes", record="plan")
            raise KeyError("mine")
        assert undone == ["write_mes"]
        assert tx.tx.state is TxState.ABORTED
        assert agent.phase.current is Phase.EXPLORE  # corral: leaving commit starts a new cycle

    def test_transaction_ids_count_up(self):
        agent = Agent("a")
        agent.tool("w", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=lambda: None)
        in_commit(agent)
        with agent.commit() as tx1:
            tx1.call("w")
        in_commit(agent)
        with agent.commit() as tx2:
            tx2.call("w")
        assert (tx1.tx.tx_id, tx2.tx.tx_id) == ("T1", "T2")
        assert [t.tx_id for t in agent.traces] == ["T1", "T2"]


class TestTraces:
    def test_an_allowed_call(self):
        agent = Agent("a", budget=5.0)
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: 42)
        with agent.explore() as ctx:
            ctx.call("read_plc")
        [trace] = agent.traces
        assert isinstance(trace, ProofTrace)
        assert (trace.tool, trace.decision, trace.phase) == ("read_plc", "ALLOWED", "explore")
        assert (trace.budget_limit, trace.budget_spent, trace.result, trace.error) == (5.0, 0.0, 42, None)
        assert trace.timestamp and trace.tx_id is None
        assert trace.trace_id == agent.session.traces[-1].id

    def test_a_blocked_call(self):
        agent = Agent("a")
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        with pytest.raises(RuleViolation), agent.explore() as ctx:
            ctx.call("write_plc")
        [trace] = agent.traces
        assert trace.decision == "BLOCKED"
        assert trace.error.startswith("Blocked by governance")
        assert {"check": "phase", "passed": False} .items() <= trace.rules_evaluated[1].items()

    def test_a_call_in_a_transaction_has_its_tx_id(self):
        agent = Agent("a")
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=lambda: None)
        in_commit(agent)
        with agent.commit() as tx:
            tx.call("write_mes")
        assert agent.traces[-1].tx_id == "T1"

    def test_rules_evaluated_lists_the_rules(self):
        agent = Agent("a")
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: 42)
        agent.rules("FLAG read_plc WHEN phase IS explore")
        with agent.explore() as ctx:
            ctx.call("read_plc")
        rules = [r for r in agent.traces[-1].rules_evaluated if r["check"] == "rule"]
        assert rules and rules[0]["rule"] == "FLAG read_plc WHEN phase IS explore"
        assert rules[0]["passed"] is True  # a flag does not object

    def test_records_read_as_keys_too(self):
        # Shape's docs/traces.md reads traces as dicts: trace["tool"], t["decision"] == "BLOCKED"
        agent = Agent("a")
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: 42)
        with agent.explore() as ctx:
            ctx.call("read_plc")
        blocked = [t for t in agent.traces if t["decision"] == "BLOCKED"]
        assert blocked == [] and agent.traces[0]["tool"] == "read_plc"
        assert dict(agent.traces[0])["result"] == 42
        with pytest.raises(KeyError):
            agent.traces[0]["nope"]


class TestRegistrationAndWrapTool:
    def test_registered_tools_are_listed(self):
        agent = Agent("a")
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda: {"value": 42})
        assert agent.tools["read_plc"]["effect"] is ToolEffect.READ
        assert "read_plc" in agent.governor.tools

    def test_unknown_tool(self):
        agent = Agent("a")
        in_commit(agent)
        with agent.commit() as tx, pytest.raises(ShapeError, match="Unknown tool"):
            tx.call("nonexistent")
        # corrected: the refusal is traced (Shape raised before recording anything)
        assert agent.traces[-1].decision == "BLOCKED"

    def test_a_tool_without_fn_is_simulated(self):
        agent = Agent("a")
        agent.tool("lookup", effect=ToolEffect.READ)
        with agent.explore() as ctx:
            assert ctx.call("lookup", id=1) == {"tool": "lookup", "kwargs": {"id": 1}, "simulated": True}

    def test_wrap_tool_reads(self):
        agent = Agent("a")
        governed_read = wrap_tool(agent, "read_sensor", fn=lambda **kw: {"temp": 22}, effect=ToolEffect.READ)
        with agent.explore():
            assert governed_read()["temp"] == 22

    def test_wrap_tool_refuses_in_the_wrong_phase(self):
        agent = Agent("a")
        governed_write = wrap_tool(agent, "write_plc", fn=lambda **kw: "ok", effect=ToolEffect.IRREVERSIBLE)
        with pytest.raises(RuleViolation), agent.explore():
            governed_write()

    def test_wrap_tool_inside_commit_is_a_transaction_step(self):
        # corrected: Shape's governed callable ran outside the transaction, so it was never rolled back
        undone = []
        agent = Agent("a")
        governed = wrap_tool(agent, "reserve", lambda room: room, ToolEffect.REVERSIBLE,
                             compensation=lambda call: undone.append(call.args["room"]))
        in_commit(agent)
        with pytest.raises(RuntimeError), agent.commit() as tx:
            governed(room="101")
            raise RuntimeError("abort")
        assert undone == ["101"]
        assert tx.tx.buffered[0]["tool"] == "reserve"


class TestManufacturingScenario:
    def make(self, notify=None):
        undone = []
        agent = Agent("production-adjuster", budget=5.00)
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: {"speed": 100, "device": kw.get("device")})
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: {"written": True},
                   compensation=lambda: undone.append("mes"))
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: {"written": True})
        agent.tool("notify_shift", effect=ToolEffect.IRREVERSIBLE, fn=notify or (lambda **kw: {"notified": True}))
        agent.rules("""
            BLOCK write_plc WHEN phase IS NOT commit
            REQUIRE APPROVAL FOR * WHEN tool IS irreversible
        """)
        agent.on_approval(lambda tool, kw: True)
        return agent, undone

    def test_full_lifecycle(self):
        agent, _ = self.make()
        with agent.explore() as ctx:
            assert ctx.call("read_plc", device="line-3")["speed"] == 100
        with agent.decide() as ctx:
            plan = ctx.propose(adjustment={"speed": 105})
        assert plan["proposal"]["adjustment"]["speed"] == 105
        with agent.commit() as tx:
            tx.call("write_mes", cost=0.10, record=plan)
            tx.call("write_plc", cost=0.20, value=105)
            tx.call("notify_shift", cost=0.05, msg="speed adjusted")
        assert tx.tx.state is TxState.COMMITTED
        assert agent.budget.spent == pytest.approx(0.35)
        assert len(agent.traces) == 4  # 1 read + 3 commit steps; the proposal is not a tool call

    def test_a_failing_irreversible_step_before_the_pivot_rolls_back(self):
        agent = Agent("a", budget=5.00)
        undone = []
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok",
                   compensation=lambda: undone.append("mes_undone"))
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=fail("PLC timeout"))
        in_commit(agent)
        with pytest.raises(RuntimeError, match="PLC timeout"), agent.commit() as tx:
            tx.call("write_mes", cost=0.10)
            tx.call("write_plc", cost=0.20)
        assert tx.tx.state is TxState.ABORTED
        assert undone == ["mes_undone"]

    def test_a_failure_after_the_pivot_cannot_be_rolled_back(self):
        # corrected: once write_plc (irreversible) has run, undoing write_mes would leave the PLC and the
        # MES disagreeing; Shape compensated write_mes anyway. corral keeps both, ends the transaction
        # needs_attention and says so on the original exception.
        agent, undone = self.make(notify=fail("pager down"))
        in_commit(agent)
        with pytest.raises(RuntimeError, match="pager down") as raised, agent.commit() as tx:
            tx.call("write_mes", cost=0.10)
            tx.call("write_plc", cost=0.20, value=105)
            tx.call("notify_shift", cost=0.05, msg="speed adjusted")
        assert undone == []
        assert tx.tx.state is TxState.NEEDS_ATTENTION
        assert any("needs attention" in note for note in raised.value.__notes__)


class TestCostFn:
    def test_cost_is_read_from_the_result(self):
        agent = Agent("a", budget=10.00)
        agent.tool("llm_call", effect=ToolEffect.READ, fn=lambda **kw: {"text": "hello", "tokens": 500},
                   cost_fn=lambda r: r["tokens"] * 0.00003)
        with agent.explore() as ctx:
            ctx.call("llm_call", prompt="test")
        assert agent.budget.spent == pytest.approx(0.015)
        assert agent.traces[-1].budget_spent == pytest.approx(0.015)

    def test_the_call_that_crosses_the_limit_runs_and_the_next_is_refused(self):
        agent = Agent("a", budget=0.10)
        calls = []
        agent.tool("llm_call", effect=ToolEffect.READ, fn=lambda **kw: calls.append(1) or {"tokens": 1000},
                   cost_fn=lambda r: r["tokens"] * 0.00003)
        for _ in range(4):  # 0% → 30% → 60% → 90% → 120%: each judged before its own cost
            with agent.explore() as ctx:
                ctx.call("llm_call")
        assert len(calls) == 4
        assert agent.budget.pct == pytest.approx(120.0)
        with pytest.raises(RuleViolation), agent.explore() as ctx:
            ctx.call("llm_call")
        assert len(calls) == 4

    def test_no_cost_fn_costs_nothing(self):
        agent = Agent("a", budget=5.00)
        agent.tool("plain", effect=ToolEffect.READ, fn=lambda **kw: "ok")
        with agent.explore() as ctx:
            ctx.call("plain")
        assert agent.budget.spent == 0.0

    def test_wrap_tool_with_cost_fn(self):
        agent = Agent("a", budget=10.00)
        wrap_tool(agent, "llm", lambda **kw: {"tokens": 1000}, ToolEffect.READ,
                  cost_fn=lambda r: r["tokens"] * 0.00003)
        with agent.explore() as ctx:
            ctx.call("llm")
        assert agent.budget.spent == pytest.approx(0.03)

    def test_cost_fn_may_report_tokens(self):
        agent = Agent("a", budget=10.00)
        agent.tool("llm", effect=ToolEffect.READ, fn=lambda **kw: "text",
                   cost_fn=lambda r: {"cost": 0.02, "tokens_in": 100, "tokens_out": 50})
        with agent.explore() as ctx:
            ctx.call("llm")
        assert agent.budget.spent == pytest.approx(0.02)
        assert (agent.budget.tokens_in, agent.budget.tokens_out) == (100, 50)

    def test_declared_cost_and_measured_cost_add_up(self):
        agent = Agent("a", budget=10.00)
        agent.tool("llm", effect=ToolEffect.READ, fn=lambda **kw: "text", cost_fn=lambda r: 0.02)
        in_commit(agent)
        with agent.commit() as tx:
            tx.call("llm", cost=0.10)
        assert agent.budget.spent == pytest.approx(0.12)


# ==================================================================== corrected semantics


class TestCorrected:
    def test_deny_overrides_instead_of_last_match_wins(self):
        # corrected: Shape let the last matching rule decide, so this FLAG overrode the BLOCK and the
        # call ran. In corral a BLOCK always wins, whatever the order.
        agent = Agent("a")
        ran = []
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: ran.append(1))
        agent.rules("""
            BLOCK read_plc WHEN phase IS explore
            FLAG read_plc WHEN phase IS explore
            ALLOW read_plc WHEN phase IS explore
        """)
        with agent.explore() as ctx, pytest.raises(RuleViolation):
            ctx.call("read_plc")
        assert ran == []
        assert agent.traces[-1].decision == "BLOCKED"

    def test_block_beats_require_approval_and_the_approver_is_not_asked(self):
        agent = Agent("a")
        asked = []
        agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        agent.rules("""
            BLOCK w WHEN phase IS commit
            REQUIRE APPROVAL FOR w WHEN tool IS irreversible
        """)
        agent.on_approval(lambda tool, kw: asked.append(tool) or True)
        in_commit(agent)
        with agent.commit() as tx, pytest.raises(RuleViolation):
            tx.call("w")
        assert asked == []

    def test_a_compensation_that_takes_a_parameter_receives_the_call(self):
        # corrected: Shape called every compensation with no arguments, so it could not know what to undo
        undone: list[Call] = []
        agent = Agent("a")
        agent.tool("refund", effect=ToolEffect.REVERSIBLE, fn=lambda order, amount: {"refund_id": f"R-{order}"},
                   compensation=undone.append)
        in_commit(agent)
        with pytest.raises(RuntimeError), agent.commit() as tx:
            tx.call("refund", order="A1", amount=20)
            tx.call("refund", order="A2", amount=30)
            raise RuntimeError("abort")
        assert [(c.args["order"], c.result["refund_id"]) for c in undone] == [("A2", "R-A2"), ("A1", "R-A1")]
        assert all(c.idempotency_key for c in undone)

    def test_a_blocked_call_is_not_charged(self):
        # corrected: Shape charged tx.call's cost before deciding, so a refused call still cost money
        agent = Agent("a", budget=1.00)
        agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        agent.rules("BLOCK w WHEN phase IS commit")
        in_commit(agent)
        with agent.commit() as tx, pytest.raises(RuleViolation):
            tx.call("w", cost=0.50)
        assert agent.budget.spent == 0.0
        assert agent.traces[-1].budget_spent == 0.0

    def test_a_denied_approval_is_not_charged(self):
        agent = Agent("a", budget=1.00)
        agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        agent.rules("REQUIRE APPROVAL FOR w WHEN tool IS irreversible")
        agent.on_approval(lambda tool, kw: False)
        in_commit(agent)
        with agent.commit() as tx, pytest.raises(ApprovalRequired):
            tx.call("w", cost=0.50)
        assert agent.budget.spent == 0.0

    def test_a_call_that_does_not_fit_the_budget_does_not_run(self):
        # corrected: Shape charged and ran it, then noticed; corral reserves before spending
        agent = Agent("a", budget=1.00)
        ran = []
        agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: ran.append(1))
        in_commit(agent)
        with agent.commit() as tx, pytest.raises(RuleViolation, match="budget"):
            tx.call("w", cost=1.50)
        assert ran == [] and agent.budget.spent == 0.0

    def test_a_failed_call_costs_nothing(self):
        # corrected: Shape charged the declared cost even when the tool raised
        agent = Agent("a", budget=1.00)
        agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=fail("down"))
        in_commit(agent)
        with pytest.raises(RuntimeError), agent.commit() as tx:
            tx.call("w", cost=0.50)
        assert agent.budget.spent == 0.0
        assert agent.traces[-1].error == "RuntimeError: down"

    def test_a_failing_compensation_is_not_swallowed(self):
        # corrected: Shape swallowed a compensation's exception and reported the transaction ABORTED
        agent = Agent("a")

        def cannot_undo():
            raise OSError("undo failed")

        agent.tool("w", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=cannot_undo)
        in_commit(agent)
        with pytest.raises(RuntimeError, match="abort") as raised, agent.commit() as tx:
            tx.call("w")
            raise RuntimeError("abort")
        assert tx.tx.state is TxState.NEEDS_ATTENTION
        assert any("undo failed" in note for note in raised.value.__notes__)
        [compensation] = [t for t in agent.session.traces if t.kind == "compensation"]
        assert compensation.outcome["status"] == "error"

    def test_a_reversible_tool_without_compensation_is_not_pretended_undone(self):
        # corrected: Shape accepted REVERSIBLE without a compensation and, on abort, silently left the
        # step in place while reporting ABORTED. corral ends the transaction needs_attention.
        agent = Agent("a")
        agent.tool("update_record", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok")
        in_commit(agent)
        with pytest.raises(RuntimeError), agent.commit() as tx:
            tx.call("update_record", id="C-1")
            raise RuntimeError("abort")
        assert tx.tx.state is TxState.NEEDS_ATTENTION

    def test_a_refusal_leaves_the_transaction_open_until_it_leaves_the_block(self):
        undone = []
        agent = Agent("a")
        agent.tool("w", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=lambda: undone.append(1))
        agent.tool("x", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        agent.rules("BLOCK x WHEN phase IS commit")
        in_commit(agent)
        with pytest.raises(RuleViolation) as refused, agent.commit() as tx:
            tx.call("w")
            with pytest.raises(RuleViolation):
                tx.call("x")
            assert tx.tx.state is TxState.OPEN  # caught: the transaction goes on
            tx.call("w")
            tx.call("x")  # not caught: it leaves the block
        assert not isinstance(refused.value, corral.TransactionFailed)
        assert tx.tx.state is TxState.ABORTED
        assert undone == [1, 1]

    def test_pending_approval_without_a_callback_can_be_granted_through_corral(self):
        agent = Agent("a")
        ran = []
        agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: ran.append(kw) or "ok")
        agent.rules("REQUIRE APPROVAL FOR w WHEN tool IS irreversible")
        agent.phase.transition(Phase.DECIDE)
        agent.phase.transition(Phase.COMMIT)
        with pytest.raises(ApprovalRequired) as waiting:
            agent._execute("w", {"n": 1})
        assert isinstance(waiting.value, corral.ApprovalPending)
        assert agent.traces[-1].decision == "APPROVAL_REQUIRED"
        agent.governor.approve(waiting.value.approval_id, "bob")
        assert agent._execute("w", {"n": 1}) == "ok"  # that exact call, once
        assert agent.traces[-1].decision == "ALLOWED"
        with pytest.raises(ApprovalRequired):
            agent._execute("w", {"n": 1})
        assert ran == [{"n": 1}]

    def test_an_undeclared_effect_is_irreversible(self):
        # corrected: Shape defaulted to READ, so an undeclared write could run in explore
        agent = Agent("a")
        ran = []
        agent.tool("drop_table", fn=lambda **kw: ran.append(1))
        with agent.explore() as ctx, pytest.raises(RuleViolation):
            ctx.call("drop_table")
        assert ran == [] and agent.tools["drop_table"]["effect"] is ToolEffect.IRREVERSIBLE

    def test_a_tool_name_is_registered_once(self):
        # Shape silently replaced the earlier registration; corral refuses to change a governed tool
        agent = Agent("a")
        agent.tool("t", effect=ToolEffect.READ, fn=lambda **kw: 1)
        with pytest.raises(corral.ConfigError, match="already registered"):
            agent.tool("t", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: 2)

    def test_rules_can_read_the_declared_cost(self):
        # corrected: Shape's rule context had no `cost`, so this rule from its AgentCore payments guide
        # never matched; in corral `cost` is the call's declared cost
        agent = Agent("a", budget=5.00)
        agent.tool("pay_for_data", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "paid")
        agent.rules("REQUIRE APPROVAL FOR * WHEN cost ABOVE 0.50")
        agent.on_approval(lambda tool, kw: False)
        in_commit(agent)
        with agent.commit() as tx:
            assert tx.call("pay_for_data", cost=0.10) == "paid"
            with pytest.raises(ApprovalRequired):
                tx.call("pay_for_data", cost=0.75)
        assert agent.budget.spent == pytest.approx(0.10)

    def test_propose_belongs_to_decide(self):
        agent = Agent("a")
        with agent.explore() as ctx, pytest.raises(PhaseError):
            ctx.propose(action="x")

    def test_phase_transition_to_commit_opens_a_transaction(self):
        undone = []
        agent = Agent("a")
        agent.tool("w", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=lambda: undone.append(1))
        agent.tool("boom", effect=ToolEffect.IRREVERSIBLE, fn=fail("boom"))
        agent.phase.transition(Phase.DECIDE)
        agent.phase.transition(Phase.COMMIT)
        agent._execute("w", {})
        with pytest.raises(RuntimeError):
            agent._execute("boom", {})
        assert undone == [1]  # the write made in commit was a transaction step, so it was undone
        assert agent.traces[-1].tx_id == "T1"
        agent.phase.transition(Phase.EXPLORE)
        assert agent.phase.current is Phase.EXPLORE

    def test_a_commit_block_takes_over_the_transaction_phase_transition_opened(self):
        agent = Agent("a")
        agent.tool("w", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok", compensation=lambda: None)
        agent.phase.transition(Phase.DECIDE)
        agent.phase.transition(Phase.COMMIT)
        agent._execute("w", {"n": 1})
        agent.phase.transition(Phase.COMMIT)  # staying put is a no-op
        with agent.commit() as tx:
            tx.call("w", n=2)
        assert tx.tx.tx_id == "T1" and tx.tx.state is TxState.COMMITTED
        assert [b["kwargs"] for b in tx.tx.buffered] == [{"n": 1}, {"n": 2}]
        assert agent.phase.current is Phase.EXPLORE

    def test_exceptions_are_shape_and_corral_exceptions(self):
        assert issubclass(RuleViolation, ShapeError) and issubclass(RuleViolation, corral.Blocked)
        assert issubclass(PhaseError, ShapeError) and issubclass(PhaseError, corral.PhaseError)
        assert issubclass(ApprovalRequired, ShapeError)
        assert issubclass(ShapeError, corral.GovernanceError)

    def test_every_call_is_in_the_sessions_intact_audit_chain(self):
        world = ReadmeWorld(email_fails=True)
        agent = readme_agent(world)
        with agent.explore() as ctx:
            ctx.call("lookup_customer", id="C-1234")
            with pytest.raises(RuleViolation):
                ctx.call("send_email", to="x", template="y")
        with agent.decide() as ctx:
            ctx.propose(action="welcome")
        with pytest.raises(ConnectionError), agent.commit() as tx:
            tx.call("update_record", cost=0.01, id="C-1234", status="welcomed")
            tx.call("send_email", cost=0.10, to="x", template="y")
        kinds = [(t.kind, t.tool, t.decision) for t in agent.session.traces]
        assert kinds == [
            ("call", "lookup_customer", "allowed"),
            ("call", "send_email", "blocked"),
            ("plan", "propose", "allowed"),
            ("call", "update_record", "allowed"),
            ("call", "send_email", "allowed"),
            ("compensation", "update_record", "allowed"),
        ]
        assert [t.trace_id for t in agent.traces] == [
            t.id for t in agent.session.traces if t.kind == "call"
        ]
        store = agent.governor.store
        assert verify_chain(store.records(agent.session.id), store.head(agent.session.id))[0]


class TestInnerWorkings:
    """Shape's tests reach into ``agent._execute``; ``_evaluate`` and ``_rule_context`` are there too."""

    def agent(self) -> Agent:
        agent = Agent("a", budget=5.0)
        agent.tool("read_plc", effect=ToolEffect.READ, fn=fail("must not run"))
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=fail("must not run"))
        agent.rules("""
            FLAG read_plc WHEN phase IS explore
            REQUIRE APPROVAL FOR write_plc WHEN tool IS irreversible
        """)
        return agent

    def test_evaluate_is_a_dry_run(self):
        agent = self.agent()
        asked = []
        agent.on_approval(lambda tool, kw: asked.append(tool) or True)
        flagged = agent._evaluate("read_plc", {})
        assert isinstance(flagged, ProofTrace) and flagged.decision == "FLAGGED"
        assert agent._evaluate("write_plc", {}).decision == "BLOCKED"  # explore: the phase refuses it
        in_commit(agent)
        agent.phase.transition(Phase.COMMIT)
        needs = agent._evaluate("write_plc", {"value": 1})
        assert needs.decision == "APPROVAL_REQUIRED"
        assert any(r["check"] == "rule" and not r["passed"] for r in needs.rules_evaluated)
        # nothing ran, nothing was asked, spent or recorded
        assert asked == [] and agent.traces == [] and agent.budget.spent == 0.0
        assert [t for t in agent.session.traces if t.kind == "call"] == []

    def test_evaluate_refuses_an_unknown_tool_as_shape_did(self):
        with pytest.raises(ShapeError, match="Unknown tool"):
            Agent("a")._evaluate("nonexistent", {})

    def test_rule_context_holds_shapes_facts(self):
        agent = Agent("a", budget=4.0, clock=Clock(3, 5))
        agent.budget.record(1.0)
        ctx = agent._rule_context("write_plc", ToolEffect.IRREVERSIBLE)
        assert {k: ctx[k] for k in ("phase", "tool", "budget", "time")} == {
            "phase": "explore", "tool": "irreversible", "budget": 25.0, "time": "03:05"
        }

    def test_the_approval_callback_gets_the_arguments_as_given(self):
        def write(value, unit="rpm", **kw):
            return f"{value} {unit}"

        agent = Agent("a")
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=write)
        agent.rules("REQUIRE APPROVAL FOR write_plc WHEN tool IS irreversible")
        asked = []
        agent.on_approval(lambda tool, kw: asked.append((tool, kw)) or True)
        in_commit(agent)
        with agent.commit() as tx:
            assert tx.call("write_plc", cost=0.1, value=105) == "105 rpm"
        assert asked == [("write_plc", {"value": 105})]  # not the default, not the cost



def test_calls_from_many_threads_each_get_their_own_record():
    import threading

    agent = Agent("a", budget=100.0)
    gate = threading.Barrier(8)

    def echo(n):
        gate.wait(timeout=10)  # all eight calls are decided and running at once
        return n

    agent.tool("echo", effect=ToolEffect.READ, fn=echo)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with agent.explore() as ctx:
                assert ctx.call("echo", n=n) == n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    by_id = {t.id: t for t in agent.session.traces}
    assert sorted(t.result for t in agent.traces) == list(range(8))
    for record in agent.traces:  # each record was made from the corral trace of its own call
        assert by_id[record.trace_id].args == {"n": record.result}
