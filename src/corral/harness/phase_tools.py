"""The phase tools an agent calls to move its session through explore → decide → commit.

Each runs in the current run (``corral.harness.context.current``) and does what the session's phase
methods do; the harness registers them for the model, the MCP proxy for its clients (as ``corral_…``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.errors import PhaseError, TransactionFailed
from corral.harness.context import current


class AbortCommit(Exception):
    """Raised into an open commit to roll it back on the model's request."""


def begin_decide() -> dict[str, Any]:
    """Move to the decide phase: evaluate what you found and propose a plan. Reads stay allowed."""
    ctx = current()
    ctx.session.back_to("decide")
    return {"phase": "decide"}


def propose_plan(steps: list, rationale: str = "") -> dict[str, Any]:
    """Propose the writes you intend to make, as [{"tool": name, "args": {...}}]; "*" matches any value."""
    ctx = current()
    plan = ctx.session.propose(steps, rationale)
    return {"plan_id": plan.id, "sha256": plan.sha256, "steps": len(plan.steps)}


def begin_commit(plan_id: str | None = None) -> dict[str, Any]:
    """Enter the commit phase to carry out a plan (default: the latest one you proposed)."""
    ctx = current()
    session = ctx.session
    plan = plan_id or (session.plan.id if session.plan is not None else None)
    tx = session.begin_commit(plan)
    return {"phase": "commit", "transaction": tx.id, "plan_id": plan,
            "note": "irreversible calls are deferred and run at finish_commit"}


def finish_commit() -> dict[str, Any]:
    """Run the deferred calls and commit the transaction. Ends the commit phase."""
    ctx = current()
    tx = ctx.session.end_commit(None, pause_on_pending=True)
    done = [{"tool": s.call.tool, "args": s.call.args} for s in tx.steps if s.status == "DONE"]
    return {"committed": True, "transaction": tx.id, "steps": done}


def abort_commit(reason: str = "") -> dict[str, Any]:
    """Abandon the transaction: every completed reversible step is compensated, in reverse order."""
    ctx = current()
    try:
        ctx.session.end_commit(AbortCommit(reason or "aborted by the agent"))
    except TransactionFailed as failed:
        tx = failed.tx
        undone = [s.call.tool for s in reversed(tx.steps) if s.compensated]
        return {"aborted": True, "state": tx.state, "compensated": undone,
                "failed_compensations": [f["tool"] for f in failed.failed_compensations]}
    return {"aborted": True, "state": "rolled_back", "compensated": []}


def back_to_explore() -> dict[str, Any]:
    """Return to explore (only outside an open commit: finish_commit or abort_commit first)."""
    ctx = current()
    if ctx.session.open_transaction is not None:
        raise PhaseError("a commit is open: call finish_commit or abort_commit first")
    ctx.session.back_to("explore")
    return {"phase": "explore"}


PHASE_TOOLS: dict[str, Callable[..., Any]] = {
    "begin_decide": begin_decide,
    "propose_plan": propose_plan,
    "begin_commit": begin_commit,
    "finish_commit": finish_commit,
    "abort_commit": abort_commit,
    "back_to_explore": back_to_explore,
}
