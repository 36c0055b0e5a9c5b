"""Shape's public API on corral's kernel: change one import, keep your program, get corrected semantics.

Shape (github.com/vidanov/shape) is a one-file agent-governance library. This package offers every
public name of its ``shape.py`` — ``Agent``, ``Phase``, ``ToolEffect``, ``RuleAction``, ``TxState``,
``ProofTrace``, ``Rule``, ``Transaction``, ``parse_rules``, ``BudgetManager``, ``PhaseManager``,
``PhaseContext``, ``TransactionContext``, ``wrap_tool`` and the exceptions ``ShapeError``,
``PhaseError``, ``BudgetError``, ``RuleViolation``, ``ApprovalRequired`` — with Shape's signatures,
but every call is decided by a corral ``Governor`` and runs in a corral ``Session``, and every decision
lands in the session's hash-chained audit log.

    from corral.compat.shape import Agent, ToolEffect

    agent = Agent("support-bot", budget=5.00)
    agent.tool("lookup_customer", effect=ToolEffect.READ, fn=lookup_fn)
    agent.tool("update_record", effect=ToolEffect.REVERSIBLE, fn=update_fn, compensation=undo_fn)
    agent.rules("BLOCK * WHEN budget ABOVE 90%")

    with agent.explore() as ctx:
        customer = ctx.call("lookup_customer", id="C-1234")
    with agent.decide() as ctx:
        ctx.propose(action="welcome", id="C-1234")
    with agent.commit() as tx:
        tx.call("update_record", cost=0.01, id="C-1234", status="welcomed")

``agent.traces`` lists one Shape-shaped ``ProofTrace`` per tool call; the full corral traces — plans,
phase refusals, compensations — are in ``agent.session.traces``, and ``agent.governor`` is the kernel.

Where this differs from Shape, on purpose (DESIGN §10: a Shape program gets correct semantics):

Rules
- Deny overrides: any matched BLOCK blocks, whatever the order (Shape let the last matching rule decide,
  so a FLAG after a BLOCK let the call run), and a blocked call never asks the approval callback.
- A condition that cannot be evaluated (a missing argument, a fact ``Rule.evaluate`` was not given, a
  wrong type) is indeterminate: a BLOCK or REQUIRE APPROVAL rule then matches (fail closed), an ALLOW
  or FLAG rule does not. Shape treated it as not met, so a BLOCK on a missing fact let the call run.
- ``UNLESS`` is an exact negation: ``UNLESS budget ABOVE 80%`` is ``budget AT MOST 80%`` (Shape's
  ``BELOW 80%`` was false at exactly 80%), and ``Rule.conditions`` lists it so. Time ranges include both
  ends at minute resolution and a range over midnight (``22:00-06:00``) means what a person means
  (Shape compared strings, so that range matched nothing).
- The rule language is corral's, of which Shape's is a subset: globs as targets (``send_*``), ``OR``,
  ``NOT``, ``IN``, ``MATCHES``, ``arg.NAME``, ``cost``, ``principal.role``, ``calls(…)``, ``BECAUSE``. A
  rule that does not parse, or names an unknown field or operator, raises ``RuleSyntaxError`` (a
  ``ValueError``, as Shape raised) with line and column — Shape silently dropped what its pattern did
  not recognise. ``Rule.conditions`` lists a part that is not one comparison as ``(its text, "", "")``.

Transactions
- A compensation that takes a parameter receives the ``Call`` it undoes (``call.args``,
  ``call.result``, ``call.idempotency_key``); one that takes none is called as Shape called it.
- A failing compensation is not swallowed: the others still run, the transaction ends
  ``TxState.NEEDS_ATTENTION`` (a state Shape does not have) and the exception leaving the block carries
  a note saying what could not be undone. Shape reported ``ABORTED`` and said nothing.
- A REVERSIBLE tool registered without a compensation cannot be undone: rolling back a step of it ends
  the transaction ``NEEDS_ATTENTION`` instead of pretending, as Shape did, that it was ``ABORTED``.
- Once an IRREVERSIBLE step has run (the pivot), a later failure does not compensate the earlier steps
  — that would leave the world half-changed — and the transaction ends ``NEEDS_ATTENTION``. Shape
  compensated them anyway.
- The exception that leaves a commit block is the original one (the tool's, the refusal, yours), never
  corral's ``TransactionFailed``. Leaving the block returns the agent to explore: a new cycle.
- ``agent.phase.transition(Phase.COMMIT)`` opens a transaction too, so writes made after it are steps
  that can be undone; the next phase change (or a ``with agent.commit()`` block) commits it.

Budget
- ``tx.call(name, cost=…)`` reserves the cost before the call and charges it only if the call succeeds:
  a blocked, refused or failed call costs nothing (Shape charged before deciding, even for a call it
  then blocked), and a call whose cost does not fit what is left does not run.
- ``BudgetManager`` keeps exact decimal money; ``record`` refuses a negative amount and a limit below 0 is
  refused. The PAUSE gate (``slope_threshold``) looks at the last minute's charges, so a pause lifts once
  spending calms down (Shape looked at the last ten charges however old, and never lifted it).
- ``ProofTrace.budget_spent`` is the spend after the call.

Phases, tools, errors
- A tool registered without an effect is IRREVERSIBLE (Shape assumed READ, so an undeclared write ran in
  explore); this holds for ``agent.tool`` and ``wrap_tool``. A tool name is registered once.
- ``ctx.propose`` belongs to decide (``PhaseError`` elsewhere) and is written to the audit chain.
- ``PhaseManager.current`` is read-only: the phase changes only through ``transition``.
- A call refused in the wrong phase raises ``PhaseViolation`` — a ``RuleViolation``, as Shape raised,
  and a ``PhaseError``, as Shape's README says; a budget refusal raises ``BudgetExceeded``, a
  ``RuleViolation`` and a ``BudgetError``. Every exception here is also a ``corral.GovernanceError``.
- Without ``on_approval``, a call that needs approval raises ``ApprovalRequired`` (an
  ``ApprovalAwaited``) and its request is stored as pending: ``agent.governor.approve(id, "bob")`` lets
  that exact call run once. An unknown tool is refused and traced (Shape raised before recording).
- ``Transaction.abort()`` raises ``ShapeError`` when a compensation failed, after running the others.
"""

from corral.compat.shape.agent import Agent, PhaseContext, TransactionContext, wrap_tool
from corral.compat.shape.budget import AgentBudget, BudgetManager
from corral.compat.shape.errors import (
    ApprovalAwaited,
    ApprovalRefused,
    ApprovalRequired,
    BudgetError,
    BudgetExceeded,
    PhaseError,
    PhaseViolation,
    RuleViolation,
    ShapeError,
)
from corral.compat.shape.phases import AgentPhase, Phase, PhaseManager, ToolEffect
from corral.compat.shape.rules import Rule, RuleAction, parse_rules
from corral.compat.shape.traces import ProofTrace
from corral.compat.shape.transactions import Transaction, TxState

__all__ = [
    "Agent",
    "AgentBudget",
    "AgentPhase",
    "ApprovalAwaited",
    "ApprovalRefused",
    "ApprovalRequired",
    "BudgetError",
    "BudgetExceeded",
    "BudgetManager",
    "Phase",
    "PhaseContext",
    "PhaseError",
    "PhaseManager",
    "PhaseViolation",
    "ProofTrace",
    "Rule",
    "RuleAction",
    "RuleViolation",
    "ShapeError",
    "ToolEffect",
    "Transaction",
    "TransactionContext",
    "TxState",
    "parse_rules",
    "wrap_tool",
]
