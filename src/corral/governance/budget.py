"""Budget as a control signal: reserve before spending, settle after, gates that change behaviour (§5).

The ledger itself lives in the store (so it can be shared between processes); this module holds the
arithmetic that turns a ledger's numbers into a gate, and the view a session shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import pairwise
from typing import Any

from corral.errors import ConfigError
from corral.governance.effects import to_money
from corral.struct import struct

DEGRADE = "degrade"
FORCE_DECIDE = "force_decide"
STOP = "stop"
GATE_ORDER = (DEGRADE, FORCE_DECIDE, STOP)
DEFAULT_GATES = {DEGRADE: 0.50, FORCE_DECIDE: 0.75, STOP: 1.00}
SCOPE_KINDS = ("session", "agent", "tenant")


def parse_budget(budget: Any) -> dict[str, Decimal]:
    """``5.0`` → a session limit; ``{"session": 5, "agent": 100}`` → several nested scopes."""
    if budget is None:
        return {}
    if isinstance(budget, Mapping):
        unknown = set(budget) - set(SCOPE_KINDS)
        if unknown:
            raise ConfigError(
                f"budget: unknown scope(s) {', '.join(sorted(map(str, unknown)))}; "
                "expected session, agent, tenant"
            )
        return {k: to_money(v, f"budget.{k}") for k, v in budget.items() if v is not None}
    return {"session": to_money(budget, "budget")}


def parse_gates(gates: Mapping[str, Any] | None) -> tuple[tuple[str, Decimal], ...]:
    """Thresholds as exact fractions, checked for order: degrade ≤ force_decide ≤ stop."""
    merged = dict(DEFAULT_GATES)
    if gates:
        unknown = set(gates) - set(GATE_ORDER)
        if unknown:
            raise ConfigError(
                f"gates: unknown gate(s) {', '.join(sorted(map(str, unknown)))}; "
                "expected degrade, force_decide, stop"
            )
        merged.update(gates)
    values = []
    for name in GATE_ORDER:
        value = merged[name]
        if value is None:
            continue
        fraction = to_money(value, f"gates.{name}")
        if fraction > 1 and fraction <= 100:
            raise ConfigError(f"gates.{name}: {value} — give a fraction such as 0.75, not a percent")
        values.append((name, fraction))
    for (a, x), (b, y) in pairwise(values):
        if x > y:
            raise ConfigError(f"gates: {a} ({x}) must not be above {b} ({y})")
    return tuple(values)


def blocking_gate(gates: Sequence[tuple[str, Decimal]], effect: str) -> tuple[str, Decimal] | None:
    """The gate at which a call of this effect is refused: ``stop`` for reads, ``force_decide`` (else
    ``stop``) for writes — None when no such gate is configured."""
    by_name = dict(gates)
    for name in ((STOP,) if effect == "read" else (FORCE_DECIDE, STOP)):
        if name in by_name:
            return name, by_name[name]
    return None


@struct(frozen=True, slots=True)
class ScopeUsage:
    """One budget scope as the ledger has it now."""

    kind: str
    key: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal

    @property
    def used_fraction(self) -> Decimal:
        if self.limit <= 0:
            return Decimal(1) if self.spent + self.reserved >= 0 else Decimal(0)
        return (self.spent + self.reserved) / self.limit

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.spent - self.reserved


def gate_for(fraction: Decimal, gates: Sequence[tuple[str, Decimal]]) -> str | None:
    """The highest gate whose threshold the fraction has reached (≥)."""
    reached = None
    for name, threshold in gates:
        if fraction >= threshold:
            reached = name
    return reached


@struct(frozen=True, slots=True)
class BudgetView:
    """What ``s.budget`` shows: the tightest scope, in floats (the ledger keeps exact decimals)."""

    limit: float | None
    spent: float
    reserved: float
    pct: float
    gate: str | None
    remaining: float | None = None
    scope: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.limit is None and not self.spent and not self.reserved:
            return {"limit": None, "spent": 0.0, "reserved": 0.0, "pct": 0.0, "gate": None}
        return {
            "limit": self.limit,
            "spent": self.spent,
            "reserved": self.reserved,
            "pct": self.pct,
            "gate": self.gate,
        }


#: What a session without a budget shows: no limit, nothing spent, no gate.
NO_BUDGET_VIEW = BudgetView(None, 0.0, 0.0, 0.0, None)


@struct(frozen=True, slots=True)
class BudgetState:
    """The exact numbers behind a decision: tightest scope by fraction used, and by money left."""

    fraction: Decimal
    gate: str | None
    tightest: ScopeUsage | None
    least_left: ScopeUsage | None
    usages: tuple[ScopeUsage, ...] = ()

    @classmethod
    def of(cls, usages: Sequence[ScopeUsage], gates: Sequence[tuple[str, Decimal]]) -> BudgetState:
        if not usages:
            return cls(Decimal(0), None, None, None)
        tightest = max(usages, key=lambda u: u.used_fraction)
        least_left = min(usages, key=lambda u: u.remaining)
        fraction = tightest.used_fraction
        return cls(fraction, gate_for(fraction, gates), tightest, least_left, tuple(usages))

    def after_reserving(self, amount: Decimal, gates: Sequence[tuple[str, Decimal]]) -> BudgetState:
        """The state once ``amount`` is reserved in every scope — computed, not re-read."""
        if not self.usages or not amount:
            return self
        return BudgetState.of(
            [ScopeUsage(u.kind, u.key, u.limit, u.spent, u.reserved + amount) for u in self.usages], gates
        )

    @property
    def pct(self) -> float:
        return round(float(self.fraction * 100), 4)

    def view(self) -> BudgetView:
        t = self.tightest
        if t is None:
            return NO_BUDGET_VIEW
        return BudgetView(
            float(t.limit),
            float(t.spent),
            float(t.reserved),
            self.pct,
            self.gate,
            float(self.least_left.remaining) if self.least_left else None,
            t.kind,
        )


def money(value: Decimal) -> str:
    """Money for people: at least two decimals, more only when the amount has them."""
    text = f"{value:.2f}" if value == value.quantize(Decimal("0.01")) else f"{value.normalize():f}"
    return f"${text}"


#: The state of a session without any budget scope (shared: it never changes).
NO_BUDGET = BudgetState(Decimal(0), None, None, None)
