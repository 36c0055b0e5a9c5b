"""corral: a governed agent harness. ``from corral import Governor`` is the whole story.

The names below are imported lazily, so ``import corral`` stays cheap for per-call hooks.
"""

from __future__ import annotations

from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    CallNotOpen,
    ConfigError,
    GovernanceError,
    GovernanceFault,
    PhaseError,
    RuleSyntaxError,
    StoreError,
    TransactionFailed,
)
from corral.version import __version__ as __version__

# ``typing`` is not imported at run time: a per-call hook process pays for every module it loads
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.governance.approvals import Approval, ApprovalRequest
    from corral.governance.calls import Call, CallHandle
    from corral.governance.decision import Decision
    from corral.governance.governor import Governor
    from corral.governance.plans import Plan
    from corral.governance.session import Session
    from corral.governance.traces import Trace
    from corral.governance.transactions import Transaction

_LAZY = {
    "Approval": "corral.governance.approvals",
    "ApprovalRequest": "corral.governance.approvals",
    "Call": "corral.governance.calls",
    "CallHandle": "corral.governance.calls",
    "Decision": "corral.governance.decision",
    "Governor": "corral.governance.governor",
    "Plan": "corral.governance.plans",
    "Session": "corral.governance.session",
    "Trace": "corral.governance.traces",
    "Transaction": "corral.governance.transactions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Approval",
    "ApprovalDenied",
    "ApprovalPending",
    "ApprovalRequest",
    "Blocked",
    "Call",
    "CallHandle",
    "CallNotOpen",
    "ConfigError",
    "Decision",
    "GovernanceError",
    "GovernanceFault",
    "Governor",
    "PhaseError",
    "Plan",
    "RuleSyntaxError",
    "Session",
    "StoreError",
    "Trace",
    "Transaction",
    "TransactionFailed",
]
