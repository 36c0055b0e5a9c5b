"""The commit phase as a saga with a durable log: all-or-nothing up to the pivot (DESIGN §7).

Each non-read step writes INTENT before it runs and DONE (or FAILED) after. When a step fails or an
exception leaves the block, the DONE reversible steps are compensated in reverse order, each with the
``Call`` it undoes; an irreversible step that has run is the pivot, after which only retries remain.

A step's INTENT (and, on the first step, the transaction's own record) goes into the same store batch as
its reservation and decision (``pipeline.record``), and DONE or FAILED into the same batch as its
settlement and outcome (``pipeline.finish``): the decision and its INTENT are stored together or not
at all, and a step costs two commits. ``tx.call`` is ``tx.begin_call`` + running the tool + ``finish``;
the step methods below (``record_step``, ``step_done``, ``step_failed``, ``fail``) are what a
``CallHandle`` drives.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    GovernanceError,
    PhaseError,
    TransactionFailed,
)
from corral.governance.authorize import aauthorize, authorize
from corral.governance.calls import Call, CallHandle, abegin_call, begin_call
from corral.governance.effects import IRREVERSIBLE, READ
from corral.governance.owner import owner_identity
from corral.governance.pipeline import PendingCall, finish, prepare, record
from corral.governance.records import event_record, outcome, outcome_record
from corral.governance.run import run_async, run_async_positional, run_sync, run_sync_positional, sleep
from corral.governance.traces import Trace, iso
from corral.ids import new_id
from corral.store import LogStep, Op, PutTransaction, UpdateTransaction

OPEN = "open"
COMMITTED = "committed"
ROLLING_BACK = "rolling_back"
ROLLED_BACK = "rolled_back"
NEEDS_ATTENTION = "needs_attention"
STATES = (OPEN, COMMITTED, ROLLING_BACK, ROLLED_BACK, NEEDS_ATTENTION)

INTENT = "INTENT"
DONE = "DONE"
FAILED = "FAILED"
COMPENSATING = "COMPENSATING"
COMPENSATED = "COMPENSATED"
COMPENSATION_FAILED = "COMPENSATION_FAILED"

REFUSALS = (Blocked, ApprovalPending, ApprovalDenied)


def json_safe(value: Any) -> Any:
    """A result as the log can keep it: JSON values as they are, anything else as its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return repr(value)


class Step:
    """A non-read call that ran (or was attempted) inside the transaction."""

    __slots__ = ("call", "compensated", "pc", "seq", "status", "trace_id")

    def __init__(self, seq: int, call: Call, trace_id: str, pc: PendingCall | None = None) -> None:
        self.seq = seq
        self.call = call
        self.trace_id = trace_id
        self.status = INTENT
        self.compensated = False
        self.pc = pc


class Transaction:
    """The open commit block. ``tx.call`` runs a tool now; ``tx.defer`` queues one for the end."""

    def __init__(self, governor: Any, session: Any, plan: Any = None, *, implicit: bool = False) -> None:
        self.governor = governor
        self.session = session
        self.plan = plan
        self.id = new_id()
        self.state = OPEN
        self.steps: list[Step] = []
        self.deferred: list[tuple[str, dict[str, Any]]] = []
        self.deferred_steps: list[int | None] = []  # the plan step each deferred call holds
        self.pivoted = False
        self.implicit = implicit
        self.error: BaseException | None = None
        self.failed_compensations: list[dict[str, Any]] = []
        self._stored = False

    def __repr__(self) -> str:
        return f"<Transaction {self.id} {self.state}, {len(self.steps)} step(s)>"

    @classmethod
    def restore(cls, governor: Any, session: Any, tx_id: str) -> Transaction | None:
        """Rebuild an open transaction from its log, so a resumed session can finish or roll it back."""
        store = governor.store
        record = store.get_transaction(tx_id)
        if record is None or record.get("state") != OPEN:
            return None
        plan = session.plans.get(record.get("plan") or "")
        tx = cls(governor, session, plan)
        tx.id = tx_id
        tx._stored = True
        tx.deferred = [(d[0], dict(d[1])) for d in record.get("deferred") or []]
        steps = list(record.get("deferred_steps") or [])
        tx.deferred_steps = (steps + [None] * len(tx.deferred))[: len(tx.deferred)]
        by_seq: dict[int, list[dict[str, Any]]] = {}
        for entry in store.steps(tx_id):
            by_seq.setdefault(entry["seq"], []).append(entry)
        for seq in sorted(by_seq):
            entries = by_seq[seq]
            first = entries[0]
            call = Call(first["tool"], dict(first.get("args") or {}), idempotency_key=first.get("key"), tx=tx_id,
                        session=session.id, effect=first.get("effect"))
            step = Step(seq, call, first.get("trace") or "")
            for entry in entries:
                step.status = entry["status"]
                if entry["status"] == DONE:
                    call.result = entry.get("result")
                if entry["status"] == COMPENSATED:
                    step.compensated = True
            if any(e["status"] == DONE for e in entries) and step.status in (COMPENSATING, COMPENSATION_FAILED):
                step.status = DONE
            tx.steps.append(step)
            if step.status == DONE and call.effect == IRREVERSIBLE:
                tx.pivoted = True
        store.update_transaction(tx_id, {"owner": owner_identity()})
        return tx

    # ------------------------------------------------------------------------------------------ log

    def _record_doc(self) -> dict[str, Any]:
        """The transaction's own record, as it is first stored (with its first step, or when it pauses)."""
        return {
            "id": self.id,
            "session": self.session.id,
            "agent": self.governor.agent,
            "state": self.state,
            "plan": self.plan.id if self.plan is not None else None,
            "owner": owner_identity(),
            "created": iso(self.governor.now()),
            "deferred": [list(d) for d in self.deferred],
            "deferred_steps": list(self.deferred_steps),
        }

    def store_now(self) -> None:
        """Store the transaction's own record now (it is otherwise stored with its first step)."""
        if self._stored:
            return
        self.governor.store.put_transaction(self._record_doc())
        self._stored = True

    def _log(self, step: Step, status: str, **fields: Any) -> None:
        step.status = status
        self.governor.store.log_step(self.id, self._entry(step, status, **fields))

    def _entry(self, step: Step, status: str, **fields: Any) -> dict[str, Any]:
        entry = {
            "seq": step.seq,
            "status": status,
            "tool": step.call.tool,
            "args": step.call.args,
            "key": step.call.idempotency_key,
            "effect": step.call.effect,
            "trace": step.trace_id,
            "ts": iso(self.governor.now()),
        }
        entry.update(fields)
        return entry

    def _set_state(self, state: str) -> None:
        self.state = state
        if self._stored:
            self.governor.store.update_transaction(self.id, {"state": state})

    def _paused(self, pending: ApprovalPending) -> None:
        """The transaction waits for a human: it belongs to the session now, and recovery leaves it alone."""
        self.store_now()
        self.governor.store.update_transaction(self.id, {"paused_for": pending.approval_id})

    def hold(self) -> None:
        """Store the transaction now, held by its session: recovery leaves a held transaction alone."""
        self.store_now()
        self.governor.store.update_transaction(self.id, {"held": True})

    def persist_deferred(self) -> None:
        """Store the list of deferred calls, so a resumed session runs them at the end of the commit."""
        self.store_now()
        self.governor.store.update_transaction(self.id, {"deferred": [list(d) for d in self.deferred],
                                                         "deferred_steps": list(self.deferred_steps)})

    def authorize(self, pc: PendingCall) -> None:
        """The approval stage for a call in this transaction: a pause keeps the transaction for the session."""
        try:
            authorize(pc)
        except ApprovalPending as pending:
            self._paused(pending)
            raise

    async def aauthorize(self, pc: PendingCall) -> None:
        try:
            await aauthorize(pc)
        except ApprovalPending as pending:
            self._paused(pending)
            raise

    def check_open(self, tool: str) -> None:
        """Refuse (traced, ``PhaseError``) a call on a transaction that has finished."""
        if self.state == OPEN:
            return
        reason = f"transaction {self.id} is {self.state}; it takes no more calls (tried {tool})"
        record = {
            "kind": "call", "tool": tool, "tx": self.id, "decision": "blocked", "reason": reason,
            "checks": [{"check": "transaction", "passed": False, "detail": reason}],
        }
        try:
            trace = _event(self.governor, self.session, record)
        except Exception:
            trace = None
        raise PhaseError(reason, trace=trace)

    # -------------------------------------------------------------------------------------- calls

    def next_key(self) -> str:
        """The idempotency key the next step will get (``TX:SEQ``)."""
        return f"{self.id}:{len(self.steps) + 1}"

    def _intent(self, step: Step) -> list[Op]:
        """The log entries that open a step: INTENT, after the transaction's record on its first step."""
        ops: list[Op] = [] if self._stored else [PutTransaction(self._record_doc())]
        ops.append(LogStep(self.id, self._entry(step, INTENT)))
        return ops

    def record_step(self, pc: PendingCall, ops: Sequence[Op] = ()) -> Step:
        """Record a write's decision with its INTENT, in one store batch (one commit), and add the step.

        A refusal here (the reservation does not fit, the batch cannot be written) raises ``Blocked`` with
        its trace and leaves no step behind.
        """
        seq = len(self.steps) + 1
        call = Call(tool=pc.name, args=dict(pc.given), idempotency_key=f"{self.id}:{seq}", tx=self.id,
                    session=self.session.id, effect=pc.effect)
        step = Step(seq, call, pc.record["id"], pc)
        record(pc, [*self._intent(step), *ops])
        self._stored = True
        self.steps.append(step)
        return step

    def step_done(self, step: Step | None, pc: PendingCall, result: Any, cost: Any = None) -> None:
        """The call ran: DONE with the settlement and the outcome, in one batch — and for the one step of
        an implicit transaction (phases off), its commit too. A read in the transaction has no step."""
        ops: list[Op] = []
        commits = False
        if step is not None:
            # Known before it is logged: should the log write fail, rolling back in this process undoes it.
            step.call.result = result
            step.status = DONE
            if pc.effect == IRREVERSIBLE:
                self.pivoted = True
            ops.append(LogStep(self.id, self._entry(step, DONE, result=json_safe(result))))
            commits = self.implicit and not self.deferred and self.state == OPEN
            if commits:
                ops.append(UpdateTransaction(self.id, {"state": COMMITTED}))
        finish(pc, result=result, cost=cost, ops=ops)
        if commits:
            self.state = COMMITTED

    def step_failed(self, step: Step | None, pc: PendingCall, exc: BaseException) -> None:
        """The call raised: FAILED with the settlement (at 0) and the outcome, in one batch."""
        ops: list[Op] = []
        if step is not None:
            step.call.error = f"{type(exc).__name__}: {exc}"
            step.status = FAILED
            ops.append(LogStep(self.id, self._entry(step, FAILED, error=step.call.error)))
        finish(pc, error=exc, ops=ops)

    def begin_call(self, tool: str, args: Mapping[str, Any], **options: Any) -> CallHandle:
        """The split form inside this transaction (DESIGN §10): decide and log INTENT now, ``finish`` later."""
        return begin_call(self.session, tool, args, tx=self, implicit=self.implicit, **options)

    async def abegin_call(self, tool: str, args: Mapping[str, Any], **options: Any) -> CallHandle:
        return await abegin_call(self.session, tool, args, tx=self, implicit=self.implicit, **options)

    def invoke(self, tool: str, args: Mapping[str, Any]) -> CallHandle:
        """Govern and run ``tool`` now; the finished handle (``.result``, ``.trace``). A refusal raises and
        leaves the transaction open; a failure rolls back and raises ``TransactionFailed``."""
        handle = begin_call(self.session, tool, args, tx=self)
        fn = handle.pending.spec.fn
        try:
            result = run_sync(fn, args)
        except Exception as exc:
            step = self.steps[-1] if handle.idempotency_key else None
            if step is not None and self.pivoted and handle.pending.spec.retryable:
                result = self._retry(handle, step, exc)
            else:
                handle.finish(error=exc)
                raise AssertionError("unreachable: a failed step rolls back and raises") from exc
        handle.finish(result=result)
        return handle

    async def ainvoke(self, tool: str, args: Mapping[str, Any]) -> CallHandle:
        handle = await abegin_call(self.session, tool, args, tx=self)
        fn = handle.pending.spec.fn
        try:
            result = await run_async(fn, args)
        except Exception as exc:
            step = self.steps[-1] if handle.idempotency_key else None
            if step is not None and self.pivoted and handle.pending.spec.retryable:
                result = await self._aretry(handle, step, exc)
            else:
                await handle.afinish(error=exc)
                raise AssertionError("unreachable: a failed step rolls back and raises") from exc
        await handle.afinish(result=result)
        return handle

    def call(self, tool: str, /, **args: Any) -> Any:
        """Govern and run ``tool`` now. A refusal raises and leaves the transaction open; a failure rolls back."""
        return self.invoke(tool, args).result

    async def acall(self, tool: str, /, **args: Any) -> Any:
        return (await self.ainvoke(tool, args)).result

    def _retry(self, handle: CallHandle, step: Step, exc: Exception) -> Any:
        """After the pivot a retryable step is tried again, with the same idempotency key."""
        pc = handle.pending
        last: Exception = exc
        for attempt in range(2, self.governor.step_tries + 1):
            time.sleep(self.governor.retry_backoff * (2 ** (attempt - 2)))
            self._log(step, FAILED, error=f"{type(last).__name__}: {last}", attempt=attempt - 1)
            try:
                return run_sync(pc.spec.fn, step.call.args)
            except Exception as again:
                last = again
        handle.finish(error=last, rollback=False)
        self._stuck(last, f"{step.call.tool} failed after the pivot, {self.governor.step_tries} tries: {last}")
        raise AssertionError("unreachable")

    async def _aretry(self, handle: CallHandle, step: Step, exc: Exception) -> Any:
        pc = handle.pending
        last: Exception = exc
        for attempt in range(2, self.governor.step_tries + 1):
            await sleep(self.governor.retry_backoff * (2 ** (attempt - 2)))
            self._log(step, FAILED, error=f"{type(last).__name__}: {last}", attempt=attempt - 1)
            try:
                return await run_async(pc.spec.fn, step.call.args)
            except Exception as again:
                last = again
        handle.finish(error=last, rollback=False)
        self._stuck(last, f"{step.call.tool} failed after the pivot, {self.governor.step_tries} tries: {last}")
        raise AssertionError("unreachable")

    def defer(self, tool: str, /, **args: Any) -> None:
        """Queue a call (typically irreversible) to run after the block, once every other step succeeded.

        It is checked now, so a refusal surfaces at once, and checked again when it runs.
        """
        self.check_open(tool)
        try:
            pc = prepare(self.session, tool, dict(args), self, dry=True)
        except GovernanceError as exc:
            if exc.trace is not None:
                self.governor.store.append(self.session.id, exc.trace.to_dict(), durable=True)
            raise
        # The plan step it matches is held for it now, so a second identical call finds no step and is
        # refused at once, not when the commit finishes; it is given back just before the call runs.
        held = None
        if pc.decision.plan_step is not None and self.plan is not None:
            held = self.plan.consume(tool, pc.args, pc.spec.bind)
        self.deferred.append((tool, dict(args)))
        self.deferred_steps.append(held)
        try:  # stored at once: a resumed session runs it at the end of the commit
            self.persist_deferred()
            if held is not None:
                self.session.save()
        except BaseException:
            self.deferred.pop()
            self.deferred_steps.pop()
            if held is not None:
                self.plan.release_step(held)
            raise

    async def adefer(self, tool: str, /, **args: Any) -> None:
        self.defer(tool, **args)

    def _give_back_held(self) -> int | None:
        """The next deferred call is about to run: give back the plan step held for it, for it to take."""
        held = self.deferred_steps[0] if self.deferred_steps else None
        if held is not None and self.plan is not None:
            self.plan.release_step(held)
        return held

    def _hold_again(self, held: int | None) -> None:
        """The deferred call paused for approval: it keeps its plan step while it waits."""
        if held is not None and self.plan is not None:
            self.plan.hold_step(held)
            self.session.save()

    # ---------------------------------------------------------------------------------- the end

    def _stuck(self, cause: BaseException, message: str) -> None:
        """After the pivot nothing can be undone: say exactly what is stuck."""
        self.error = cause
        self._set_state(NEEDS_ATTENTION)
        done = [f"{s.call.tool} ({s.call.idempotency_key})" for s in self.steps if s.status == DONE]
        detail = f"{message}; already done and kept: {', '.join(done) or 'nothing'}"
        raise TransactionFailed(
            f"transaction {self.id} needs attention: {detail}", tx=self,
            failed_compensations=self.failed_compensations,
        ) from cause

    def fail(self, cause: BaseException, message: str) -> None:
        """A step failed: roll back (or, past the pivot, stop) and raise ``TransactionFailed``."""
        if self.pivoted:
            self._stuck(cause, message)
        self.error = cause
        self.rollback()
        raise self._failure(cause, message) from cause

    async def afail(self, cause: BaseException, message: str) -> None:
        if self.pivoted:
            self._stuck(cause, message)
        self.error = cause
        await self.arollback()
        raise self._failure(cause, message) from cause

    def _failure(self, cause: BaseException, message: str) -> TransactionFailed:
        outcome = "rolled back" if self.state == ROLLED_BACK else "needs attention"
        failed = ", ".join(f"{f['tool']} ({f['error']})" for f in self.failed_compensations)
        text = f"transaction {self.id} {outcome}: {message}"
        if failed:
            text += f"; compensations that failed: {failed}"
        return TransactionFailed(text, tx=self, failed_compensations=self.failed_compensations)

    def finish(self, exc: BaseException | None, *, pause_on_pending: bool = False) -> None:
        """Leave the block: run the deferred calls and commit, or roll back and raise ``TransactionFailed``.

        With ``pause_on_pending`` (the harness), a deferred call awaiting approval raises
        ``ApprovalPending`` and leaves the transaction open; finishing again later resumes after the
        deferred calls that already ran, never repeating one.
        """
        if self.state != OPEN:
            return
        if exc is not None:
            if self.pivoted:
                self._stuck(exc, f"the block raised {type(exc).__name__}: {exc}")
            self.error = exc
            self.rollback()
            raise self._failure(exc, f"the block raised {type(exc).__name__}: {exc}") from exc
        while self.deferred:
            tool, args = self.deferred[0]
            held = self._give_back_held()
            try:
                self.call(tool, **args)
            except TransactionFailed:
                raise
            except ApprovalPending:
                if pause_on_pending:
                    self._hold_again(held)
                    raise
                self.fail(*_refused(tool))
            except GovernanceError as refused:
                self.fail(refused, f"deferred {tool} was refused: {refused}")
            self.deferred.pop(0)
            self.deferred_steps.pop(0)
            if self._stored:
                self.persist_deferred()
        self._set_state(COMMITTED)

    async def afinish(self, exc: BaseException | None, *, pause_on_pending: bool = False) -> None:
        if self.state != OPEN:
            return
        if exc is not None:
            if self.pivoted:
                self._stuck(exc, f"the block raised {type(exc).__name__}: {exc}")
            self.error = exc
            await self.arollback()
            raise self._failure(exc, f"the block raised {type(exc).__name__}: {exc}") from exc
        while self.deferred:
            tool, args = self.deferred[0]
            held = self._give_back_held()
            try:
                await self.acall(tool, **args)
            except TransactionFailed:
                raise
            except ApprovalPending:
                if pause_on_pending:
                    self._hold_again(held)
                    raise
                await self.afail(*_refused(tool))
            except GovernanceError as refused:
                await self.afail(refused, f"deferred {tool} was refused: {refused}")
            self.deferred.pop(0)
            self.deferred_steps.pop(0)
            if self._stored:
                self.persist_deferred()
        self._set_state(COMMITTED)

    # -------------------------------------------------------------------------------- compensation

    def _to_compensate(self) -> list[Step]:
        return [s for s in reversed(self.steps) if s.status == DONE and s.call.effect != READ]

    def rollback(self) -> None:
        """Compensate every DONE reversible step, newest first; never swallow a failure. After the pivot
        (an irreversible step ran) nothing can be undone: the transaction needs attention instead."""
        if self.pivoted:
            self._stuck(RuntimeError("rollback requested"), "cannot roll back past the pivot")
        self._set_state(ROLLING_BACK)
        for step in self._to_compensate():
            self._compensate(step, sync=True)
        self._set_state(NEEDS_ATTENTION if self.failed_compensations else ROLLED_BACK)

    async def arollback(self) -> None:
        if self.pivoted:
            self._stuck(RuntimeError("rollback requested"), "cannot roll back past the pivot")
        self._set_state(ROLLING_BACK)
        for step in self._to_compensate():
            await self._acompensate(step)
        self._set_state(NEEDS_ATTENTION if self.failed_compensations else ROLLED_BACK)

    def _compensation_for(self, step: Step) -> Any:
        spec = self.governor.tools.get(step.call.tool)
        return spec.compensate if spec is not None else None

    def _compensate(self, step: Step, *, sync: bool) -> None:
        fn = self._compensation_for(step)
        if fn is None:
            self._compensation_failed(step, "no compensation registered", 0, 0.0)
            return
        started = time.perf_counter()
        last: BaseException | None = None
        for attempt in range(1, self.governor.compensation_tries + 1):
            self._log(step, COMPENSATING, attempt=attempt)
            try:
                run_sync_positional(fn, step.call)
            except Exception as exc:
                last = exc
                if attempt < self.governor.compensation_tries:
                    time.sleep(self.governor.retry_backoff * (2 ** (attempt - 1)))
                continue
            self._compensated(step, attempt, started)
            return
        self._compensation_failed(step, f"{type(last).__name__}: {last}", attempt, started)

    async def _acompensate(self, step: Step) -> None:
        fn = self._compensation_for(step)
        if fn is None:
            self._compensation_failed(step, "no compensation registered", 0, 0.0)
            return
        started = time.perf_counter()
        last: BaseException | None = None
        for attempt in range(1, self.governor.compensation_tries + 1):
            self._log(step, COMPENSATING, attempt=attempt)
            try:
                await run_async_positional(fn, step.call)
            except Exception as exc:
                last = exc
                if attempt < self.governor.compensation_tries:
                    await sleep(self.governor.retry_backoff * (2 ** (attempt - 1)))
                continue
            self._compensated(step, attempt, started)
            return
        self._compensation_failed(step, f"{type(last).__name__}: {last}", attempt, started)

    def _compensation_trace(self, step: Step, status: str, error: str | None, attempts: int, started: float) -> None:
        duration = round((time.perf_counter() - started) * 1000, 3) if started else 0.0
        _event(
            self.governor,
            self.session,
            {
                "kind": "compensation",
                "tool": step.call.tool,
                "effect": step.call.effect,
                "phase": self.session.phase,
                "tx": self.id,
                "args": step.pc.record["args"] if step.pc is not None else step.call.args,
                "args_sha256": step.pc.record["args_sha256"] if step.pc is not None else None,
                "decision": "allowed",
                "reason": f"compensating {step.call.tool} step {step.seq} of transaction {self.id}",
                "compensates": step.trace_id,
                "checks": [
                    {"check": "compensation", "passed": status == "ok",
                     "detail": f"{attempts} attempt(s)" + (f"; last error: {error}" if error else "")}
                ],
                "outcome": outcome(status, 0.0, duration, error),
            },
        )

    def _compensated(self, step: Step, attempts: int, started: float) -> None:
        step.compensated = True
        self._log(step, COMPENSATED, attempt=attempts)
        self._compensation_trace(step, "ok", None, attempts, started)
        gov = self.governor
        gov.store.append(self.session.id, outcome_record(
            self.session.id, step.trace_id, outcome("compensated", _outcome_cost(step), None, None), gov.now()),
            durable=True)

    def _compensation_failed(self, step: Step, error: str, attempts: int, started: float) -> None:
        self._log(step, COMPENSATION_FAILED, error=error, attempt=attempts)
        self._compensation_trace(step, "error", error, attempts, started)
        self.failed_compensations.append(
            {"tool": step.call.tool, "seq": step.seq, "key": step.call.idempotency_key, "error": error,
             "call": step.call}
        )


def _refused(tool: str) -> tuple[BaseException, str]:
    """The pending approval, as the reason a deferred call could not run at the end of a ``with`` block."""
    import sys

    exc = sys.exc_info()[1]
    return exc, f"deferred {tool} is waiting for approval: {exc}"  # type: ignore[return-value]


def _outcome_cost(step: Step) -> float:
    if step.pc is None or step.pc.outcome is None:
        return 0.0
    return float(step.pc.outcome.get("cost") or 0.0)


def _event(gov: Any, session: Any, fields: dict[str, Any]) -> Trace:
    """Append a non-call record (a compensation, a refusal of the transaction itself) to the chain."""
    record = event_record(gov, session, fields)
    gov.store.append(session.id, record, durable=True)
    return Trace(record)


__all__ = ["STATES", "Transaction"]
