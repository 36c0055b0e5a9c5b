"""The public seam of a governed call: ``begin_call`` decides, ``CallHandle.finish`` records what happened.

Every enforcement point goes through it — the harness loop, the MCP proxy, the Claude Code hook, the
framework adapters, the server's decision point — and ``s.call`` is nothing but ``begin_call``, running
the tool, and ``finish`` (DESIGN §10)::

    h = s.begin_call("send_email", {"to": "x"})   # decides, reserves, traces, logs INTENT — or raises
    try:
        r = send_email(to="x")                     # the tool runs wherever it lives
    except Exception as exc:
        h.finish(error=exc)                        # settles at 0; in a transaction, rolls back
        raise
    h.finish(result=r)                             # settles at the real cost, records the outcome

``begin_call`` raises exactly what ``s.call`` raises (``Blocked``, ``ApprovalPending``,
``ApprovalDenied``, ``PhaseError``, ``ConfigError``), each with its trace. A handle never finished is
settled at 0 and recorded ``error: "no outcome"`` when its session closes (``s.close()``), or by
recovery when the process that held it died inside a transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from corral.errors import TransactionFailed
from corral.governance.authorize import aauthorize, authorize
from corral.governance.effects import READ
from corral.governance.pipeline import PendingCall, fault, finish, prepare, record, release, unconsume
from corral.governance.records import NO_OUTCOME
from corral.governance.traces import Trace
from corral.store import OpenCall
from corral.struct import struct

#: ``annotate``: fields added to the decision record before it is written (the Claude Code hook files
#: the ``tool_use_id`` there) — a mapping, or a function of the ``PendingCall``.
Annotate = Mapping[str, Any] | Callable[[PendingCall], Mapping[str, Any]] | None
#: ``before_step(pending_call, idempotency_key)``: runs just before a transaction step's INTENT is
#: logged (the hook snapshots the file an edit will change); if it raises, the call is refused.
BeforeStep = Callable[[PendingCall, str], None] | None


@struct(slots=True)
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


class ToolFailed(Exception):
    """A tool's failure reported as text (by a process that ran it elsewhere), as ``finish`` records it."""


class NotRun(Exception):
    """Recorded as the outcome of a call that was allowed but never ran (``CallHandle.cancel``)."""


class CallHandle:
    """A call that governance has allowed and whose outcome is not known yet.

    Made by ``s.begin_call`` (or ``tx.begin_call``); exactly one of ``finish`` or ``cancel`` ends it.
    Inside a commit the call is a step of the transaction: ``finish(error=…)`` logs it FAILED and rolls
    the transaction back, raising the ``TransactionFailed`` that says what was undone — as ``tx.call``
    does when a tool raises — unless ``rollback=False`` (the step stays FAILED, the transaction open).
    """

    __slots__ = ("_finished", "_implicit", "_pc", "_step", "_tx", "result")

    def __init__(self, pc: PendingCall, tx: Any, step: Any, implicit: bool) -> None:
        self._pc = pc
        self._tx = tx
        self._step = step
        self._implicit = implicit
        self._finished = False
        self.result: Any = None

    # ---------------------------------------------------------------------------------- what it is

    @property
    def call_id(self) -> str:
        """The decision's trace id: ``corral why CALL_ID`` explains it."""
        return self._pc.record["id"]

    @property
    def tool(self) -> str:
        return self._pc.name

    @property
    def args(self) -> dict[str, Any]:
        """The arguments as the tool receives them (signature defaults applied)."""
        return self._pc.args

    @property
    def effect(self) -> str:
        return self._pc.effect

    @property
    def decision(self) -> str:
        """``allowed``, ``flagged`` or ``approved``: refusals raise from ``begin_call`` instead."""
        return self._pc.record["decision"]

    @property
    def reason(self) -> str:
        return self._pc.record["reason"]

    @property
    def trace(self) -> Trace:
        """The decision's proof trace; after ``finish`` with its outcome merged in."""
        pc = self._pc
        if pc.outcome is not None and "outcome" not in pc.record:
            return Trace({**pc.record, "outcome": pc.outcome})
        return Trace(pc.record)

    @property
    def tx(self) -> str | None:
        return self._tx.id if self._tx is not None else None

    @property
    def idempotency_key(self) -> str | None:
        """The transaction step's key (``TX:SEQ``), for a write inside a commit; else None."""
        return self._step.call.idempotency_key if self._step is not None else None

    @property
    def estimate(self) -> Any:
        return self._pc.estimate

    @property
    def reservation(self) -> str | None:
        return self._pc.reservation

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def pending(self) -> PendingCall:
        """The kernel's working record of the call (for enforcement points that file extra facts)."""
        return self._pc

    def __repr__(self) -> str:
        state = "finished" if self._finished else "open"
        return f"<CallHandle {self.call_id} {self.tool} {self.decision}, {state}>"

    # ------------------------------------------------------------------------------------- ending it

    def _end(self) -> None:
        if self._finished:
            raise RuntimeError(f"the call to {self._pc.name} ({self.call_id}) was already finished")
        self._finished = True
        self._pc.session.forget_call(self.call_id)

    def finish(self, result: Any = None, error: BaseException | str | None = None, cost: Any = None, *,
               rollback: bool = True) -> Trace:
        """The tool ran: settle at ``cost`` (default: ``cost_fn(result)``, else the estimate; 0 on
        error) and record the outcome. Returns the trace with its outcome."""
        self._end()
        self.result = result
        tx = self._tx
        if tx is None:
            finish(self._pc, result=result, error=error, cost=cost)
            return self.trace
        if error is None:
            tx.step_done(self._step, self._pc, result, cost)
            if self._implicit:
                tx.finish(None)
            return self.trace
        cause = _as_exception(error)
        tx.step_failed(self._step, self._pc, cause)
        if rollback:
            try:
                tx.fail(cause, f"{self._pc.name} failed: {cause}")
            except TransactionFailed:
                if not self._implicit:
                    raise
        return self.trace

    async def afinish(self, result: Any = None, error: BaseException | str | None = None, cost: Any = None, *,
                      rollback: bool = True) -> Trace:
        """``finish`` for async code: async compensations are awaited on the caller's loop."""
        self._end()
        self.result = result
        tx = self._tx
        if tx is None:
            finish(self._pc, result=result, error=error, cost=cost)
            return self.trace
        if error is None:
            tx.step_done(self._step, self._pc, result, cost)
            if self._implicit:
                await tx.afinish(None)
            return self.trace
        cause = _as_exception(error)
        tx.step_failed(self._step, self._pc, cause)
        if rollback:
            try:
                await tx.afail(cause, f"{self._pc.name} failed: {cause}")
            except TransactionFailed:
                if not self._implicit:
                    raise
        return self.trace

    def cancel(self, why: str) -> Trace:
        """The call did not run after all: give back its plan step and reservation, record why."""
        self._end()
        unconsume(self._pc)
        error = NotRun(why)
        if self._tx is not None and self._step is not None:
            self._tx.step_failed(self._step, self._pc, error)
        else:
            finish(self._pc, error=error)
        return self.trace

    def abandon(self) -> None:
        """Nobody will finish it (its session is closing): settled at 0, recorded ``no outcome``."""
        if self._finished:
            return
        self._finished = True
        unconsume(self._pc)
        error = ToolFailed(NO_OUTCOME)
        if self._tx is not None and self._step is not None:
            self._tx.step_failed(self._step, self._pc, error)
        else:
            finish(self._pc, error=NO_OUTCOME)


def _open_call(session: Any, pc: PendingCall, tx: Any, implicit: bool) -> OpenCall:
    """What another process needs to finish this call by its id (``resume_call``)."""
    gov = session.governor
    step = None
    if tx is not None and pc.effect != READ:
        seq = len(tx.steps) + 1
        step = {"seq": seq, "key": f"{tx.id}:{seq}", "args": dict(pc.given)}
    doc = {"tool": pc.name, "effect": pc.effect, "agent": gov.agent, "principal": session.principal,
           "tx": tx.id if tx is not None else None, "implicit": implicit, "step": step,
           "estimate": str(pc.estimate), "reserved": pc.reserve is not None or pc.reservation is not None}
    if pc.spec.labels:  # what its result adds to the session (§15), wherever it is finished
        doc["labels"] = sorted(pc.spec.labels)
    expires = gov.now() + timedelta(seconds=gov.call_ttl)
    return OpenCall(pc.record["id"], session.id, expires, doc)


def _as_exception(error: BaseException | str) -> BaseException:
    return error if isinstance(error, BaseException) else ToolFailed(str(error))


# -------------------------------------------------------------------------------------- beginning


def begin_call(
    session: Any, tool: str, args: Mapping[str, Any], *, tx: Any = None, implicit: bool = False,
    annotate: Annotate = None, durable: bool = False, before_step: BeforeStep = None, estimate: Any = None,
) -> CallHandle:
    """Govern a call that will run elsewhere: decide, authorize, record. ``Session.begin_call`` is the
    public face; it picks the transaction (the open commit block, or a one-step one with phases off)."""
    if tx is not None:
        tx.check_open(tool)
    # a call finished elsewhere keeps its reservation as long as it may wait for its outcome
    pc = prepare(session, tool, dict(args), tx, estimate=estimate,
                 hold_for=session.governor.call_ttl if durable else None)
    if annotate:
        pc.record.update(annotate(pc) if callable(annotate) else annotate)
    if tx is not None:
        tx.authorize(pc)
    else:
        authorize(pc)
    return _recorded(session, pc, tx, implicit, durable, before_step)


async def abegin_call(
    session: Any, tool: str, args: Mapping[str, Any], *, tx: Any = None, implicit: bool = False,
    annotate: Annotate = None, durable: bool = False, before_step: BeforeStep = None, estimate: Any = None,
) -> CallHandle:
    """``begin_call`` for async code: an async approver is awaited instead of run on a worker thread."""
    if tx is not None:
        tx.check_open(tool)
    # a call finished elsewhere keeps its reservation as long as it may wait for its outcome
    pc = prepare(session, tool, dict(args), tx, estimate=estimate,
                 hold_for=session.governor.call_ttl if durable else None)
    if annotate:
        pc.record.update(annotate(pc) if callable(annotate) else annotate)
    if tx is not None:
        await tx.aauthorize(pc)
    else:
        await aauthorize(pc)
    return _recorded(session, pc, tx, implicit, durable, before_step)


def _recorded(session: Any, pc: PendingCall, tx: Any, implicit: bool, durable: bool,
              before_step: BeforeStep) -> CallHandle:
    """Record the decision (with its reservation, and a write's INTENT) in one store batch."""
    step = None
    is_step = tx is not None and pc.effect != READ
    if is_step and before_step is not None:
        try:
            before_step(pc, tx.next_key())
        except Exception as exc:  # nothing is recorded yet: give back the plan step, then refuse, traced
            release(pc)
            raise fault(session, pc.record, f"governance fault before {pc.name} could run: {exc}") from None
    ops = [_open_call(session, pc, tx, implicit)] if durable else []
    if is_step:
        step = tx.record_step(pc, ops)
    else:
        record(pc, ops, durable=durable)
    pc.open_call = durable
    handle = CallHandle(pc, tx, step, implicit)
    session.track_call(handle)
    return handle
