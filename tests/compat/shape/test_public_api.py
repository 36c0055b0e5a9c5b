"""corral.compat.shape: every public name of Shape's shape.py, with Shape's parameters in Shape's order,
so a Shape program (and Shape's own test file) runs with one import line changed."""

from __future__ import annotations

import inspect

import pytest

import corral.compat.shape as shape

SHAPE_NAMES = [
    "Agent", "ApprovalRequired", "BudgetError", "BudgetManager", "Phase", "PhaseContext", "PhaseError",
    "PhaseManager", "ProofTrace", "Rule", "RuleAction", "RuleViolation", "ShapeError", "ToolEffect",
    "Transaction", "TransactionContext", "TxState", "parse_rules", "wrap_tool",
]


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_every_public_name_is_offered(name):
    assert name in shape.__all__ and getattr(shape, name) is not None


# What Shape's callables take, leading parameters in order; corral adds only after them (or keyword-only).
SIGNATURES = [
    (shape.Agent, ["name", "budget"]),
    (shape.Agent.tool, ["self", "name", "effect", "fn", "compensation", "cost_fn"]),
    (shape.Agent.rules, ["self", "text"]),
    (shape.Agent.on_approval, ["self", "callback"]),
    (shape.Agent.explore, ["self"]),
    (shape.Agent.decide, ["self"]),
    (shape.Agent.commit, ["self"]),
    (shape.Agent._execute, ["self", "tool_name", "kwargs", "tx"]),
    (shape.Agent._evaluate, ["self", "tool_name", "kwargs", "tx"]),
    (shape.Agent._rule_context, ["self", "tool_name", "effect"]),
    (shape.wrap_tool, ["agent", "tool_name", "fn", "effect", "compensation", "cost_fn"]),
    (shape.parse_rules, ["text"]),
    (shape.Rule, ["action", "tool_pattern", "conditions"]),
    (shape.Rule.matches_tool, ["self", "tool_name"]),
    (shape.Rule.evaluate, ["self", "ctx"]),
    (shape.BudgetManager, ["limit"]),
    (shape.BudgetManager.record, ["self", "amount"]),
    (shape.BudgetManager.check_gate, ["self"]),
    (shape.PhaseManager, []),
    (shape.PhaseManager.transition, ["self", "target"]),
    (shape.PhaseManager.allows_effect, ["self", "effect"]),
    (shape.Transaction, ["tx_id", "state", "buffered", "compensations"]),
    (shape.Transaction.buffer, ["self", "tool", "kwargs", "result", "compensation"]),
    (shape.Transaction.commit, ["self"]),
    (shape.Transaction.abort, ["self"]),
    (shape.ProofTrace, ["tool", "decision", "phase", "budget_spent", "budget_limit", "rules_evaluated",
                        "timestamp", "duration_s", "tx_id", "result", "error"]),
    (shape.PhaseContext, ["agent", "phase"]),
    (shape.PhaseContext.call, ["self", "tool_name"]),
    (shape.TransactionContext, ["agent", "tx"]),
    (shape.TransactionContext.call, ["self", "tool_name", "cost"]),
]


@pytest.mark.parametrize(("target", "leading"), SIGNATURES, ids=lambda v: getattr(v, "__qualname__", ""))
def test_shapes_parameters_come_first_in_shapes_order(target, leading):
    params = list(inspect.signature(target).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert positional[: len(leading)] == leading
    # anything corral adds after Shape's parameters has a default, so Shape's calls still bind
    assert all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in params[len(leading):])


@pytest.mark.parametrize(
    ("enum", "members"),
    [
        (shape.Phase, {"EXPLORE": "explore", "DECIDE": "decide", "COMMIT": "commit"}),
        (shape.ToolEffect, {"READ": "read", "REVERSIBLE": "reversible", "IRREVERSIBLE": "irreversible"}),
        (shape.RuleAction, {"BLOCK": "block", "ALLOW": "allow", "REQUIRE_APPROVAL": "require_approval",
                            "FLAG": "flag"}),
    ],
)
def test_enums_have_shapes_members_and_values(enum, members):
    assert {m.name: m.value for m in enum} == members


def test_tx_state_has_shapes_members_and_one_more():
    states = {m.name: m.value for m in shape.TxState}
    assert states == {"OPEN": "open", "COMMITTED": "committed", "ABORTED": "aborted",
                      "NEEDS_ATTENTION": "needs_attention"}

