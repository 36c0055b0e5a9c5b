"""Shape's transactions: ``TxState`` and ``Transaction`` (``tx.tx`` inside ``with agent.commit() as tx``).

Inside an agent, a ``Transaction`` is Shape's view of a corral transaction (``tx.tx.kernel``), which does
the work: an INTENT before each write, DONE or FAILED after it, compensations in reverse order on
rollback, nothing undone after an irreversible step (the pivot). Its ``state`` is the kernel's, in
Shape's words, plus the one Shape could not say: ``NEEDS_ATTENTION``, something ran that was not undone.

Made on its own (``Transaction("T1")``) it keeps Shape's bookkeeping — ``buffer``, ``commit``,
``abort`` — with corral's corrections: a compensation that takes a parameter receives the ``Call`` it
undoes, and a compensation that fails is not swallowed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from typing import Any

from corral.compat.shape.errors import ShapeError
from corral.errors import TransactionFailed
from corral.governance.calls import Call


class TxState(Enum):
    """Shape's transaction states, plus the one Shape could not express: a rollback that left work undone."""

    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"  # rolled back: every step that ran was compensated
    NEEDS_ATTENTION = "needs_attention"  # something ran that could not be undone; see agent.session.traces


KERNEL_STATES = {
    "open": TxState.OPEN,
    "committed": TxState.COMMITTED,
    "rolling_back": TxState.ABORTED,
    "rolled_back": TxState.ABORTED,
    "needs_attention": TxState.NEEDS_ATTENTION,
}


def takes_the_call(fn: Callable[..., Any]) -> bool:
    """Whether a compensation takes a positional parameter (corral's ``Call``) or none (Shape's)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return any(p.kind in positional for p in sig.parameters.values())


def as_compensation(fn: Callable[..., Any]) -> Callable[[Call], Any]:
    """Shape compensations take no arguments; corral's receive the ``Call`` they undo. Support both."""
    wants_call = takes_the_call(fn)

    def compensate(call: Call) -> Any:
        return fn(call) if wants_call else fn()

    compensate.__name__ = getattr(fn, "__name__", "compensate")
    compensate.__wrapped__ = fn  # type: ignore[attr-defined]
    return compensate


class Transaction:
    """Shape's ``Transaction``: ``tx_id``, ``state``, ``buffered`` steps, ``compensations``,
    ``buffer(...)``, ``commit()``, ``abort()``. ``kernel`` is the corral transaction behind it, if any."""

    def __init__(
        self,
        tx_id: str,
        state: TxState = TxState.OPEN,
        buffered: list[dict[str, Any]] | None = None,
        compensations: list[Callable[..., Any]] | None = None,
        *,
        kernel: Any = None,
    ) -> None:
        self.tx_id = tx_id
        self.kernel = kernel
        self._state = TxState(state)
        self.buffered: list[dict[str, Any]] = list(buffered or [])
        self.compensations: list[Callable[..., Any]] = list(compensations or [])
        self._calls: dict[int, Call] = {}  # id(compensation) → the call it undoes

    @property
    def state(self) -> TxState:
        if self.kernel is not None:
            return KERNEL_STATES[self.kernel.state]
        return self._state

    def buffer(
        self, tool: str, kwargs: dict[str, Any], result: Any, compensation: Callable[..., Any] | None = None
    ) -> None:
        """Note a step that ran (and what undoes it). In an agent the kernel logs and compensates the
        steps itself; this list is Shape's view of them."""
        self.buffered.append({"tool": tool, "kwargs": kwargs, "result": result})
        if compensation is not None:
            self.compensations.append(compensation)
            self._calls[id(compensation)] = Call(tool=tool, args=dict(kwargs), result=result, tx=self.tx_id)

    def commit(self) -> None:
        """Commit now: in an agent, the corral transaction runs its deferred calls and commits."""
        if self.kernel is not None:
            self.kernel.finish(None)
            return
        self._state = TxState.COMMITTED

    def abort(self) -> None:
        """Roll back now: compensate what ran, newest first.

        In an agent this is the kernel's rollback, which undoes nothing after an irreversible step has run.
        A compensation that fails does not stop the others, and is not swallowed: the state becomes
        ``NEEDS_ATTENTION`` and ``ShapeError`` names what could not be undone.
        """
        if self.kernel is not None:
            self._abort_kernel()
            return
        failures = []
        for compensate in reversed(self.compensations):
            call = self._calls.get(id(compensate))
            try:
                if takes_the_call(compensate):
                    compensate(call if call is not None else Call(tool="", args={}, tx=self.tx_id))
                else:
                    compensate()
            except Exception as exc:
                failures.append(f"{call.tool if call else compensate!r}: {type(exc).__name__}: {exc}")
        self._state = TxState.NEEDS_ATTENTION if failures else TxState.ABORTED
        if failures:
            raise ShapeError(f"transaction {self.tx_id} needs attention: compensations failed: {'; '.join(failures)}")

    def _abort_kernel(self) -> None:
        if self.kernel.state != "open":
            return
        try:
            self.kernel.finish(ShapeError(f"transaction {self.tx_id} aborted"))
        except TransactionFailed as failed:
            if self.state is not TxState.ABORTED:
                raise ShapeError(str(failed)) from failed

    def __repr__(self) -> str:
        return f"<Transaction {self.tx_id} {self.state.value}, {len(self.buffered)} step(s)>"


__all__ = ["KERNEL_STATES", "Transaction", "TxState", "as_compensation", "takes_the_call"]
