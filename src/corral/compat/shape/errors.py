"""Shape's exceptions, each also the corral exception it stands for, so both kinds of program catch it.

Shape raises ``RuleViolation`` for every refusal and ``ApprovalRequired`` when approval is not granted.
Here the object raised is a subclass that says more — a phase refusal is also a ``PhaseError`` (as
Shape's README promises), a budget refusal also a ``BudgetError``, a refused approval also a
``corral.ApprovalDenied`` and one left pending also a ``corral.ApprovalPending`` — so ``except
RuleViolation`` still catches what it caught in Shape.
"""

from __future__ import annotations

from corral.errors import ApprovalDenied, ApprovalPending, Blocked, GovernanceError
from corral.errors import PhaseError as KernelPhaseError


class ShapeError(GovernanceError):
    """Base of every error this module raises, as in Shape; also a ``corral.GovernanceError``."""


class PhaseError(ShapeError, KernelPhaseError):
    """A phase transition the phase machine does not allow (explore → commit), or ``propose`` outside
    decide. Also a ``corral.PhaseError``."""


class BudgetError(ShapeError):
    """Money: a call the budget refuses raises ``BudgetExceeded``, which is this and a ``RuleViolation``."""


class RuleViolation(ShapeError, Blocked):
    """The call was refused — by the phase, the budget, a rule — and nothing ran. Also a ``corral.Blocked``."""


class PhaseViolation(RuleViolation, PhaseError):
    """A call refused because its effect is not allowed in this phase.

    Shape raises ``RuleViolation`` here while its README promises ``PhaseError``; this is both.
    """


class BudgetExceeded(RuleViolation, BudgetError):
    """A call (or a new commit) refused by the budget: a gate it reached, or a cost that does not fit.

    Shape raises ``RuleViolation`` here; this is that and a ``BudgetError``.
    """


class ApprovalRequired(ShapeError):
    """A rule requires approval and it was not granted; nothing ran.

    What is raised is one of the two subclasses below, so corral code can tell a refusal from a wait.
    """


class ApprovalRefused(ApprovalRequired, ApprovalDenied):
    """The approval callback said no. Also a ``corral.ApprovalDenied``."""


class ApprovalAwaited(ApprovalRequired, ApprovalPending):
    """No approval callback is set: the request is stored as pending (``.approval_id``). Also a
    ``corral.ApprovalPending``: ``agent.governor.approve(exc.approval_id, "bob")`` lets the same call
    run exactly once when it is made again."""


def translate(
    exc: GovernanceError, what: str, *, known: bool = True, call: bool = True, over_budget: bool = False
) -> GovernanceError:
    """A kernel refusal as the Shape exception a Shape program catches (and a corral program too).

    ``what`` is the tool (``call``) or the phase being entered; ``known`` says whether the tool is
    registered (an unknown tool is refused with Shape's words, "Unknown tool"); ``over_budget`` says
    that a refused phase change was refused by a budget gate.
    """
    if isinstance(exc, ShapeError):
        return exc
    trace = exc.trace
    if isinstance(exc, ApprovalPending):
        return ApprovalAwaited(
            f"Tool '{what}' requires approval: {exc}", trace=trace, request=getattr(exc, "request", None)
        )
    if isinstance(exc, ApprovalDenied):
        return ApprovalRefused(f"Tool '{what}' requires approval, not granted: {exc}", trace=trace)
    if isinstance(exc, KernelPhaseError):
        return PhaseError(str(exc), trace=trace)
    if isinstance(exc, Blocked):
        failed = {c.get("check") for c in (getattr(trace, "checks", None) or ()) if c.get("passed") is False}
        if not call:
            kind = BudgetExceeded if over_budget else RuleViolation
            return kind(f"{what} blocked: {exc}", trace=trace)
        if not known:
            return RuleViolation(f"Unknown tool: {what} ({exc})", trace=trace)
        if "phase" in failed:
            return PhaseViolation(f"Tool '{what}' blocked: {exc}", trace=trace)
        if "budget" in failed:
            return BudgetExceeded(f"Tool '{what}' blocked: {exc}", trace=trace)
        return RuleViolation(f"Tool '{what}' blocked: {exc}", trace=trace)
    return exc


__all__ = [
    "ApprovalAwaited",
    "ApprovalRefused",
    "ApprovalRequired",
    "BudgetError",
    "BudgetExceeded",
    "PhaseError",
    "PhaseViolation",
    "RuleViolation",
    "ShapeError",
    "translate",
]
