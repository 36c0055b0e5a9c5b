"""corral: a governed agent harness. ``from corral import Governor`` is the whole story."""

from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    ConfigError,
    GovernanceError,
    PhaseError,
    RuleSyntaxError,
    StoreError,
    TransactionFailed,
)

__all__ = [
    "ApprovalDenied",
    "ApprovalPending",
    "Blocked",
    "ConfigError",
    "GovernanceError",
    "PhaseError",
    "RuleSyntaxError",
    "StoreError",
    "TransactionFailed",
]
__version__ = "0.1.0"
