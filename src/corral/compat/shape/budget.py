"""Shape's budget: ``BudgetManager(limit)`` with ``spent``, ``pct``, ``record(amount)``, ``check_gate()``.

The arithmetic is corral's (``corral.governance.budget``): exact decimal money, so a thousand charges of
0.1 make exactly 100; gates reached at ≥ their threshold (50 % DEGRADE, 75 % FORCE_DECIDE, 100 % STOP,
configurable with ``gates=``); and Shape's PAUSE gate when money goes out faster than
``slope_threshold`` per second.

    bm = BudgetManager(10.0)
    bm.record(5.5)
    bm.check_gate()          # "DEGRADE"

``agent.budget`` is an ``AgentBudget``: the same interface over the session's corral ledger, which is
where every governed call reserves and settles its cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from corral.governance.budget import BudgetState, BudgetView, ScopeUsage, money, parse_gates
from corral.governance.effects import to_money

_UNLIMITED = Decimal("1e30")  # the "limit" a charge of money already spent is recorded under


class BudgetManager:
    """A budget on its own, in Shape's terms. ``limit`` 0 means no budget (``pct`` 0, no gate).

    ``record`` adds money already spent, even past the limit: the gates then refuse what comes next.
    A negative or non-numeric amount is refused (``ConfigError``, a ``ValueError``): spending that
    disappears from the books would open a gate that should stay shut.
    """

    def __init__(
        self, limit: float, slope_threshold: float | None = None, *, gates: Mapping[str, Any] | None = None
    ) -> None:
        self._limit = to_money(limit if limit is not None else 0, "budget limit")
        self._spent = Decimal(0)
        self._gates = parse_gates(gates)
        if slope_threshold is not None:
            to_money(slope_threshold, "slope_threshold")
        self.slope_threshold = slope_threshold  # cost per second that pauses spending (Shape's PAUSE gate)
        self.history: list[tuple[float, float]] = []  # (monotonic time, amount) of every charge
        self.tokens_in = 0
        self.tokens_out = 0

    # ------------------------------------------------------------------------------------ the numbers

    def _state(self) -> BudgetState:
        if self._limit <= 0:
            return BudgetState.of([], self._gates)
        usage = ScopeUsage("session", "budget", self._limit, self._spent, Decimal(0))
        return BudgetState.of([usage], self._gates)

    def _view(self) -> BudgetView:
        return self._state().view()

    @property
    def limit(self) -> float:
        return float(self._view().limit or 0.0)

    @property
    def spent(self) -> float:
        return self._view().spent

    @property
    def reserved(self) -> float:
        """Money set aside for calls running now (always 0 for a budget on its own)."""
        return self._view().reserved

    @property
    def remaining(self) -> float | None:
        """What is left of the limit (negative once overspent); None without a budget."""
        return self._view().remaining

    @property
    def pct(self) -> float:
        """Percent of the limit spent (and reserved); 0 without a budget."""
        return self._view().pct

    @property
    def gate(self) -> str | None:
        """The corral gate reached: ``degrade``, ``force_decide``, ``stop`` or None."""
        return self._view().gate

    # ------------------------------------------------------------------------------------- spending

    def record(self, amount: float, tokens_in: int = 0, tokens_out: int = 0) -> None:
        """Add ``amount`` already spent (and, optionally, the tokens it bought)."""
        charge = to_money(amount, "budget.record: amount")
        if charge > 0:
            self._charge(charge)
        self.note(float(charge), tokens_in, tokens_out)

    def _charge(self, amount: Decimal) -> None:
        self._spent += amount

    def note(self, amount: float, tokens_in: int = 0, tokens_out: int = 0) -> None:
        """Remember a charge for the slope (and count its tokens) without booking it again."""
        self.history.append((time.monotonic(), amount))
        self.tokens_in += int(tokens_in or 0)
        self.tokens_out += int(tokens_out or 0)

    def slope(self) -> float:
        """Cost per second over the charges of the last minute: how fast money is going now.

        Shape fell back to the last ten charges however old they were, so a pause never lifted once
        calls stopped being charged; here a calm minute ends it.
        """
        now = time.monotonic()
        recent = [(t, a) for t, a in self.history if now - t < 60]
        if len(recent) < 2:
            return 0.0
        span = recent[-1][0] - recent[0][0]
        if span <= 0:  # several charges in one clock tick: as fast as it gets
            return float("inf") if sum(a for _, a in recent) > 0 else 0.0
        return sum(a for _, a in recent) / span

    def paused(self) -> bool:
        return bool(self.slope_threshold) and self.slope() > float(self.slope_threshold or 0)

    def check_gate(self) -> str | None:
        """``PAUSE`` (spending too fast), ``STOP``, ``FORCE_DECIDE``, ``DEGRADE`` or None, as in Shape."""
        if self.paused():
            return "PAUSE"
        gate = self.gate
        return gate.upper() if gate else None

    def __repr__(self) -> str:
        spent, limit = money(Decimal(str(self.spent))), money(Decimal(str(self.limit)))
        return f"<{type(self).__name__} {spent} of {limit} ({self.pct:g}%)>"


class AgentBudget(BudgetManager):
    """``agent.budget``: the session's corral ledger, in Shape's terms.

    Every governed call reserves its cost here before it runs and settles it after; ``record`` books
    money spent outside a call (a model call, say) and leaves a ``spend`` trace in the audit chain.
    """

    def __init__(self, governor: Any, session: Any, slope_threshold: float | None = None) -> None:
        super().__init__(0, slope_threshold)
        self._governor = governor
        self._session = session

    def _state(self) -> BudgetState:
        return self._governor.budget_state(self._session.id)

    def _charge(self, amount: Decimal) -> None:
        gov, session = self._governor, self._session
        keys = [(key, _UNLIMITED) for _, key, _ in gov.scope_limits(session.id)]
        if keys:
            expires = gov.now() + timedelta(seconds=gov.reservation_ttl)
            reservation = gov.store.reserve(keys, amount, expires)
            if reservation is None:  # pragma: no cover - the limit given cannot be reached
                raise ValueError(f"budget.record: the ledger refused to record {amount}")
            gov.store.settle(reservation, amount)
        view = self._view()
        detail = f"{money(amount)} spent outside a tool call; {view.pct:g}% of the budget used"
        gov.record_event(
            session,
            {
                "kind": "spend",
                "tool": "budget.record",
                "effect": "read",
                "args": {"amount": float(amount)},
                "decision": "allowed",
                "reason": detail,
                "checks": [{"check": "budget", "passed": True, "gate": view.gate, "detail": detail}],
                "budget": view.to_dict(),
                "outcome": {"status": "ok", "cost": float(amount), "duration_ms": None, "error": None},
            },
        )


__all__ = ["AgentBudget", "BudgetManager"]
