"""The governance decision, top to bottom: may this call run now, with this tool, at this cost?

``decide`` is pure: it reads the facts it is given and returns a ``Decision`` with every check it made.
It does no I/O and changes nothing; the governor reserves budget, asks approvers and writes traces
around it. The checks run in a fixed order — tool, phase, plan, budget, rules — and every one is
recorded, so a trace always shows the whole argument, not just the first objection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from corral.governance.budget import FORCE_DECIDE, STOP, BudgetState, money
from corral.governance.effects import READ
from corral.governance.phases import COMMIT, phase_allows
from corral.governance.plans import Plan
from corral.governance.rules import decide as decide_rules
from corral.governance.rules import shadow_verdict
from corral.struct import field, struct

ALLOWED = "allowed"
FLAGGED = "flagged"
BLOCKED = "blocked"
APPROVAL_REQUIRED = "approval_required"


_ZERO = Decimal(0)


class Facts:
    """What the rules may look at (``RuleFacts``): one object per call, built once, read many times."""

    __slots__ = (
        "agent",
        "args",
        "budget_pct",
        "call_log",
        "cost",
        "effect",
        "labels",
        "now",
        "phase",
        "principal",
        "remaining",
        "roles",
        "spent",
        "tags",
        "tool",
    )

    def __init__(
        self,
        tool: str,
        effect: str,
        phase: str,
        args: Mapping[str, Any],
        cost: Decimal,
        budget: BudgetState,
        principal: str | None,
        roles: tuple[str, ...],
        agent: str | None,
        now: datetime,
        call_log: Sequence[tuple[str, datetime]],
        labels: frozenset[str] = frozenset(),
        tags: frozenset[str] = frozenset(),
    ) -> None:
        self.tool = tool
        self.effect = effect
        self.phase = phase
        self.args = args
        self.cost = cost
        least = budget.least_left
        if least is None:  # no budget: nothing to work out
            self.budget_pct, self.spent, self.remaining = 0.0, _ZERO, None
        else:
            self.budget_pct = float(budget.fraction * 100)
            self.spent = least.spent
            self.remaining = least.remaining
        self.principal = principal
        self.roles = roles
        self.agent = agent
        self.now = now
        self.call_log = call_log
        self.labels = labels  # what the session has read (§15)
        self.tags = tags  # what the tool is


@struct(slots=True)
class Decision:
    """The verdict on one call: ``allowed``, ``flagged``, ``blocked`` or ``approval_required``."""

    decision: str
    reason: str
    checks: list[dict[str, Any]]
    effect: str | None = None
    cost: Decimal = Decimal(0)
    plan_step: int | None = None
    approval_reason: str | None = None
    flags: list[str] = field(default_factory=list)
    # what the decision would have been with the shadow rules enforced (§14): {decision, rules, reason},
    # or None when no shadow rule bears on this call; never changes ``decision``
    shadow: dict[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        return self.decision in (ALLOWED, FLAGGED)


@struct(slots=True)
class CallContext:
    """Everything ``decide`` needs about the call and the session it happens in."""

    tool: str
    effect: str
    args: Mapping[str, Any]  # as the tool receives them, signature defaults applied
    phase: str
    phases_enabled: bool
    in_transaction: bool
    plan: Plan | None
    cost: Decimal
    budget: BudgetState
    facts: Facts
    bind: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None  # applies the tool's defaults to a plan step


def decide(ctx: CallContext, policy: Any) -> Decision:
    """Run every check in order and combine them: any failed check blocks; rules decide the rest."""
    checks: list[dict[str, Any]] = []
    refusals: list[str] = []

    # 1. the tool (the caller has found it registered, or would not be here)
    checks.append({"check": "tool", "passed": True, "detail": f"{ctx.tool} is registered, effect {ctx.effect}"})

    # 2. the phase: is this effect allowed now?
    if not ctx.phases_enabled:
        checks.append({"check": "phase", "passed": True, "detail": "phases are off for this agent"})
    elif phase_allows(ctx.phase, ctx.effect):
        checks.append({"check": "phase", "passed": True, "detail": f"{ctx.phase} allows {ctx.effect}"})
    else:
        detail = f"{ctx.phase} allows only reads; {ctx.effect} calls need the commit phase"
        checks.append({"check": "phase", "passed": False, "detail": detail})
        refusals.append(f"{ctx.effect} call {ctx.tool} is not allowed in {ctx.phase} (commit first)")

    # 3. the plan: under REQUIRE PLAN a write in commit must match an unused step
    plan_step = None
    if ctx.effect != READ and ctx.phase == COMMIT and ctx.phases_enabled:
        plan = ctx.plan
        if plan is not None:
            plan_step = plan.find_step(ctx.tool, ctx.args, ctx.bind)
        if policy.require_plan:
            if plan is None:
                checks.append({"check": "plan", "passed": False, "detail": "REQUIRE PLAN: no plan bound to commit"})
                refusals.append(f"{ctx.tool}: REQUIRE PLAN and this commit has no plan (propose one in decide)")
            elif plan_step is None:
                detail = f"REQUIRE PLAN: {ctx.tool} with these args matches no unused step of plan {plan.id}"
                checks.append({"check": "plan", "passed": False, "detail": detail})
                refusals.append(f"{ctx.tool} with these arguments is not in plan {plan.id} (or already used)")
            else:
                checks.append(
                    {"check": "plan", "passed": True, "detail": f"matches step {plan_step + 1} of plan {plan.id}"}
                )
        elif plan is not None:
            detail = (
                f"matches step {plan_step + 1} of plan {plan.id}"
                if plan_step is not None
                else f"not in plan {plan.id} (plans are not required)"
            )
            checks.append({"check": "plan", "passed": True, "detail": detail})

    # 4. the budget gate, judged before this call's own reservation
    budget = ctx.budget
    gate = budget.gate
    if budget.tightest is None:
        checks.append({"check": "budget", "passed": True, "detail": "no budget", "gate": None})
    else:
        t = budget.tightest
        used = money(t.spent + t.reserved)
        base = f"{used} of {money(t.limit)} ({budget.pct:g}%) used in {t.kind}; this call ~{money(ctx.cost)}"
        if gate == STOP:
            checks.append({"check": "budget", "passed": False, "detail": f"stop gate: {base}", "gate": gate})
            refusals.append(f"budget stop gate reached ({budget.pct:g}% of {money(t.limit)} used)")
        elif gate == FORCE_DECIDE and ctx.effect != READ:
            checks.append({"check": "budget", "passed": False, "detail": f"force_decide gate: {base}", "gate": gate})
            refusals.append(
                f"budget force_decide gate reached ({budget.pct:g}% used): no writes; go back to decide and re-plan"
            )
        elif any(u is not None and ctx.cost > u.remaining for u in (budget.least_left,)):
            detail = f"does not fit: {base}, {money(budget.least_left.remaining)} left"  # type: ignore[union-attr]
            checks.append({"check": "budget", "passed": False, "detail": detail, "gate": gate})
            refusals.append(f"{ctx.tool} would cost ~{money(ctx.cost)}, more than the budget has left")
        else:
            checks.append({"check": "budget", "passed": True, "detail": base, "gate": gate})

    # 5. the rules: every rule aimed at this tool, deny-overrides (shadow rules traced, never counted)
    outcomes = policy.evaluate(ctx.facts)
    for outcome in outcomes:
        checks.append(outcome.to_check())
    verdict = decide_rules(outcomes, policy.default, ctx.tool)
    decision = _decision(ctx, verdict, outcomes, refusals, checks, plan_step)
    if policy.has_shadow:
        decision.shadow = _shadow(ctx, policy, outcomes, verdict, refusals, plan_step)
    return decision


def _decision(ctx: CallContext, verdict: Any, outcomes: Sequence[Any], refusals: list[str],
              checks: list[dict[str, Any]], plan_step: int | None) -> Decision:
    if refusals:
        if verdict.decision == "blocked":
            refusals.append(verdict.reason)
        return Decision(BLOCKED, "; ".join(refusals), checks, ctx.effect, ctx.cost, plan_step)
    flags = [o.text for o in verdict.deciding] if verdict.decision == FLAGGED else []
    if verdict.decision == "blocked":
        return Decision(BLOCKED, verdict.reason, checks, ctx.effect, ctx.cost, plan_step)
    if verdict.decision == "approval_required":
        return Decision(
            APPROVAL_REQUIRED, verdict.reason, checks, ctx.effect, ctx.cost, plan_step, verdict.reason
        )
    if verdict.decision == FLAGGED:
        first = verdict.deciding[0]
        reason = f"allowed, flagged for review: {first.because or first.text} ({first.source})"
    else:
        reason = _allowed_reason(ctx, outcomes)
    return Decision(verdict.decision, reason, checks, ctx.effect, ctx.cost, plan_step, None, flags)


def _shadow(ctx: CallContext, policy: Any, outcomes: Sequence[Any], verdict: Any, refusals: list[str],
            plan_step: int | None) -> dict[str, Any] | None:
    """What the decision would have been with the shadow rules, and a shadow file's DEFAULT BLOCK and
    REQUIRE PLAN, enforced — the kernel's own refusals still standing. None when nothing shadowed bears
    on this call."""
    found = shadow_verdict(outcomes, policy, ctx.tool)
    plan_refused = (
        policy.shadow_plan_differs and ctx.effect != READ and ctx.phase == COMMIT and ctx.phases_enabled
        and (ctx.plan is None or plan_step is None)
    )
    if found is None and not plan_refused:
        return None
    decision = found.decision if found is not None else verdict.decision
    rules = list(found.rules) if found is not None else []
    reason = found.reason if found is not None else verdict.reason
    if plan_refused:
        decision, reason = BLOCKED, f"REQUIRE PLAN: {ctx.tool} matches no unused step of a bound plan"
        rules.append(policy.shadow_plan_source)
    if refusals and decision != BLOCKED:
        decision, reason = BLOCKED, "; ".join(refusals)
    return {"decision": decision, "rules": rules, "reason": reason}


def _allowed_reason(ctx: CallContext, outcomes: Sequence[Any]) -> str:
    allows = [o for o in outcomes if o.action == "allow" and o.matched and not o.shadow]
    if allows:  # outcomes come in file order
        return f"{allows[0].text} ({allows[0].source})"
    phase = "phases off" if not ctx.phases_enabled else f"{ctx.phase} allows {ctx.effect}"
    return f"{phase}; no rule objects"
