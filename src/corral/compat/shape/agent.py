"""Shape's ``Agent``: tools, rules, approvals, phase blocks and transactions, on a corral ``Governor``.

Every call an agent makes is one call of its corral ``Session`` (``agent.session``): decided, reserved,
traced and — inside ``with agent.commit() as tx`` — logged as a step of a corral transaction. What the
agent adds is Shape's vocabulary around it: ``ProofTrace`` records in ``agent.traces``, ``T1``, ``T2`` …
transaction ids, Shape's exceptions, ``tx.call(name, cost=…)``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC
from decimal import Decimal
from typing import Any

from corral.canonical import canonical_sha256
from corral.compat.shape.budget import AgentBudget
from corral.compat.shape.errors import PhaseError, RuleViolation, ShapeError, translate
from corral.compat.shape.phases import AgentPhase, Phase, ToolEffect, as_effect
from corral.compat.shape.traces import DECISIONS, ProofTrace, cost_of, decision_of, shape_check
from corral.compat.shape.transactions import Transaction, TxState, as_compensation
from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    ConfigError,
    GovernanceError,
    TransactionFailed,
)
from corral.errors import PhaseError as KernelPhaseError
from corral.governance.approvals import Approval, ApprovalRequest
from corral.governance.budget import FORCE_DECIDE, STOP
from corral.governance.effects import to_money
from corral.governance.governor import Governor
from corral.governance.run import run_sync
from corral.governance.traces import Trace, iso
from corral.governance.transactions import json_safe

# The cost ``tx.call(cost=…)`` declared for the call in progress on this thread (or task). Every tool is
# registered with a cost function that reads it, so the cost reaches the kernel as the call's estimate
# (reserved before, settled after) and never reaches the tool as an argument.
_CALL_COST: ContextVar[Decimal] = ContextVar("corral_shape_call_cost", default=Decimal(0))


def _declared_cost(args: Mapping[str, Any]) -> Decimal:
    return _CALL_COST.get()


def _effect_value(effect: Any, tool: str) -> str:
    """Shape's ``ToolEffect`` (or its value) as the kernel's effect; an undeclared effect is irreversible."""
    if effect is None:
        return ToolEffect.IRREVERSIBLE.value
    try:
        return as_effect(effect).value
    except ValueError:
        raise ConfigError(
            f"tool {tool!r}: unknown effect {effect!r}; expected ToolEffect.READ, REVERSIBLE or IRREVERSIBLE"
        ) from None


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
            store=store,
            gates=gates,
            clock=clock,
            approver_timeout=approval_timeout,
        )
        self.session = self.governor.session(principal=principal)
        self.budget: AgentBudget | None = (
            AgentBudget(self.governor, self.session, slope_threshold) if limited else None
        )
        self.phase = AgentPhase(self.session, self._enter_commit_phase, self._move)
        self.tools: dict[str, dict[str, Any]] = {}
        self.traces: list[ProofTrace] = []
        self._approval_callback: Callable[[str, dict[str, Any]], Any] | None = None
        # calls in progress, by their arguments as the tool receives them → the keyword arguments as
        # given, which the approval callback (asked on a worker thread) receives as Shape passed them
        self._asking: dict[tuple[str, str], dict[str, Any]] = {}
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
            compensate = as_compensation(compensation)
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
        given = self._asking.get(_args_key(request.tool, request.args))
        kwargs = dict(given) if given is not None else dict(request.args)
        return Approval(bool(callback(request.tool, kwargs)), name or repr(callback))

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
        it raises ``RuleViolation`` (a ``BudgetExceeded``).
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
            tx = Transaction(f"T{self._tx_counter}", kernel=kernel_tx)
            self._tx_ids[kernel_tx.id] = tx.tx_id
            self._commit = TransactionContext(self, tx, block)
            return self._commit
        gate = self.session.budget.gate
        raise translate(failure, "commit", call=False, over_budget=gate in (FORCE_DECIDE, STOP))

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
        raise translate(failure, target.value, call=False)

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
        cost_token = _CALL_COST.set(declared)
        asking = self._note_asking(tool_name, given)
        try:
            return self._run(tool_name, given, tx)
        finally:
            if asking is not None:
                self._asking.pop(asking, None)
            _CALL_COST.reset(cost_token)

    def _run(self, tool_name: str, given: dict[str, Any], tx: Transaction | None) -> Any:
        """One call through the kernel's seam: ``begin_call`` decides (or refuses), the tool runs, the
        handle's ``finish`` records the outcome — and, for a failed step, rolls the transaction back."""
        kernel = tx.kernel if tx is not None and tx.kernel is not None else self.session
        try:
            handle = kernel.begin_call(tool_name, given)
        except (Blocked, ApprovalPending, ApprovalDenied, KernelPhaseError) as refusal:
            trace = refusal.trace
            record = trace.to_dict() if isinstance(trace, Trace) and trace.kind == "call" else None
            waiting = isinstance(refusal, ApprovalPending | ApprovalDenied)
            self._trace(
                tool_name, record, tx, error=_refusal_text(record, refusal),
                refused="APPROVAL_REQUIRED" if waiting else "BLOCKED",
            )
            raise translate(refusal, tool_name, known=tool_name in self.governor.tools) from None
        try:
            result = run_sync(handle.pending.spec.fn, given)
        except BaseException as exc:
            try:
                handle.finish(error=exc)
            except TransactionFailed as failed:  # the step failed and the transaction rolled back
                if failed.tx is not None and failed.tx.state == "needs_attention":
                    _note(exc, failed)
            self._trace(tool_name, handle.trace.to_dict(), tx, error=exc)
            raise
        trace = handle.finish(result=result)
        self._trace(tool_name, trace.to_dict(), tx, result=result)
        if tx is not None and handle.effect != "read":
            tx.buffer(tool_name, given, result, self.tools.get(tool_name, {}).get("compensation"))
        return result

    def _note_asking(self, tool_name: str, given: dict[str, Any]) -> tuple[str, str] | None:
        spec = self.governor.tools.get(tool_name)
        if spec is None or self._approval_callback is None:
            return None
        try:
            key = _args_key(tool_name, spec.bind(given))
        except Exception:  # arguments that do not fit: governance refuses the call before anyone is asked
            return None
        self._asking[key] = given
        return key

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
        self._trace(tool_name, trace.to_dict(), tx, error=f"Blocked by governance: {reason}", refused="BLOCKED")
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
    ) -> ProofTrace:
        record = record or {}
        outcome = record.get("outcome") or {}
        cost = cost_of(outcome.get("cost"))
        if cost > 0 and self.budget is not None:
            self.budget.note(cost)
        kernel_tx = record.get("tx")
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        shape = ProofTrace(
            tool=tool_name,
            decision=decision_of(record, refused),
            phase=record.get("phase") or self.session.phase,
            budget_spent=self.budget.spent if self.budget is not None else 0.0,
            budget_limit=self.budget.limit if self.budget is not None else 0.0,
            rules_evaluated=[shape_check(c) for c in record.get("checks") or ()],
            timestamp=record.get("ts") or iso(self.governor.now()),
            duration_s=(outcome.get("duration_ms") or 0.0) / 1000,
            tx_id=self._tx_ids.get(kernel_tx, tx.tx_id if tx is not None else None) if kernel_tx else None,
            result=result,
            error=error,
            trace_id=record.get("id"),
        )
        self.traces.append(shape)
        return shape

    # ------------------------------------------------------------------------- Shape's inner workings

    def _evaluate(self, tool_name: str, kwargs: Mapping[str, Any], tx: Transaction | None = None) -> ProofTrace:
        """What would happen if ``tool_name`` were called now, as a ProofTrace: nothing runs, is spent,
        recorded or asked (corral's ``gov.check``). An unknown tool raises ``ShapeError``, as in Shape."""
        if tool_name not in self.governor.tools:
            raise ShapeError(f"Unknown tool: {tool_name}")
        decision = self.governor.check(tool_name, dict(kwargs), session=self.session)
        words = {**DECISIONS, "approval_required": "APPROVAL_REQUIRED"}
        return ProofTrace(
            tool=tool_name,
            decision=words.get(decision.decision, "BLOCKED"),
            phase=self.session.phase,
            budget_spent=self.budget.spent if self.budget is not None else 0.0,
            budget_limit=self.budget.limit if self.budget is not None else 0.0,
            rules_evaluated=[shape_check(c) for c in decision.checks],
            timestamp=iso(self.governor.now()),
            tx_id=tx.tx_id if tx is not None else None,
        )

    def _rule_context(self, tool_name: str, effect: ToolEffect | str) -> dict[str, Any]:
        """Shape's rule context — ``phase``, ``tool`` (the effect), ``budget`` (percent), ``time`` — for
        ``Rule.evaluate``, taken from the session and the governor's clock."""
        now = self.governor.now().astimezone(UTC)
        return {
            "phase": self.session.phase,
            "tool": as_effect(effect).value,
            "budget": self.session.budget.pct,
            "time": now.strftime("%H:%M"),
            "now": now,
        }


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

    def __init__(self, agent: Agent, tx: Transaction, block: Any = None) -> None:
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


def _args_key(tool: str, args: Mapping[str, Any]) -> tuple[str, str]:
    return tool, canonical_sha256(json_safe(dict(args)))


def _refusal_text(record: Mapping[str, Any] | None, refusal: GovernanceError) -> str:
    decision = (record or {}).get("decision")
    if decision == "pending":
        return f"Approval pending: {refusal}"
    if decision == "denied":
        return f"Approval not granted: {refusal}"
    return f"Blocked by governance: {refusal}"


def _note(error: BaseException, failed: TransactionFailed) -> None:
    """Errors are never swallowed: say on the original exception what the rollback could not undo."""
    note = f"corral: {failed}"
    if note not in getattr(error, "__notes__", ()):
        error.add_note(note)


__all__ = ["Agent", "PhaseContext", "TransactionContext", "wrap_tool"]
