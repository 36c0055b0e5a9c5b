from decimal import Decimal

import pytest

from corral import Blocked, ConfigError, Governor


def make(budget=1.0, gates=None, phases=False):
    gov = Governor(agent="a", budget=budget, gates=gates, phases=phases)
    gov.register("q", lambda: "ok", effect="read", cost=0.25)
    gov.register("w", lambda: "ok", effect="irreversible", cost=0.25)
    return gov


def test_budget_view_without_budget():
    gov = Governor()
    view = gov.session().budget
    assert (view.limit, view.spent, view.reserved, view.pct, view.gate) == (None, 0.0, 0.0, 0.0, None)


def test_reserve_settle_and_gates_in_order():
    gov = make()
    s = gov.session()
    s.call("q")
    assert s.budget.spent == 0.25 and s.budget.reserved == 0 and s.budget.gate is None
    s.call("q")
    assert s.budget.pct == 50.0 and s.budget.gate == "degrade"
    trace = s.traces[-1]
    s.call("q")
    assert s.budget.gate == "force_decide"
    with pytest.raises(Blocked, match="force_decide"):
        s.call("w")  # no writes at force_decide
    s.call("q")  # reads still run; this one fills the budget exactly
    assert s.budget.spent == 1.0 and s.budget.gate == "stop"
    with pytest.raises(Blocked, match="stop gate"):
        s.call("q")  # the next one is refused
    assert s.budget.spent == 1.0  # blocked calls cost nothing
    assert trace.budget["spent"] == 0.25 and trace.budget["reserved"] == 0.25


def test_degrade_gate_is_signalled_in_the_trace():
    gov = make()
    s = gov.session()
    s.call("q")
    s.call("q")
    s.call("q")
    check = next(c for c in s.traces[-1].checks if c["check"] == "budget")
    assert check["gate"] == "degrade" and check["passed"] is True


def test_a_call_that_does_not_fit_does_not_run():
    gov = Governor(budget=0.3, gates={"degrade": 0.99, "force_decide": 0.995, "stop": 1.0})
    ran = []
    gov.register("big", lambda: ran.append(1), effect="read", cost=0.5)
    s = gov.session()
    with pytest.raises(Blocked, match="more than the budget has left"):
        s.call("big")
    assert ran == [] and s.budget.spent == 0 and s.budget.reserved == 0


def test_failed_calls_settle_at_zero_and_cost_fn_sees_results():
    gov = Governor(budget=10)

    def flaky(fail: bool):
        if fail:
            raise RuntimeError("down")
        return {"tokens": 3}

    gov.register("f", flaky, effect="read", cost=1, cost_fn=lambda r: r["tokens"] * 0.5)
    s = gov.session()
    with pytest.raises(RuntimeError):
        s.call("f", fail=True)
    assert s.budget.spent == 0
    s.call("f", fail=False)
    assert s.budget.spent == 1.5
    assert s.traces[-1].outcome["cost"] == 1.5


def test_nested_scopes_agent_budget_shared_between_sessions():
    gov = Governor(budget={"session": 1.0, "agent": 1.5}, gates={"degrade": 1, "force_decide": 1, "stop": 1})
    gov.register("q", lambda: "ok", effect="read", cost=0.5)
    a, b = gov.session("a"), gov.session("b")
    a.call("q")
    a.call("q")
    b.call("q")
    with pytest.raises(Blocked):
        b.call("q")  # the session has room; the agent scope does not
    assert b.budget.limit == 1.5 and b.budget.pct == 100.0


def test_exact_arithmetic_over_thousands_of_calls():
    gov = Governor(budget=1000, phases=False)
    gov.register("cent", lambda: None, effect="read", cost=0.01)
    s = gov.session()
    for _ in range(3000):
        s.call("cent")
    assert gov.budget_state(s.id).tightest.spent == Decimal("30.00")
    assert s.budget.spent == 30.0


@pytest.mark.parametrize(
    ("budget", "gates", "match"),
    [
        ({"project": 1}, None, "unknown scope"),
        (-1, None, "≥ 0"),
        ("lots", None, "must be a number"),
        (1, {"degrade": 0.8, "force_decide": 0.5}, "must not be above"),
        (1, {"panic": 0.5}, "unknown gate"),
        (1, {"stop": 90}, "fraction"),
    ],
)
def test_bad_budget_config(budget, gates, match):
    with pytest.raises(ConfigError, match=match):
        Governor(budget=budget, gates=gates)
