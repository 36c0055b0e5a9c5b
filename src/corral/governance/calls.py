"""What a governed call carries between its decision and its outcome, and the public ``Call``."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from corral.governance.decision import Decision
from corral.governance.effects import ToolSpec
from corral.store.protocol import Reserve


@dataclass(slots=True)
class Call:
    """One executed call, as a compensation receives it: the tool, its arguments, its result."""

    tool: str
    args: dict[str, Any]
    result: Any = None
    idempotency_key: str | None = None
    tx: str | None = None
    session: str | None = None
    effect: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "args": self.args,
            "result": self.result,
            "idempotency_key": self.idempotency_key,
            "tx": self.tx,
            "session": self.session,
            "effect": self.effect,
            "error": self.error,
        }


@dataclass(slots=True)
class PendingCall:
    """A call that has been decided on, but whose outcome is not yet known.

    Its reservation is taken when its decision is recorded (``reserve`` becomes ``reservation``), in the
    same store batch — or before an approver is asked, so no one approves a call that cannot be paid for.
    """

    session: Any
    spec: ToolSpec
    name: str
    given: dict[str, Any]
    args: dict[str, Any]
    decision: Decision
    record: dict[str, Any]
    estimate: Decimal = Decimal(0)
    reserve: Reserve | None = None  # the reservation still to take: in the batch that records the decision
    reservation: str | None = None  # the reservation held, once taken
    plan_step: int | None = None
    tx: Any = None
    idempotency_key: str | None = None
    recorded: bool = False
    started: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def effect(self) -> str:
        return self.record["effect"]
