"""Shape's public API on corral's kernel: change one import, keep your program, get corrected semantics.

Shape (github.com/vidanov/shape) is a one-file agent-governance library. This module offers the same
names — ``Agent``, ``ToolEffect``, ``Phase``, ``wrap_tool``, ``RuleViolation``, ``ApprovalRequired``,
``PhaseError``, ``ShapeError`` — but every call is decided by a corral ``Governor`` and runs in a corral
``Session``: rules are deny-overrides instead of last-match-wins, a compensation receives the ``Call`` it
undoes, a blocked call is never charged, a failed call costs nothing, a failing compensation is never
swallowed, and every decision lands in the session's hash-chained audit log.

    from corral.compat.shape import Agent, ToolEffect

    agent = Agent("support-bot", budget=5.00)
    agent.tool("lookup_customer", effect=ToolEffect.READ, fn=lookup_fn)
    agent.tool("update_record", effect=ToolEffect.REVERSIBLE, fn=update_fn, compensation=undo_fn)
    agent.rules("BLOCK * WHEN budget ABOVE 90%")

    with agent.explore() as ctx:
        customer = ctx.call("lookup_customer", id="C-1234")
    with agent.decide() as ctx:
        ctx.propose(action="welcome", id="C-1234")
    with agent.commit() as tx:
        tx.call("update_record", cost=0.01, id="C-1234", status="welcomed")

``agent.traces`` lists one Shape-shaped ``ProofTrace`` per tool call; the full corral traces — plans,
phase refusals, compensations — are in ``agent.session.traces``, and ``agent.governor`` is the kernel.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from corral.canonical import canonical_sha256
from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    ConfigError,
    GovernanceError,
    TransactionFailed,
)
from corral.errors import PhaseError as _KernelPhaseError
from corral.governance.approvals import Approval, ApprovalRequest
from corral.governance.effects import to_money
from corral.governance.governor import Governor
from corral.governance.traces import Trace, iso
from corral.governance.transactions import json_safe
from corral.store import open_store

# ----------------------------------------------------------------------------------------------- enums


class Phase(Enum):
    EXPLORE = "explore"
    DECIDE = "decide"
    COMMIT = "commit"


class ToolEffect(Enum):
    READ = "read"
    REVERSIBLE = "reversible"
    IRREVERSIBLE = "irreversible"


class RuleAction(Enum):
    BLOCK = "block"
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    FLAG = "flag"


class TxState(Enum):
    """Shape's transaction states, plus the one Shape could not express: a rollback that left work undone."""

    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"  # rolled back: every step that ran was compensated
    NEEDS_ATTENTION = "needs_attention"  # something ran that could not be undone; see agent.session.traces


_TX_STATES = {
    "open": TxState.OPEN,
    "committed": TxState.COMMITTED,
    "rolling_back": TxState.ABORTED,
    "rolled_back": TxState.ABORTED,
    "needs_attention": TxState.NEEDS_ATTENTION,
}

# ------------------------------------------------------------------------------------------ exceptions


class ShapeError(GovernanceError):
    """Base of every error this module raises, as in Shape; also a ``corral.GovernanceError``."""


class PhaseError(ShapeError, _KernelPhaseError):
    """A phase transition the phase machine does not allow (``agent.commit()`` straight from explore)."""


class BudgetError(ShapeError):
    """Kept for imports. As in Shape, a call the budget refuses raises ``RuleViolation``."""


class RuleViolation(ShapeError, Blocked):
    """The call was refused — by the phase, the budget, a rule — and nothing ran. Also a ``corral.Blocked``."""


class PhaseViolation(RuleViolation, PhaseError):
    """A call refused because its effect is not allowed in this phase.

    Shape raises ``RuleViolation`` here while its README promises ``PhaseError``; this is both.
    """


class ApprovalRequired(ShapeError):
    """A rule requires approval and it was not granted; nothing ran.

    What is raised is one of the two subclasses below, so corral code can tell a refusal from a wait.
    """


class ApprovalRefused(ApprovalRequired, ApprovalDenied):
    """The approval callback said no. Also a ``corral.ApprovalDenied``."""


class ApprovalAwaited(ApprovalRequired, ApprovalPending):
    """No approval callback is set: the request is stored as pending (``.approval_id``). Also a
    ``corral.ApprovalPending``: ``agent.governor.approve(exc.approval_id, "bob")`` lets the same call
    run exactly once when it is made again."""


# -------------------------------------------------------------------------------------------- records


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
    timestamp: str = ""
    duration_s: float = 0.0
    tx_id: str | None = None
    result: Any = None
    error: str | None = None
    trace_id: str | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in _TRACE_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _TRACE_FIELDS else default

    def keys(self) -> list[str]:
        return list(_TRACE_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _TRACE_FIELDS}


_TRACE_FIELDS = tuple(f.name for f in fields(ProofTrace))

_DECISIONS = {
    "allowed": "ALLOWED",
    "approved": "ALLOWED",
    "flagged": "FLAGGED",
    "blocked": "BLOCKED",
    "pending": "APPROVAL_REQUIRED",
    "denied": "APPROVAL_REQUIRED",
}


class Transaction:
    """Shape's view of one commit block (``tx.tx``); ``kernel`` is the corral transaction doing the work."""

    def __init__(self, tx_id: str, kernel: Any) -> None:
        self.tx_id = tx_id
        self.kernel = kernel
        self.buffered: list[dict[str, Any]] = []
        self.compensations: list[Callable[..., Any]] = []

    @property
    def state(self) -> TxState:
        return _TX_STATES[self.kernel.state]

    def __repr__(self) -> str:
        return f"<Transaction {self.tx_id} {self.state.value}, {len(self.buffered)} step(s)>"


# ------------------------------------------------------------------------------- per-call plumbing

# The cost ``tx.call(cost=…)`` declared for the call in progress on this thread. Every tool is
# registered with a cost function that reads it, so the cost reaches the kernel as the call's
# estimate (reserved before, settled after) and never reaches the tool as an argument.
_CALL_COST: ContextVar[Decimal] = ContextVar("corral_shape_call_cost", default=Decimal(0))

# The records the kernel writes while a call is in progress on this thread, so that the call's
# ProofTrace is built from its own corral trace (nested calls collect into their own list).
_COLLECTOR: ContextVar[list[dict[str, Any]] | None] = ContextVar("corral_shape_collector", default=None)

_UNLIMITED = Decimal("1e30")


def _declared_cost(args: Mapping[str, Any]) -> Decimal:
    return _CALL_COST.get()


class _TappedStore:
    """The agent's store: the real one, plus a tap that hands each record to the call that caused it."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def append(self, session_id: str, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        sealed = self._store.append(session_id, record, durable=durable)
        collector = _COLLECTOR.get()
        if collector is not None:
            collector.append(record)
        return sealed

    def batch(self, ops: Any) -> list[Any] | None:
        """The kernel writes a call's decision and outcome in store batches: tap their records too."""
        from corral.store import Append

        results = self._store.batch(ops)
        collector = _COLLECTOR.get()
        if results is not None and collector is not None:
            collector.extend(op.record for op in ops if isinstance(op, Append))
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _effect_value(effect: Any, tool: str) -> str:
    """Shape's ``ToolEffect`` (or its value) as the kernel's effect; an undeclared effect is irreversible."""
    if effect is None:
        return ToolEffect.IRREVERSIBLE.value
    if isinstance(effect, ToolEffect):
        return effect.value
    if isinstance(effect, str) and effect.lower() in {e.value for e in ToolEffect}:
        return effect.lower()
    raise ConfigError(
        f"tool {tool!r}: unknown effect {effect!r}; expected ToolEffect.READ, REVERSIBLE or IRREVERSIBLE"
    )


def _accepts_positional(fn: Callable[..., Any]) -> bool:
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


def _compensation(fn: Callable[..., Any]) -> Callable[[Any], Any]:
    """Shape compensations take no arguments; corral's receive the ``Call`` they undo. Support both."""
    wants_call = _accepts_positional(fn)

    def compensate(call: Any) -> Any:
        return fn(call) if wants_call else fn()

    compensate.__name__ = getattr(fn, "__name__", "compensate")
    compensate.__wrapped__ = fn  # type: ignore[attr-defined]
    return compensate


def _no_compensation(tool: str) -> Callable[[Any], Any]:
    """Shape lets a reversible tool omit its compensation; corral will not pretend such a step was undone."""

    def compensate(call: Any) -> Any:
        raise ShapeError(f"{tool} is reversible but was registered without a compensation: it was not undone")

    return compensate


def _simulated(tool: str) -> Callable[..., Any]:
    """A tool registered without ``fn`` answers as Shape's does: with a record of what it would have done."""

    def simulate(**kwargs: Any) -> dict[str, Any]:
        return {"tool": tool, "kwargs": kwargs, "simulated": True}

    simulate.__name__ = tool
    return simulate


def _shape_check(check: Mapping[str, Any]) -> dict[str, Any]:
    """A corral check as Shape's ``rules_evaluated`` entry: it always has ``check``, ``passed``, ``detail``."""
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


def _cost_of(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# ------------------------------------------------------------------------------------ budget and phase


class AgentBudget:
    """``agent.budget``: Shape's budget manager, read from (and written to) the session's corral ledger."""

    def __init__(self, agent: Agent, slope_threshold: float | None = None) -> None:
        self._agent = agent
        self.slope_threshold = slope_threshold  # cost per second that pauses the agent (Shape's PAUSE gate)
        self.history: list[tuple[float, float]] = []  # (monotonic time, amount)
        self.tokens_in = 0
        self.tokens_out = 0

    @property
    def _view(self) -> Any:
        return self._agent.session.budget

    @property
    def limit(self) -> float:
        return float(self._view.limit or 0.0)

    @property
    def spent(self) -> float:
        return self._view.spent

    @property
    def reserved(self) -> float:
        return self._view.reserved

    @property
    def pct(self) -> float:
        return self._view.pct

    @property
    def gate(self) -> str | None:
        """The corral gate reached: ``degrade``, ``force_decide``, ``stop`` or None."""
        return self._view.gate

    def record(self, amount: float, tokens_in: int = 0, tokens_out: int = 0) -> None:
        """Charge money spent outside a tool call (a model call, say) to the session's budget.

        Like Shape, this records what was already spent, so it is charged even past the limit; the
        gates then refuse what comes next.
        """
        money = to_money(amount, "budget.record: amount")
        if money > 0:
            gov, session = self._agent.governor, self._agent.session
            keys = [(key, _UNLIMITED) for _, key, _ in gov.scope_limits(session.id)]
            if keys:
                expires = gov.now() + timedelta(seconds=gov.reservation_ttl)
                reservation = gov.store.reserve(keys, money, expires)
                if reservation is None:  # pragma: no cover - the limit given cannot be reached
                    raise ShapeError(f"budget.record: the ledger refused to record {amount}")
                gov.store.settle(reservation, money)
        self._note(float(money), tokens_in, tokens_out)

    def _note(self, amount: float, tokens_in: int = 0, tokens_out: int = 0) -> None:
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
        return f"<AgentBudget {self.spent:g} of {self.limit:g} ({self.pct:g}%)>"


class AgentPhase:
    """``agent.phase``: the session's phase, in Shape's terms."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    @property
    def current(self) -> Phase:
        return Phase(self._agent.session.phase)

    def transition(self, target: Phase | str) -> None:
        """Move to ``target``. Moving to COMMIT opens a transaction that the next phase change commits
        (or ``with agent.commit() as tx:`` takes over); explore → commit raises ``PhaseError``."""
        phase = Phase(target)
        if phase is Phase.COMMIT:
            self._agent._enter_commit_phase()
        else:
            self._agent._move(phase)

    def allows_effect(self, effect: ToolEffect | str) -> bool:
        allowed = {
            Phase.EXPLORE: {ToolEffect.READ},
            Phase.DECIDE: {ToolEffect.READ},
            Phase.COMMIT: set(ToolEffect),
        }
        return ToolEffect(effect) in allowed[self.current]

    def __repr__(self) -> str:
        return f"<AgentPhase {self.current.value}>"


# --------------------------------------------------------------------------------------------- agent


class Agent:
    """A governed agent in Shape's API. Keyword-only extras reach corral: ``store`` (e.g.
    ``"sqlite:///agent.db"``), ``principal``, ``gates``, ``clock`` as ``Governor`` takes them, and
    ``approval_timeout``: seconds the approval callback may take before the call is refused."""

    def __init__(
        self,
        name: str,
        budget: float = 0.0,
        slope_threshold: float | None = None,
        *,
        store: Any = None,
        principal: str | None = None,
        gates: Mapping[str, Any] | None = None,
        clock: Callable[[], Any] | None = None,
        approval_timeout: float = 30.0,
    ) -> None:
        limited = budget is not None and not isinstance(budget, bool) and budget > 0
        self.name = name
        self.governor = Governor(
            agent=name,
            budget=budget if limited else None,
            store=_TappedStore(open_store(store)),
            gates=gates,
            clock=clock,
            approver_timeout=approval_timeout,
        )
        self.session = self.governor.session(principal=principal)
        self.budget: AgentBudget | None = AgentBudget(self, slope_threshold) if limited else None
        self.phase = AgentPhase(self)
        self.tools: dict[str, dict[str, Any]] = {}
        self.traces: list[ProofTrace] = []
        self._approval_callback: Callable[[str, dict[str, Any]], Any] | None = None
        self._tx_counter = 0
        self._tx_ids: dict[str, str] = {}  # corral transaction id → Shape's "T1", "T2", …
        self._commit: TransactionContext | None = None  # the commit block open now, if any
        self._ambient: TransactionContext | None = None  # opened by phase.transition(COMMIT)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Agent {self.name} {self.session.phase}>"

    # ---------------------------------------------------------------------------------- configuration

    def tool(
        self,
        name: str,
        effect: ToolEffect | str | None = None,
        fn: Callable[..., Any] | None = None,
        compensation: Callable[..., Any] | None = None,
        cost_fn: Callable[[Any], Any] | None = None,
    ) -> None:
        """Register a tool. ``compensation`` may take no arguments (Shape) or the ``Call`` it undoes."""
        value = _effect_value(effect, name)
        if compensation is not None and not callable(compensation):
            raise ConfigError(f"tool {name!r}: compensation must be callable")
        if cost_fn is not None and not callable(cost_fn):
            raise ConfigError(f"tool {name!r}: cost_fn must be callable")
        if compensation is not None:
            compensate: Callable[..., Any] | None = _compensation(compensation)
        elif value == ToolEffect.REVERSIBLE.value:
            compensate = _no_compensation(name)
        else:
            compensate = None
        self.governor.register(
            name,
            fn if fn is not None else _simulated(name),
            effect=value,
            cost=_declared_cost,
            cost_fn=self._settled_cost(cost_fn) if cost_fn is not None else None,
            compensate=compensate,
        )
        self.tools[name] = {"effect": ToolEffect(value), "fn": fn, "compensation": compensation, "cost_fn": cost_fn}

    def _settled_cost(self, cost_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The kernel settles at ``cost_fn(result)``; Shape charges that on top of ``tx.call(cost=…)``.

        A ``cost_fn`` may return a number or ``{"cost": …, "tokens_in": …, "tokens_out": …}``.
        """

        def settle(result: Any) -> Decimal:
            measured = cost_fn(result)
            if isinstance(measured, Mapping):
                if self.budget is not None:
                    self.budget.tokens_in += int(measured.get("tokens_in") or 0)
                    self.budget.tokens_out += int(measured.get("tokens_out") or 0)
                measured = measured.get("cost") or 0
            return _CALL_COST.get() + to_money(measured or 0, "cost_fn(result)")

        return settle

    def rules(self, text: Any) -> None:
        """Add rules; they are parsed now and a bad line raises ``RuleSyntaxError`` (a ``ValueError``)."""
        self.governor.rules(text)

    def on_approval(self, callback: Callable[[str, dict[str, Any]], Any] | None) -> None:
        """``callback(tool_name, kwargs) -> bool`` decides each call a REQUIRE APPROVAL rule matches.

        Without one, such a call raises ``ApprovalRequired`` and its request waits as pending.
        """
        if callback is not None and not callable(callback):
            raise ConfigError(f"on_approval needs a callable (tool_name, kwargs) -> bool, got {callback!r}")
        self._approval_callback = callback
        self.governor.approver = self._ask if callback is not None else None

    def _ask(self, request: ApprovalRequest) -> Approval:
        callback = self._approval_callback
        if callback is None:
            return Approval(False, "on_approval", "the approval callback was removed")
        name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
        return Approval(bool(callback(request.tool, dict(request.args))), name or repr(callback))

    # ----------------------------------------------------------------------------------------- phases

    def explore(self) -> PhaseContext:
        self._move(Phase.EXPLORE)
        return PhaseContext(self, Phase.EXPLORE)

    def decide(self) -> PhaseContext:
        self._move(Phase.DECIDE)
        return PhaseContext(self, Phase.DECIDE)

    def commit(self) -> TransactionContext:
        """Enter commit and open a transaction: ``with agent.commit() as tx: tx.call(...)``.

        From explore this raises ``PhaseError`` (decide first); at the budget's force_decide or stop gate
        it raises ``RuleViolation``.
        """
        with self._lock:
            if self._ambient is not None:  # entered by phase.transition(COMMIT): this block takes it over
                ctx, self._ambient = self._ambient, None
                return ctx
            return self._open_commit()

    def _open_commit(self) -> TransactionContext:
        block = self.session.commit()
        try:
            kernel_tx = block.__enter__()
        except GovernanceError as exc:
            failure = exc
        else:
            self._tx_counter += 1
            tx = Transaction(f"T{self._tx_counter}", kernel_tx)
            self._tx_ids[kernel_tx.id] = tx.tx_id
            self._commit = TransactionContext(self, tx, block)
            return self._commit
        raise _translate(failure, "commit", self, call=False)

    def _enter_commit_phase(self) -> None:
        with self._lock:
            if self.session.phase == Phase.COMMIT.value and self._commit is not None:
                return
            self._ambient = self._open_commit()

    def _move(self, target: Phase) -> None:
        with self._lock:
            if self._ambient is not None:
                ambient, self._ambient = self._ambient, None
                ambient.__exit__(None, None, None)
            try:
                self.session.back_to(target.value)
            except GovernanceError as exc:
                failure = exc
            else:
                return
        raise _translate(failure, target.value, self, call=False)

    def _close_commit(
        self, ctx: TransactionContext, exc_type: Any, exc: BaseException | None, tb: Any
    ) -> bool:
        """Leave the block: commit, or roll back and let the original exception go on (not corral's
        ``TransactionFailed``). What a rollback could not undo is attached to it as a note."""
        if ctx.closed:
            return False
        ctx.closed = True
        failed: TransactionFailed | None = None
        try:
            ctx.block.__exit__(exc_type, exc, tb)
        except TransactionFailed as raised:
            failed = raised
        finally:
            with self._lock:
                if self._commit is ctx:
                    self._commit = None
                if self._ambient is ctx:
                    self._ambient = None
        if failed is None:
            return False
        cause = exc if exc is not None else (failed.__cause__ or failed)
        if ctx.tx.state is TxState.NEEDS_ATTENTION and isinstance(cause, BaseException):
            _note(cause, failed)
        if exc is not None:
            return False
        raise cause

    # ------------------------------------------------------------------------------------------ calls

    def _execute(
        self, tool_name: str, kwargs: Mapping[str, Any], tx: Transaction | None = None, *, cost: Any = 0.0
    ) -> Any:
        """Govern and run one call; record its ProofTrace. Every public call path ends here."""
        given = dict(kwargs)
        declared = to_money(0 if cost is None else cost, f"{tool_name}: cost")
        if tx is None and self._commit is not None:
            tx = self._commit.tx
        self._check_pace(tool_name, given, tx)
        collected: list[dict[str, Any]] = []
        cost_token = _CALL_COST.set(declared)
        collect_token = _COLLECTOR.set(collected)
        result: Any = None
        raised: BaseException | None = None
        refusal: GovernanceError | None = None
        try:
            run = tx.kernel.call if tx is not None else self.session.call
            result = run(tool_name, **given)
        except ShapeError as exc:  # a governed call nested inside the tool was refused: the tool failed
            raised = exc
        except TransactionFailed as failed:
            raised = failed.__cause__ or failed
            if failed.tx is not None and failed.tx.state == "needs_attention":
                _note(raised, failed)
        except (Blocked, ApprovalPending, ApprovalDenied, _KernelPhaseError) as exc:
            refusal = exc
        except BaseException as exc:
            raised = exc
        finally:
            _COLLECTOR.reset(collect_token)
            _CALL_COST.reset(cost_token)

        record = _decision_record(collected, tool_name, refusal)
        if refusal is not None:
            error = _translate(refusal, tool_name, self)
            waiting = isinstance(refusal, ApprovalPending | ApprovalDenied)
            self._trace(
                tool_name, record, tx, error=_refusal_text(record, refusal),
                refused="APPROVAL_REQUIRED" if waiting else "BLOCKED",
            )
            raise error
        self._trace(tool_name, record, tx, result=result, error=raised, collected=collected)
        if raised is not None:
            raise raised
        if tx is not None and record is not None and record.get("effect") not in (None, "read"):
            tx.buffered.append({"tool": tool_name, "kwargs": given, "result": result})
            compensation = self.tools.get(tool_name, {}).get("compensation")
            if compensation is not None:
                tx.compensations.append(compensation)
        return result

    def _check_pace(self, tool_name: str, given: dict[str, Any], tx: Transaction | None) -> None:
        """Shape's PAUSE gate: refuse any call while money goes out faster than ``slope_threshold``/s."""
        if self.budget is None or not self.budget.paused():
            return
        slope = self.budget.slope()
        reason = f"cost slope too steep ({slope:.4f}/s above {self.budget.slope_threshold}/s): pausing"
        spec = self.governor.tools.get(tool_name)
        trace = self.governor.record_event(
            self.session,
            {
                "kind": "call",
                "tool": tool_name,
                "effect": spec.effect if spec is not None else None,
                "args": json_safe(given),
                "args_sha256": canonical_sha256(json_safe(given)),
                "decision": "blocked",
                "reason": reason,
                "checks": [{"check": "budget", "passed": False, "detail": reason, "gate": "pause"}],
                "budget": self.session.budget.to_dict(),
            },
        )
        record = trace.to_dict()
        self._trace(tool_name, record, tx, error=f"Blocked by governance: {reason}", refused="BLOCKED")
        raise RuleViolation(f"Tool '{tool_name}' blocked: {reason}", trace=trace)

    def _trace(
        self,
        tool_name: str,
        record: Mapping[str, Any] | None,
        tx: Transaction | None,
        *,
        result: Any = None,
        error: Any = None,
        refused: str | None = None,
        collected: list[dict[str, Any]] | None = None,
    ) -> ProofTrace:
        record = record or {}
        outcome = _outcome(record, collected or [])
        cost = _cost_of(outcome.get("cost")) if outcome else 0.0
        if cost > 0 and self.budget is not None:
            self.budget._note(cost)
        decision = _DECISIONS.get(record.get("decision") or "", refused or "ALLOWED")
        if refused and decision == "ALLOWED":  # refused after its decision was written (a store fault)
            decision = refused
        kernel_tx = record.get("tx")
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        duration = outcome.get("duration_ms") if outcome else None
        shape = ProofTrace(
            tool=tool_name,
            decision=decision,
            phase=record.get("phase") or self.session.phase,
            budget_spent=self.budget.spent if self.budget is not None else 0.0,
            budget_limit=self.budget.limit if self.budget is not None else 0.0,
            rules_evaluated=[_shape_check(c) for c in record.get("checks") or ()],
            timestamp=record.get("ts") or iso(self.governor.now()),
            duration_s=(duration or 0.0) / 1000,
            tx_id=self._tx_ids.get(kernel_tx, tx.tx_id if tx is not None else None) if kernel_tx else None,
            result=result,
            error=error,
            trace_id=record.get("id"),
        )
        self.traces.append(shape)
        return shape


# ------------------------------------------------------------------------------------------ contexts


class PhaseContext:
    """What ``with agent.explore() as ctx`` and ``with agent.decide() as ctx`` give: ``ctx.call``,
    ``ctx.propose``. The phase was entered when ``agent.explore()`` / ``agent.decide()`` was called."""

    def __init__(self, agent: Agent, phase: Phase) -> None:
        self.agent = agent
        self.phase = phase

    def __enter__(self) -> PhaseContext:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def call(self, tool_name: str, **kwargs: Any) -> Any:
        return self.agent._execute(tool_name, kwargs)

    def propose(self, **kwargs: Any) -> dict[str, Any]:
        """Record a proposal in decide — nothing runs — and return it as Shape does.

        The proposal is written to the session's audit chain (a ``plan`` trace); outside decide it is
        refused with ``PhaseError``.
        """
        agent = self.agent
        session = agent.session
        if session.phase != Phase.DECIDE.value:
            reason = f"propose needs the decide phase (the agent is in {session.phase})"
            trace = agent.governor.record_event(
                session,
                {
                    "kind": "phase",
                    "tool": "propose",
                    "decision": "blocked",
                    "reason": reason,
                    "checks": [{"check": "phase", "passed": False, "detail": reason}],
                    "budget": session.budget.to_dict(),
                },
            )
            raise PhaseError(reason, trace=trace)
        proposal = json_safe(kwargs)
        trace = agent.governor.record_event(
            session,
            {
                "kind": "plan",
                "tool": "propose",
                "effect": "read",
                "args": {"proposal": proposal},
                "args_sha256": canonical_sha256(proposal),
                "decision": "allowed",
                "reason": "proposal recorded in decide; nothing ran",
                "checks": [{"check": "phase", "passed": True, "detail": "decide allows propose"}],
                "outcome": {"status": "ok", "cost": 0.0, "duration_ms": 0.0, "error": None},
            },
        )
        return {"proposal": kwargs, "phase": self.phase.value, "timestamp": trace.ts}


class TransactionContext:
    """What ``with agent.commit() as tx`` gives: ``tx.call(name, cost=…, **kwargs)`` and ``tx.tx``.

    Leaving the block commits; an exception leaving it (a failing step, a refusal, your own) rolls the
    transaction back and goes on unchanged.
    """

    def __init__(self, agent: Agent, tx: Transaction, block: Any) -> None:
        self.agent = agent
        self.tx = tx
        self.block = block
        self.closed = False

    def __enter__(self) -> TransactionContext:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.agent._close_commit(self, exc_type, exc, tb)

    def call(self, tool_name: str, cost: float = 0.0, **kwargs: Any) -> Any:
        """Run ``tool_name`` as a step. ``cost`` is reserved before it runs and charged if it succeeds."""
        return self.agent._execute(tool_name, kwargs, self.tx, cost=cost)


# ----------------------------------------------------------------------------------------- wrap_tool


def wrap_tool(
    agent: Agent,
    tool_name: str,
    fn: Callable[..., Any],
    effect: ToolEffect | str | None = None,
    compensation: Callable[..., Any] | None = None,
    cost_fn: Callable[[Any], Any] | None = None,
) -> Callable[..., Any]:
    """Register ``fn`` and return a governed callable for a framework (Strands, LangGraph, CrewAI…).

    Inside a commit block the governed callable is a step of that block's transaction.
    """
    agent.tool(tool_name, effect=effect, fn=fn, compensation=compensation, cost_fn=cost_fn)
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None

    def governed(*args: Any, **kwargs: Any) -> Any:
        if args:
            if signature is None:
                raise TypeError(f"{tool_name} takes keyword arguments only")
            kwargs = dict(signature.bind_partial(*args, **kwargs).arguments)
        return agent._execute(tool_name, kwargs)

    governed.__name__ = governed.__qualname__ = f"governed_{tool_name}"
    governed.__doc__ = fn.__doc__
    if signature is not None:
        governed.__signature__ = signature  # type: ignore[attr-defined]
    governed.fn = fn  # type: ignore[attr-defined]
    return governed


# ------------------------------------------------------------------------------------------ helpers


def _decision_record(
    collected: list[dict[str, Any]], tool_name: str, refusal: GovernanceError | None
) -> dict[str, Any] | None:
    """The corral decision record of this call: the first call record the kernel wrote for it."""
    for record in collected:
        if record.get("kind") == "call" and record.get("tool") == tool_name:
            return record
    trace = getattr(refusal, "trace", None)
    if isinstance(trace, Trace) and trace.kind == "call":
        return trace.to_dict()
    return None


def _outcome(record: Mapping[str, Any], collected: list[dict[str, Any]]) -> dict[str, Any] | None:
    if record.get("outcome"):
        return dict(record["outcome"])
    for other in collected:
        if other.get("kind") == "outcome" and other.get("ref") == record.get("id"):
            return dict(other.get("outcome") or {})
    return None


def _refusal_text(record: Mapping[str, Any] | None, refusal: GovernanceError) -> str:
    decision = (record or {}).get("decision")
    if decision == "pending":
        return f"Approval pending: {refusal}"
    if decision == "denied":
        return f"Approval not granted: {refusal}"
    return f"Blocked by governance: {refusal}"


def _translate(exc: GovernanceError, what: str, agent: Agent, *, call: bool = True) -> GovernanceError:
    """A kernel refusal as the Shape exception a Shape program catches (and a corral program too).

    ``what`` is the tool (``call``) or the phase being entered.
    """
    if isinstance(exc, ShapeError):
        return exc
    trace = exc.trace
    if isinstance(exc, ApprovalPending):
        return ApprovalAwaited(
            f"Tool '{what}' requires approval: {exc}", trace=trace, request=getattr(exc, "request", None)
        )
    if isinstance(exc, ApprovalDenied):
        return ApprovalRefused(f"Tool '{what}' requires approval, not granted: {exc}", trace=trace)
    if isinstance(exc, _KernelPhaseError):
        return PhaseError(str(exc), trace=trace)
    if isinstance(exc, Blocked):
        if not call:
            return RuleViolation(f"{what} blocked: {exc}", trace=trace)
        checks = getattr(trace, "checks", None) or []
        if what not in agent.governor.tools:
            return RuleViolation(f"Unknown tool: {what} ({exc})", trace=trace)
        if any(c.get("check") == "phase" and c.get("passed") is False for c in checks):
            return PhaseViolation(f"Tool '{what}' blocked: {exc}", trace=trace)
        return RuleViolation(f"Tool '{what}' blocked: {exc}", trace=trace)
    return exc


def _note(error: BaseException, failed: TransactionFailed) -> None:
    """Errors are never swallowed: say on the original exception what the rollback could not undo."""
    note = f"corral: {failed}"
    if note not in getattr(error, "__notes__", ()):
        error.add_note(note)


__all__ = [
    "Agent",
    "AgentBudget",
    "AgentPhase",
    "ApprovalAwaited",
    "ApprovalRefused",
    "ApprovalRequired",
    "BudgetError",
    "Phase",
    "PhaseContext",
    "PhaseError",
    "PhaseViolation",
    "ProofTrace",
    "RuleAction",
    "RuleViolation",
    "ShapeError",
    "ToolEffect",
    "Transaction",
    "TransactionContext",
    "TxState",
    "wrap_tool",
]
