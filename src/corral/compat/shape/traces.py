"""Shape's ``ProofTrace``: one record per tool call, made from the corral trace of that call.

``agent.traces`` lists these; the corral traces themselves — with plans, phase refusals and
compensations, hash-chained — are ``agent.session.traces``, and ``ProofTrace.trace_id`` names the one
each record was made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

# corral's decision → Shape's. An approved call is ALLOWED, as Shape recorded it.
DECISIONS = {
    "allowed": "ALLOWED",
    "approved": "ALLOWED",
    "flagged": "FLAGGED",
    "blocked": "BLOCKED",
    "pending": "APPROVAL_REQUIRED",
    "denied": "APPROVAL_REQUIRED",
}


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class ProofTrace:
    """One tool call's decision, shaped like Shape's record. ``trace_id`` names the corral trace behind it.

    Fields read as attributes (``t.decision``) and, as Shape's docs show, as keys (``t["decision"]``).
    """

    tool: str
    decision: str  # ALLOWED | FLAGGED | BLOCKED | APPROVAL_REQUIRED
    phase: str
    budget_spent: float
    budget_limit: float
    rules_evaluated: list[dict[str, Any]]
    timestamp: str = field(default_factory=_now)
    duration_s: float = 0.0
    tx_id: str | None = None
    result: Any = None
    error: str | None = None
    trace_id: str | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELDS else default

    def keys(self) -> list[str]:
        return list(_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(ProofTrace))


def shape_check(check: Mapping[str, Any]) -> dict[str, Any]:
    """A corral check as a ``rules_evaluated`` entry: it always has ``check``, ``passed``, ``detail``.

    A rule check passes unless it is a matched BLOCK or REQUIRE APPROVAL (a flag does not object).
    """
    out = dict(check)
    if "passed" not in out:
        if out.get("check") == "rule":
            action = str(out.get("action") or out.get("rule") or "").lstrip().lower()
            denies = action.startswith(("block", "approval", "require"))
            out["passed"] = not (bool(out.get("matched")) and denies)
        else:
            out["passed"] = True
    out.setdefault("detail", "")
    return out


def decision_of(record: Mapping[str, Any] | None, refused: str | None) -> str:
    """Shape's decision word for a corral record; ``refused`` is what the call's refusal says it was."""
    decision = DECISIONS.get((record or {}).get("decision") or "", refused or "ALLOWED")
    if refused and decision == "ALLOWED":  # refused after its decision was written (a store fault)
        return refused
    return decision


def cost_of(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


__all__ = ["DECISIONS", "ProofTrace", "cost_of", "decision_of", "shape_check"]
