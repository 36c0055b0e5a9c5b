"""corral.compat.shape.budget: Shape's BudgetManager on corral's budget arithmetic, and agent.budget on
the session's ledger."""

from __future__ import annotations

import pytest

from corral import ConfigError
from corral.compat.shape import (
    Agent,
    AgentBudget,
    BudgetError,
    BudgetManager,
    Phase,
    RuleViolation,
    ToolEffect,
)
from corral.store.audit import verify_chain


def in_commit(agent: Agent) -> None:
    agent.phase.transition(Phase.DECIDE)


class TestBudgetManager:
    def test_it_starts_empty(self):
        bm = BudgetManager(10.0)
        assert (bm.limit, bm.spent, bm.pct, bm.reserved, bm.remaining) == (10.0, 0.0, 0.0, 0.0, 10.0)
        assert bm.check_gate() is None and bm.gate is None

    def test_recorded_spend_moves_pct_exactly(self):
        bm = BudgetManager(10.0)
        bm.record(3.0)
        assert bm.pct == 30.0 and bm.spent == 3.0 and bm.remaining == 7.0

    def test_money_does_not_drift(self):
        bm = BudgetManager(100.0)
        for _ in range(1000):
            bm.record(0.1)
        assert bm.spent == 100.0 and bm.pct == 100.0  # float addition would make 99.9999999999986
        assert bm.check_gate() == "STOP"

    @pytest.mark.parametrize(
        ("spent", "gate"),
        [(2.0, None), (4.99, None), (5.0, "DEGRADE"), (5.5, "DEGRADE"), (7.49, "DEGRADE"), (7.5, "FORCE_DECIDE"),
         (9.99, "FORCE_DECIDE"), (10.0, "STOP"), (12.0, "STOP")],
    )
    def test_a_gate_is_reached_at_its_threshold(self, spent, gate):
        bm = BudgetManager(10.0)
        bm.record(spent)
        assert bm.check_gate() == gate
        assert bm.gate == (gate.lower() if gate else None)

    def test_recording_past_the_limit_is_allowed(self):
        bm = BudgetManager(1.0)
        bm.record(0.75)
        bm.record(0.75)  # money already spent is booked, whatever the limit
        assert bm.spent == 1.5 and bm.pct == 150.0 and bm.remaining == -0.5

    def test_a_zero_budget_has_no_gates(self):
        bm = BudgetManager(0.0)
        assert bm.pct == 0.0
        bm.record(5.0)
        assert bm.pct == 0.0 and bm.check_gate() is None and bm.spent == 0.0  # nothing to measure against
        assert bm.limit == 0.0 and bm.remaining is None

    @pytest.mark.parametrize("amount", [-1.0, float("nan"), float("inf"), "a lot", None, True])
    def test_spending_that_cannot_be_booked_is_refused(self, amount):
        bm = BudgetManager(10.0)
        bm.record(1.0)
        with pytest.raises(ConfigError) as refused:
            bm.record(amount)
        assert isinstance(refused.value, ValueError)
        assert bm.spent == 1.0

    def test_a_negative_limit_is_refused(self):
        with pytest.raises(ConfigError, match="budget limit"):
            BudgetManager(-5.0)

    def test_gates_can_be_set(self):
        bm = BudgetManager(10.0, gates={"degrade": 0.2, "force_decide": 0.4})
        bm.record(2.0)
        assert bm.check_gate() == "DEGRADE"
        bm.record(2.0)
        assert bm.check_gate() == "FORCE_DECIDE"
        with pytest.raises(ConfigError, match="must not be above"):
            BudgetManager(10.0, gates={"degrade": 0.9, "force_decide": 0.5})

    def test_tokens_are_counted(self):
        bm = BudgetManager(10.0)
        bm.record(0.02, tokens_in=100, tokens_out=40)
        bm.record(0.01, tokens_in=10)
        assert (bm.tokens_in, bm.tokens_out) == (110, 40)

    def test_spending_fast_pauses_and_a_calm_minute_lifts_it(self):
        bm = BudgetManager(10.0, slope_threshold=0.5)
        bm.record(1.0)
        assert bm.check_gate() is None  # one charge has no slope
        bm.record(1.0)
        assert bm.paused() and bm.check_gate() == "PAUSE"
        bm.history = [(t - 120, a) for t, a in bm.history]  # two minutes later
        assert bm.slope() == 0.0 and bm.check_gate() is None

    def test_without_a_slope_threshold_there_is_no_pause(self):
        bm = BudgetManager(10.0)
        for _ in range(5):
            bm.record(1.0)
        assert not bm.paused() and bm.check_gate() == "DEGRADE"

    def test_repr_says_where_it_stands(self):
        bm = BudgetManager(2.0)
        bm.record(0.61)
        assert repr(bm) == "<BudgetManager $0.61 of $2.00 (30.5%)>"


class TestAgentBudget:
    def test_starts_empty(self):
        agent = Agent("a", budget=10.0)
        assert agent.budget.spent == 0.0 and agent.budget.pct == 0.0 and agent.budget.limit == 10.0

    def test_recorded_spend_moves_pct(self):
        agent = Agent("a", budget=10.0)
        agent.budget.record(3.0)
        assert agent.budget.pct == 30.0
        assert agent.session.budget.spent == 3.0  # it is the session's corral ledger

    @pytest.mark.parametrize(
        ("spent", "gate"), [(2.0, None), (5.5, "DEGRADE"), (7.5, "FORCE_DECIDE"), (10.0, "STOP")]
    )
    def test_gates(self, spent, gate):
        agent = Agent("a", budget=10.0)
        agent.budget.record(spent)
        assert agent.budget.check_gate() == gate

    def test_no_budget(self):
        assert Agent("a").budget is None
        assert Agent("a", budget=0.0).budget is None

    def test_stop_gate_blocks_even_reads(self):
        agent = Agent("a", budget=1.00)
        ran = []
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: ran.append(1))
        agent.budget.record(1.00)
        with agent.explore() as ctx, pytest.raises(RuleViolation):
            ctx.call("read_plc")
        assert ran == []

    def test_force_decide_gate_refuses_a_new_commit(self):
        agent = Agent("a", budget=10.0)
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
        agent.budget.record(7.5)
        in_commit(agent)
        with pytest.raises(RuleViolation), agent.commit() as tx:
            tx.call("write_plc")

    def test_cost_in_a_transaction_is_charged(self):
        agent = Agent("a", budget=10.0)
        seen = []
        agent.tool("write_mes", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: seen.append(kw) or "ok",
                   compensation=lambda: None)
        in_commit(agent)
        with agent.commit() as tx:
            tx.call("write_mes", cost=2.50, record="plan")
        assert agent.budget.spent == 2.50
        assert seen == [{"record": "plan"}]  # the cost never reaches the tool


    def test_agent_budget_is_a_budget_manager_over_the_ledger(self):
        agent = Agent("a", budget=10.0)
        assert isinstance(agent.budget, BudgetManager) and isinstance(agent.budget, AgentBudget)
        with pytest.raises(AttributeError):
            agent.budget.spent = 0.0  # type: ignore[misc]

    def test_recorded_spending_is_in_the_audit_chain(self):
        agent = Agent("a", budget=10.0)
        agent.budget.record(1.25)
        [spend] = [t for t in agent.session.traces if t.kind == "spend"]
        assert spend.outcome["cost"] == 1.25 and spend.decision == "allowed"
        store = agent.governor.store
        assert verify_chain(store.records(agent.session.id), store.head(agent.session.id))[0]

    def test_a_budget_refusal_is_a_budget_error(self):
        agent = Agent("a", budget=1.00)
        agent.tool("read", effect=ToolEffect.READ, fn=lambda **kw: 1)
        agent.budget.record(1.00)
        with agent.explore() as ctx, pytest.raises(BudgetError) as refused:
            ctx.call("read")
        assert isinstance(refused.value, RuleViolation)  # what Shape raised, still caught as before
        with pytest.raises(BudgetError):
            agent.phase.transition(Phase.DECIDE)
            agent.commit()


def test_spending_too_fast_pauses_the_agent():
    agent = Agent("a", budget=10.0, slope_threshold=0.5)
    ran = []
    agent.tool("read", effect=ToolEffect.READ, fn=lambda **kw: ran.append(1))
    agent.budget.record(1.0)
    agent.budget.record(1.0)  # $2 within a few microseconds
    assert agent.budget.check_gate() == "PAUSE"
    with pytest.raises(RuleViolation, match="slope"), agent.explore() as ctx:
        ctx.call("read")
    assert ran == []
    assert agent.traces[-1].decision == "BLOCKED"
    assert agent.session.traces[-1].decision == "blocked"  # the refusal is in the audit chain


def test_a_pause_lifts_once_the_last_minute_was_calm():
    # corrected: Shape measured the slope over the last ten charges however old, so with no new
    # charges (every call refused) the pause never lifted
    agent = Agent("a", budget=10.0, slope_threshold=0.5)
    agent.tool("read", effect=ToolEffect.READ, fn=lambda **kw: "ok")
    agent.budget.record(1.0)
    agent.budget.record(1.0)
    assert agent.budget.check_gate() == "PAUSE"
    agent.budget.history = [(t - 120, a) for t, a in agent.budget.history]  # two minutes later
    assert agent.budget.check_gate() is None
    with agent.explore() as ctx:
        assert ctx.call("read") == "ok"
