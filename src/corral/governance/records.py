"""Every record the kernel writes into a session's audit chain, built in one place.

A chain holds five kinds of record: ``call`` (a governance decision), ``outcome`` (what a decided call
did, chained after its decision and merged into it by ``traces.merge_records``), ``spend`` (money that
is not a tool call: a model call), ``compensation`` and ``recovery`` (corrective actions), plus the
``plan`` and ``phase`` events. Their shapes are DESIGN §8's; this module is the only one that lays
them out, so a reader of the chain finds the same fields whoever wrote it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from corral.governance.traces import iso, iso_exact
from corral.ids import new_id

NO_OUTCOME = "no outcome"


def call_record(gov: Any, session: Any, tool: str, now: datetime, tx: Any) -> dict[str, Any]:
    """A decision record with every field present, to be filled in as the decision is made."""
    plan = session.plan if tx is not None else None
    return {
        "id": new_id(),
        "kind": "call",
        "ts": iso(now),
        "session": session.id,
        "agent": gov.agent,
        "principal": session.principal,
        "tool": tool,
        "effect": None,
        "phase": session.phase,
        "tx": tx.id if tx is not None else None,
        "plan": plan.id if plan is not None else None,
        "args": {},
        "args_sha256": None,
        "decision": None,
        "reason": None,
        "checks": [],
        "policy_sha256": gov.policy_sha256,
        "budget": None,
    }


def rule_inputs(facts: Any, calls: dict[str, Any]) -> dict[str, Any]:
    """What the rules read to decide a call (DESIGN §14), so a replay can ask other rules the same
    question; the arguments are the trace's own ``args``. Money as exact decimal text, time with its
    offset and microseconds, ``calls`` as ``Session.log_delta`` gives it."""
    remaining = facts.remaining
    return {
        "tool": facts.tool,
        "effect": facts.effect,
        "phase": facts.phase,
        "principal": facts.principal,
        "roles": list(facts.roles),
        "agent": facts.agent,
        "time": iso_exact(facts.now),
        "budget": {"pct": facts.budget_pct, "spent": str(facts.spent),
                   "remaining": None if remaining is None else str(remaining)},
        "cost": str(facts.cost),
        "calls": calls,
        "labels": sorted(facts.labels),
        "tags": sorted(facts.tags),
    }


def outcome(
    status: str, cost: float | None, duration_ms: float | None, error: str | None, note: str | None = None
) -> dict[str, Any]:
    """What a call did: ``ok``, ``error`` or ``compensated``, with its settled cost."""
    out: dict[str, Any] = {"status": status, "cost": cost, "duration_ms": duration_ms, "error": error}
    if note:
        out["note"] = note
    return out


def outcome_record(session_id: str, ref: str, result: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The outcome of the decision ``ref``, as a record of its own (the decision is already sealed)."""
    return {"id": new_id(), "kind": "outcome", "ts": iso(now), "session": session_id, "ref": ref,
            "outcome": result}


def event_record(gov: Any, session: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """A non-call record (a plan, a phase refusal, a compensation): the call shape, overridden."""
    record = call_record(gov, session, fields.get("tool", ""), gov.now(), session.open_transaction)
    record.update(fields)
    return record


def recovery_record(
    gov: Any, tx: dict[str, Any], step: dict[str, Any], ok: bool, error: str | None, attempts: int
) -> dict[str, Any]:
    """Recovery compensated (or failed to compensate) one step of an abandoned transaction."""
    return {
        "id": new_id(),
        "kind": "recovery",
        "ts": iso(gov.now()),
        "session": tx["session"],
        "agent": gov.agent,
        "principal": None,
        "tool": step["tool"],
        "effect": step.get("effect"),
        "phase": "commit",
        "tx": tx["id"],
        "plan": tx.get("plan"),
        "args": dict(step.get("args") or {}),
        "args_sha256": None,
        "decision": "allowed",
        "reason": f"recovery: compensating {step['tool']} step {step['seq']} of abandoned transaction {tx['id']}",
        "compensates": step.get("trace"),
        "checks": [
            {"check": "recovery", "passed": ok,
             "detail": f"{attempts} attempt(s)" + (f"; last error: {error}" if error else "")}
        ],
        "policy_sha256": gov.policy_sha256,
        "budget": None,
        "outcome": outcome("ok" if ok else "error", 0.0, None, error),
    }


def describe(error: BaseException) -> str:
    """An exception as a trace shows it: ``ValueError: bad order id``."""
    return f"{type(error).__name__}: {error}"
