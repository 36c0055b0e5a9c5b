"""Every error corral raises. All are ``GovernanceError``s and carry the trace that explains them."""

from __future__ import annotations

TYPE_CHECKING = False  # ``typing`` is not imported at run time (per-call hooks pay for every import)
if TYPE_CHECKING:
    from typing import Any


class GovernanceError(Exception):
    """Base of every corral error. ``.trace`` is the proof record of the decision, when there was one."""

    def __init__(self, message: str = "", *, trace: Any = None) -> None:
        super().__init__(message)
        self.trace = trace

    @property
    def reason(self) -> str:
        return str(self)


class Blocked(GovernanceError):
    """The call was refused: by the phase, the budget, a rule, the plan, or a fault inside governance."""


class GovernanceFault(Blocked):
    """A fault inside governance itself (a store that cannot be written, an approver that crashed, a
    clock or rule that raised) refused the call: not a policy decision, and worth retrying later (§9)."""


class ApprovalPending(GovernanceError):
    """The call needs a human's approval and none has been given yet; ``.request`` is the stored request."""

    def __init__(self, message: str = "", *, trace: Any = None, request: Any = None) -> None:
        super().__init__(message, trace=trace)
        self.request = request

    @property
    def approval_id(self) -> str | None:
        return getattr(self.request, "id", None)


class ApprovalDenied(GovernanceError):
    """An approver refused the call, or its approval expired."""


class PhaseError(GovernanceError):
    """A phase transition that the phase machine does not allow, or a call on a finished transaction."""


class TransactionFailed(GovernanceError):
    """A transaction rolled back (or could not). ``__cause__`` is the original error."""

    def __init__(
        self,
        message: str = "",
        *,
        trace: Any = None,
        tx: Any = None,
        failed_compensations: list[Any] | None = None,
    ) -> None:
        super().__init__(message, trace=trace)
        self.tx = tx
        self.failed_compensations = list(failed_compensations or [])


class CallNotOpen(GovernanceError):
    """A call was finished already (by this process or another), or was never begun: it is finished once."""


class ConfigError(GovernanceError, ValueError):
    """A bad registration, option or configuration value. The message names the thing that is wrong."""


class RuleSyntaxError(GovernanceError, ValueError):
    """A rule that does not parse, or names an unknown field or operator.

    ``.source`` is the file (or ``<rules>``), ``.line`` and ``.column`` are 1-based.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<rules>",
        line: int = 0,
        column: int = 0,
        text: str = "",
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        self.text = text
        super().__init__(f"{source}:{line}:{column}: {message}")


class StoreError(GovernanceError):
    """The store could not be read or written. Governance blocks rather than run without its record."""
