"""What to do about a refusal, read from the check that refused it — for a model or a person to act on.

Every enforcement point answers a refusal with the reason (the trace's) and a hint. The hint comes from
the trace's checks, never from the message text: the first failed check says which part of governance
refused (tool, phase, plan, budget, a rule, the transaction, a protected file, a fault), and the
audience decides the words — a model in the harness or behind the MCP proxy is told which phase tool to
call (``PhaseTools``); a person at Claude Code's prompt is told which ``corral`` command to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    GovernanceError,
    GovernanceFault,
    PhaseError,
)
from corral.struct import struct


@struct(frozen=True, slots=True)
class PhaseTools:
    """The names under which a model moves between phases (the harness's, or the proxy's ``corral_*``)."""

    decide: str = "begin_decide"
    propose: str = "propose_plan"
    commit: str = "begin_commit"
    explore: str = "back_to_explore"
    finish: str = "finish_commit"


HARNESS = PhaseTools()


def failed_check(exc: BaseException) -> dict[str, Any] | None:
    """The check that refused the call: the first one that failed, else a matched BLOCK or approval rule."""
    trace = getattr(exc, "trace", None)
    checks: list[Mapping[str, Any]] = list(getattr(trace, "checks", None) or []) if trace is not None else []
    for check in checks:
        if check.get("passed") is False and check.get("check") != "rule":
            return dict(check)
    for check in checks:
        if check.get("check") == "rule" and check.get("matched") and check.get("action") in ("block", "approval"):
            return dict(check)
    return None


def hint(
    exc: BaseException,
    *,
    phase: str | None = None,
    phases: bool = True,
    tools: PhaseTools | None = None,
    session_id: str | None = None,
    agent: str | None = None,
) -> str:
    """One sentence: what to do next. ``tools`` names the phase tools of a model's enforcement point;
    without them the hint names the ``corral`` commands a person runs (``session_id``, ``agent``)."""
    if isinstance(exc, ApprovalPending):
        approval = exc.approval_id or "ID"
        return f"a person approves it with `corral approvals approve {approval} --as NAME`; then call it again"
    if isinstance(exc, ApprovalDenied):
        return "do not retry this call as it is: a person refused it (or let the approval expire)"
    failed = failed_check(exc)
    kind = failed.get("check") if failed else None
    if isinstance(exc, GovernanceFault) or kind == "governance":
        return "governance could not decide safely, so it refused; try again later or ask a person"
    if kind is None and isinstance(exc, PhaseError):
        kind = "phase"
    if kind == "phase":
        return _phase_hint(phase, tools, session_id, agent)
    if kind == "plan":
        if tools is not None:
            return f"{tools.propose} with this call, then {tools.commit} with that plan"
        return "the commit runs only the plan's steps: propose a plan that includes this call, then commit it"
    if kind == "budget":
        gate = failed.get("gate") if failed else None
        if gate == "stop":
            return "the budget is spent: wrap up and answer"
        if gate == "force_decide":
            if not phases:
                return "the budget is running low: only reads run now; wrap up"
            if tools is not None:
                return f"the budget is running low: {tools.explore} or {tools.decide}, and re-plan with fewer calls"
            return "the budget allows no new writes: go back to decide and re-plan"
        return "this call does not fit in what is left of the budget"
    if kind == "rule":
        if failed and failed.get("action") == "block":
            return "the policy forbids this call: change it, or ask the user"
        return "a rule forbids this call: change it, or ask a person to change the policy"
    if kind == "tool":
        return "use one of the tools this agent is allowed, with arguments that fit its schema"
    if kind == "transaction":
        if tools is not None:
            return f"that commit is over: {tools.decide} and re-plan for more writes"
        return "the commit is over: start a new cycle (decide, then commit) for more writes"
    if kind == "protect":
        return "the agent's policy and corral's records cannot be changed from inside the session"
    return "change the call or ask the user"


def _phase_hint(phase: str | None, tools: PhaseTools | None, session_id: str | None, agent: str | None) -> str:
    if tools is not None:
        if phase == "explore":
            return f"call {tools.decide}, then {tools.propose}, then {tools.commit} with the plan first"
        if phase == "decide":
            return f"{tools.propose} with this call if it is not planned yet, then call {tools.commit} first"
        return f"check the phase order: explore → decide ({tools.decide}) → commit ({tools.commit})"
    if session_id is None:
        return "writes need the commit phase (decide, propose a plan, then commit); until then only reads"
    agent_opt = f" --agent {agent}" if agent else ""
    return (f"writes need the commit phase: a person moves the session on with `corral phase {session_id} decide`"
            f" and then `corral phase {session_id} commit{agent_opt}`; meanwhile only reads are allowed")


def message(exc: GovernanceError, tool: str | None = None, **options: Any) -> str:
    """A refusal as a framework's tool result reads: what was refused, why, what to do, the trace."""
    trace = getattr(exc, "trace", None)
    trace_id = getattr(trace, "id", None) if trace is not None else None
    what = f" {tool}" if tool else ""
    head = f"corral is holding{what} for a person's approval" if isinstance(exc, ApprovalPending) else (
        f"corral refused{what}")
    text = f"{head}: {exc}. What to do: {hint(exc, **options)}."
    return text + (f" [trace {trace_id}]" if trace_id else "")


def payload(exc: GovernanceError, **options: Any) -> dict[str, Any]:
    """A refusal as structured data for a model: ``{blocked|pending|denied, reason, hint, trace}``."""
    trace = getattr(exc, "trace", None)
    key = "pending" if isinstance(exc, ApprovalPending) else "denied" if isinstance(exc, ApprovalDenied) else (
        "blocked")
    out: dict[str, Any] = {key: True, "reason": exc.reason, "hint": hint(exc, **options)}
    if isinstance(exc, ApprovalPending):
        out["approval"] = exc.approval_id
    trace_id = getattr(trace, "id", None) if trace is not None else None
    if trace_id:
        out["trace"] = trace_id
    return out
