"""corral.compat.shape.errors: Shape's exceptions, each also the corral exception it stands for."""

from __future__ import annotations

import pytest

import corral
from corral.compat.shape import (
    Agent,
    ApprovalAwaited,
    ApprovalRefused,
    ApprovalRequired,
    BudgetError,
    BudgetExceeded,
    Phase,
    PhaseError,
    PhaseViolation,
    RuleViolation,
    ShapeError,
    ToolEffect,
)
from corral.compat.shape.errors import translate
from corral.governance.traces import Trace


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (ShapeError, (corral.GovernanceError,)),
        (PhaseError, (ShapeError, corral.PhaseError)),
        (BudgetError, (ShapeError,)),
        (RuleViolation, (ShapeError, corral.Blocked)),
        (ApprovalRequired, (ShapeError,)),
        (PhaseViolation, (RuleViolation, PhaseError)),
        (BudgetExceeded, (RuleViolation, BudgetError)),
        (ApprovalRefused, (ApprovalRequired, corral.ApprovalDenied)),
        (ApprovalAwaited, (ApprovalRequired, corral.ApprovalPending)),
    ],
)
def test_each_is_shapes_and_corrals(error, bases):
    assert all(issubclass(error, base) for base in bases)


def blocked(*failed: str) -> corral.Blocked:
    checks = [{"check": name, "passed": False, "detail": "no"} for name in failed]
    return corral.Blocked("refused", trace=Trace({"kind": "call", "checks": checks}))


class TestTranslate:
    def test_each_refusal_becomes_the_exception_a_shape_program_catches(self):
        assert type(translate(blocked("phase"), "w")) is PhaseViolation
        assert type(translate(blocked("budget"), "w")) is BudgetExceeded
        assert type(translate(blocked("rule"), "w")) is RuleViolation
        assert type(translate(corral.ApprovalDenied("no"), "w")) is ApprovalRefused
        assert type(translate(corral.ApprovalPending("wait"), "w")) is ApprovalAwaited
        assert type(translate(corral.PhaseError("no"), "commit", call=False)) is PhaseError

    def test_the_trace_travels_with_it(self):
        refusal = blocked("rule")
        assert translate(refusal, "w").trace is refusal.trace

    def test_an_unknown_tool_is_said_in_shapes_words(self):
        error = translate(blocked("tool"), "nonexistent", known=False)
        assert type(error) is RuleViolation and str(error).startswith("Unknown tool: nonexistent")

    def test_a_refused_phase_change_names_the_budget_when_the_budget_refused_it(self):
        assert type(translate(blocked("phase"), "commit", call=False, over_budget=True)) is BudgetExceeded
        assert type(translate(blocked("phase"), "commit", call=False)) is RuleViolation

    def test_a_shape_error_and_anything_else_pass_unchanged(self):
        mine = RuleViolation("mine")
        assert translate(mine, "w") is mine
        other = corral.ConfigError("bad")
        assert translate(other, "w") is other


def test_what_an_agent_raises():
    agent = Agent("a", budget=1.0)
    agent.tool("w", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "ok")
    with agent.explore() as ctx, pytest.raises(PhaseViolation):
        ctx.call("w")
    with pytest.raises(PhaseError):
        agent.commit()  # explore → commit
    agent.phase.transition(Phase.DECIDE)
    with agent.commit() as tx, pytest.raises(BudgetExceeded, match="budget"):
        tx.call("w", cost=2.0)  # does not fit
