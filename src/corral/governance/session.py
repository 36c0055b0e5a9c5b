"""A session: one run of one agent for one principal — its phase, plan, budget scope and audit chain."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from corral.errors import ApprovalPending, Blocked, ConfigError, PhaseError, TransactionFailed
from corral.governance.approvals import same_principal
from corral.governance.budget import FORCE_DECIDE, STOP, BudgetView
from corral.governance.calls import CallHandle, abegin_call, begin_call
from corral.governance.effects import IRREVERSIBLE, READ
from corral.governance.flow import labels_added
from corral.governance.phases import COMMIT, DECIDE, EXPLORE, check_transition
from corral.governance.plans import Plan
from corral.governance.records import event_record, outcome
from corral.governance.run import run_async, run_sync
from corral.governance.traces import Trace, executed_calls, iso, merge_records
from corral.governance.transactions import Transaction
from corral.ids import new_id
from corral.struct import struct


@struct(slots=True)
class Submission:
    """What ``Session.submit`` did with a call: its result and trace, or that it was deferred to the end
    of the commit (``deferred``; it is checked again and runs when the commit finishes)."""

    result: Any
    trace: Trace | None
    deferred: bool = False


class Session:
    """Made by ``gov.session(...)``. Calls go through ``s.call``; phases are ``with`` blocks."""

    def __init__(
        self,
        governor: Any,
        session_id: str,
        principal: str | None,
        roles: tuple[str, ...],
        phase: str = EXPLORE,
        plan: Plan | None = None,
        created: str | None = None,
    ) -> None:
        self.governor = governor
        self.id = session_id
        self.principal = principal
        self.roles = roles
        self._phase = phase
        self.plan = plan
        self.plans: dict[str, Plan] = {}
        self.created = created
        self.lock = threading.RLock()
        self.call_log: list[tuple[str, datetime]] = []
        # the call log as decisions record it (``inputs.calls``): this session object's epoch, how many
        # chain records a resumed log was rebuilt from, and how many entries the chain already holds
        self._log_epoch = new_id()
        self._log_base = 0
        self._log_sent = 0
        self._labels: frozenset[str] = frozenset()
        self._tx: Any = None
        self.last_trace: Trace | None = None  # the latest call decision this process made, for live views
        self._open_calls: dict[str, CallHandle] = {}

    # ----------------------------------------------------------------------------- start and resume

    @classmethod
    def start(cls, governor: Any, principal: Any, roles: Any, session_id: str | None = None) -> Session:
        if principal is not None and (not isinstance(principal, str) or not principal.strip()):
            raise ConfigError(f"principal must be a non-empty name or None, got {principal!r}")
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, Iterable) or not all(isinstance(r, str) and r for r in roles):
            raise ConfigError(f"roles must be a list of names, got {roles!r}")
        if session_id is not None and (not isinstance(session_id, str) or not session_id or len(session_id) > 200):
            raise ConfigError(f"a session id is a non-empty string of at most 200 characters, got {session_id!r}")
        session = cls(governor, session_id or new_id(), principal, tuple(roles), created=iso(governor.now()))
        session.save()
        return session

    @classmethod
    def resume(cls, governor: Any, session_id: Any) -> Session:
        if not isinstance(session_id, str) or not session_id:
            raise ConfigError(f"a session id is a non-empty string, got {session_id!r}")
        record = governor.store.get_session(session_id)
        if record is None:
            raise ConfigError(f"no session {session_id!r} in the store {governor.store.url}")
        if record.get("agent") != governor.agent:
            raise ConfigError(
                f"session {session_id!r} belongs to agent {record.get('agent')!r}, not {governor.agent!r}"
            )
        plans = {p["id"]: Plan.from_dict(p) for p in record.get("plans") or ()}
        plan = plans.get(record.get("plan") or "")
        phase = record.get("phase", EXPLORE)
        session = cls(
            governor, session_id, record.get("principal"), tuple(record.get("roles") or ()),
            EXPLORE if phase == COMMIT else phase, plan, record.get("created"),
        )
        session.plans = plans
        if phase == COMMIT and record.get("tx"):
            tx = Transaction.restore(governor, session, record["tx"])
            if tx is not None:
                session._tx = tx
                session._phase = COMMIT
        records = governor.store.chain_outline(session_id)  # what the log and labels need, not whole records
        traces = merge_records(records)
        session.call_log = executed_calls(traces)
        session._log_base, session._log_sent = len(records), len(session.call_log)
        # the chain is the truth: an outcome that added labels counts even if the session record missed it
        session._labels = frozenset(record.get("labels") or ()) | labels_added(traces)
        return session

    def save(self) -> None:
        """Write the kernel's part of the session record, keeping what others (the harness) keep there."""
        store = self.governor.store
        record = store.get_session(self.id) or {}
        record.update(
            {
                "id": self.id,
                "agent": self.governor.agent,
                "principal": self.principal,
                "roles": list(self.roles),
                "phase": self._phase,
                "plan": self.plan.id if self.plan is not None else None,
                "plans": [p.to_dict() for p in self.plans.values()],
                "tx": self._tx.id if self._tx is not None else None,
                "created": self.created,
                "updated": iso(self.governor.now()),
                "labels": sorted(self._labels),
            }
        )
        store.put_session(record)

    # ------------------------------------------------------------------------------------- state

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def open_transaction(self) -> Any:
        tx = self._tx
        return tx if tx is not None and tx.state == "open" else None

    @property
    def budget(self) -> BudgetView:
        return self.governor.budget_state(self.id).view()

    @property
    def traces(self) -> list[Trace]:
        return merge_records(self.governor.store.records(self.id))

    def note_executed(self, tool: str, when: datetime) -> None:
        self.call_log.append((tool, when))

    @property
    def labels(self) -> frozenset[str]:
        """What the session has read (DESIGN §15): the labels its calls' results added. Only grows."""
        return self._labels

    def add_labels(self, labels: frozenset[str]) -> None:
        """Labels a call's result adds; written to the session record at once when they are new (the
        call's outcome records them too)."""
        with self.lock:
            if labels <= self._labels:
                return
            self._labels = self._labels | labels
        self.save()

    def log_delta(self) -> dict[str, Any]:
        """The calls this session executed since its previous decision record, for ``inputs.calls``
        (see ``governance.rules.replay``). Called once per recorded decision, under ``self.lock``."""
        log, sent = self.call_log, self._log_sent
        self._log_sent = len(log)
        return {"epoch": self._log_epoch, "base": self._log_base, "at": sent,
                "new": [[tool, when.isoformat()] for tool, when in log[sent:]]}

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.principal} {self._phase}>"

    # ------------------------------------------------------------------------------------- calls

    def call(self, tool: str, /, **args: Any) -> Any:
        """Govern and run a tool. Inside a commit block it is a step of the transaction."""
        return self.invoke(tool, args).result

    async def acall(self, tool: str, /, **args: Any) -> Any:
        return (await self.ainvoke(tool, args)).result

    def invoke(self, tool: str, args: Mapping[str, Any]) -> CallHandle:
        """``call``, returning the finished ``CallHandle`` (``.result``, ``.trace`` with its outcome)."""
        tx = self._tx  # inside a commit block, even a finished transaction takes the call (and refuses it)
        if tx is not None:
            return tx.invoke(tool, args)
        if not self.governor.phases and self.is_write(tool, args):
            return self._one_step(tool, args)
        handle = begin_call(self, tool, args)
        try:
            result = run_sync(handle.pending.spec.fn, args)
        except BaseException as exc:
            handle.finish(error=exc)
            raise
        handle.finish(result=result)
        return handle

    async def ainvoke(self, tool: str, args: Mapping[str, Any]) -> CallHandle:
        tx = self._tx
        if tx is not None:
            return await tx.ainvoke(tool, args)
        if not self.governor.phases and self.is_write(tool, args):
            return await self._aone_step(tool, args)
        handle = await abegin_call(self, tool, args)
        try:
            result = await run_async(handle.pending.spec.fn, args)
        except BaseException as exc:
            await handle.afinish(error=exc)
            raise
        await handle.afinish(result=result)
        return handle

    def begin_call(self, tool: str, args: Mapping[str, Any] | None = None, *, annotate: Any = None,
                   durable: bool = False, before_step: Any = None, estimate: Any = None) -> CallHandle:
        """Govern a call that runs elsewhere (a hook, a proxy, another framework): decide, reserve, trace
        and — inside a commit — log its INTENT now; ``handle.finish(result=…)`` or ``finish(error=…)``
        once it ran. Raises what ``call`` raises. With phases off, a write outside a commit is its own
        one-step transaction, committed by ``finish``.

        ``annotate`` adds fields to the decision record (a mapping, or a function of the pending call);
        ``durable`` stores a read's decision before it runs, as a write's always is; ``before_step(pc,
        idempotency_key)`` runs just before a transaction step's INTENT is logged; ``estimate`` is this
        call's cost estimate when the caller knows better than the tool's declared cost.
        """
        tx, implicit = self._transaction_for(tool, args or {})
        return begin_call(self, tool, args or {}, tx=tx, implicit=implicit, annotate=annotate, durable=durable,
                          before_step=before_step, estimate=estimate)

    async def abegin_call(self, tool: str, args: Mapping[str, Any] | None = None, *, annotate: Any = None,
                          durable: bool = False, before_step: Any = None, estimate: Any = None) -> CallHandle:
        """``begin_call`` for async code: an async approver is awaited."""
        tx, implicit = self._transaction_for(tool, args or {})
        return await abegin_call(self, tool, args or {}, tx=tx, implicit=implicit, annotate=annotate,
                                 durable=durable, before_step=before_step, estimate=estimate)

    def _transaction_for(self, tool: str, args: Mapping[str, Any]) -> tuple[Any, bool]:
        tx = self._tx
        if tx is None and not self.governor.phases and self.is_write(tool, args):
            return Transaction(self.governor, self, None, implicit=True), True
        return tx, False

    def submit(self, tool: str, args: Mapping[str, Any], *, defer_irreversible: bool = False,
               outside_transaction: bool = False) -> Submission:
        """Route a call the way an agent loop makes it (the harness and the MCP proxy share this): reads —
        and, with ``outside_transaction``, the phase tools — run outside the open transaction, so a failing
        read never rolls back writes; in commit an irreversible call is deferred to the end of the commit
        when ``defer_irreversible`` (checked now, so a refusal comes back at once, and again when it
        runs); any other write is a step of the transaction. Raises what ``call`` raises.
        """
        tx = self.open_transaction
        effect = self.effect_of(tool, args)
        if tx is not None and not outside_transaction and effect != READ:
            if effect == IRREVERSIBLE and defer_irreversible:
                tx.defer(tool, **args)
                return Submission(None, None, deferred=True)
            handle = tx.invoke(tool, args)
        elif outside_transaction or effect == READ:
            handle = begin_call(self, tool, args)
            try:
                result = run_sync(handle.pending.spec.fn, args)
            except BaseException as exc:
                handle.finish(error=exc)
                raise
            handle.finish(result=result)
        else:
            handle = self.invoke(tool, args)
        return Submission(handle.result, handle.trace)

    def is_write(self, tool: str, args: Mapping[str, Any]) -> bool:
        """Does this call change the world (its effect, refined by ``effect_fn``, is not read)?"""
        spec = self.governor.tools.get(tool)
        if spec is None:
            return False
        try:
            return spec.effect_for(spec.bind(args)) != READ
        except Exception:
            return False  # the governed path will refuse it with a trace

    def effect_of(self, tool: str, args: Mapping[str, Any]) -> str | None:
        """The effect this call would have (None for an unknown tool; the declared one if args do not fit)."""
        spec = self.governor.tools.get(tool)
        if spec is None:
            return None
        try:
            return spec.effect_for(spec.bind(args))
        except Exception:
            return spec.effect  # the governed call will refuse it, with a trace

    def _one_step(self, tool: str, args: Mapping[str, Any]) -> CallHandle:
        """With phases off, a write outside a transaction is its own one-step transaction."""
        tx = Transaction(self.governor, self, None, implicit=True)
        try:
            handle = tx.invoke(tool, args)
        except TransactionFailed as failed:
            raise failed.__cause__ or failed from None
        tx.finish(None)
        return handle

    async def _aone_step(self, tool: str, args: Mapping[str, Any]) -> CallHandle:
        tx = Transaction(self.governor, self, None, implicit=True)
        try:
            handle = await tx.ainvoke(tool, args)
        except TransactionFailed as failed:
            raise failed.__cause__ or failed from None
        await tx.afinish(None)
        return handle

    # ------------------------------------------------------------------------------- open handles

    def track_call(self, handle: CallHandle) -> None:
        """A handle begun in this process: ``close`` ends it if nobody finishes it."""
        self._open_calls[handle.call_id] = handle

    def forget_call(self, call_id: str) -> None:
        self._open_calls.pop(call_id, None)

    @property
    def open_calls(self) -> list[CallHandle]:
        """Handles begun in this process and not finished yet."""
        return list(self._open_calls.values())

    def close(self) -> None:
        """This process is done with the session: every handle never finished is settled at 0 and
        recorded ``error: "no outcome"``, and buffered records are written. The session stays resumable."""
        for handle in list(self._open_calls.values()):
            handle.abandon()
        self._open_calls.clear()
        self.governor.store.flush()

    # ------------------------------------------------------------------------------------ phases

    def _enter(self, target: str) -> None:
        with self.lock:
            if self.open_transaction is not None:
                raise self._phase_refusal(target, f"cannot enter {target} inside an open commit block")
            if self.governor.phases:
                try:
                    check_transition(self._phase, target)
                except PhaseError as exc:
                    raise self._phase_refusal(target, str(exc)) from None
            if self._phase != target:
                self._phase = target
                self.save()

    def _phase_refusal(self, target: str, reason: str, exc_type: type = PhaseError) -> Exception:
        record = {
            "kind": "phase",
            "tool": f"phase:{target}",
            "effect": None,
            "decision": "blocked",
            "reason": reason,
            "checks": [{"check": "phase", "passed": False, "detail": reason}],
            "budget": self.budget.to_dict(),
        }
        try:
            trace = self.record_event(record)
        except Exception:
            trace = Trace(record)
        return exc_type(reason, trace=trace)

    def record_event(self, fields: dict[str, Any]) -> Trace:
        """Append a non-call record (a plan, a phase refusal) to this session's chain, durably."""
        record = event_record(self.governor, self, fields)
        self.governor.store.append(self.id, record, durable=True)
        return Trace(record)

    def explore(self) -> _PhaseBlock:
        """``with s.explore():`` — reads only. Leaving the block keeps the phase."""
        return _PhaseBlock(self, EXPLORE)

    def decide(self) -> _PhaseBlock:
        """``with s.decide():`` — reads, plus ``s.propose(...)``."""
        return _PhaseBlock(self, DECIDE)

    def commit(self, plan: Plan | str | None = None) -> _CommitBlock:
        """``with s.commit(plan=plan) as tx:`` — a transaction over the writes; leaving it commits or rolls back."""
        return _CommitBlock(self, plan)

    def back_to(self, phase: str) -> None:
        """Move between phases outside a ``with`` block (the harness's and the CLI's form)."""
        if phase == COMMIT:
            raise PhaseError("enter commit with s.commit(plan=...) or s.begin_commit(plan), which open the transaction")
        self._enter(phase)

    def begin_commit(self, plan: Plan | str | None = None, *, held: bool = False) -> Any:
        """Enter commit and open its transaction (the non-``with`` form; pair it with ``end_commit``).

        ``held``: the transaction belongs to the session, not to this process (a commit opened from a
        shell for another process to carry out); it is stored at once and recovery leaves it alone.
        """
        with self.lock:
            if self.open_transaction is not None:
                raise self._phase_refusal(COMMIT, "a commit block is already open in this session")
            if self.governor.phases:
                try:
                    check_transition(self._phase, COMMIT)
                except PhaseError as exc:
                    raise self._phase_refusal(COMMIT, str(exc)) from None
            bound = self._plan(plan) if plan is not None else None
            state = self.governor.budget_state(self.id)
            if state.gate in (FORCE_DECIDE, STOP) and not (
                state.gate == FORCE_DECIDE and bound is not None and bound.approved_by
            ):
                raise self._phase_refusal(
                    COMMIT, f"budget {state.gate} gate reached ({state.pct:g}% used): no new commit", Blocked
                )
            tx = Transaction(self.governor, self, bound)
            if held:
                tx.hold()
            else:  # stored at once, so a resumed session finds the commit it is in
                tx.store_now()
            self._tx = tx
            self.plan = bound
            self._phase = COMMIT
            self.save()
        return tx

    def _leave_commit(self) -> None:
        with self.lock:
            self._tx = None
            self._phase = EXPLORE
            self.plan = None
            self.save()

    def end_commit(self, exc: BaseException | None = None, *, pause_on_pending: bool = False) -> Any:
        """Leave commit: run the deferred calls and commit, or (with ``exc``) roll back.

        Raises ``TransactionFailed`` when the transaction did not commit. With ``pause_on_pending`` a
        deferred call awaiting approval raises ``ApprovalPending`` and the session stays in commit.
        Returns the transaction.
        """
        tx = self._open_block()
        try:
            tx.finish(exc, pause_on_pending=pause_on_pending)
        except BaseException as failed:
            self._after_failed_finish(tx, failed)
            raise
        self._leave_commit()
        return tx

    async def aend_commit(self, exc: BaseException | None = None, *, pause_on_pending: bool = False) -> Any:
        tx = self._open_block()
        try:
            await tx.afinish(exc, pause_on_pending=pause_on_pending)
        except BaseException as failed:
            self._after_failed_finish(tx, failed)
            raise
        self._leave_commit()
        return tx

    def _open_block(self) -> Any:
        if self._tx is None:
            raise PhaseError("no commit block is open in this session")
        return self._tx

    def _after_failed_finish(self, tx: Any, failed: BaseException) -> None:
        """A pause for approval keeps the session in commit; any other way out leaves it."""
        if not (isinstance(failed, ApprovalPending) and tx.state == "open"):
            self._leave_commit()

    # -------------------------------------------------------------------------------------- plans

    def propose(self, steps: Any, rationale: str = "") -> Plan:
        """Record a plan in decide: ``[{"tool": ..., "args": {...}}]``, ``"*"`` matches any value."""
        if self.governor.phases and self._phase != DECIDE:
            raise self._phase_refusal(DECIDE, f"propose needs the decide phase (the session is in {self._phase})")
        plan = Plan.from_steps(steps, rationale)
        unknown = [s.tool for s in plan.steps if s.tool not in self.governor.tools]
        if unknown:
            raise ConfigError(f"plan names unknown tool(s): {', '.join(unknown)}")
        with self.lock:
            self.plans[plan.id] = plan
            self.plan = plan
            self.save()
        self.record_event(
            {
                "kind": "plan",
                "tool": "propose",
                "effect": "read",
                "plan": plan.id,
                "args": {"steps": [s.to_dict() for s in plan.steps], "rationale": rationale},
                "decision": "allowed",
                "reason": f"plan {plan.id} proposed: {len(plan.steps)} step(s), sha256 {plan.sha256[:12]}…",
                "checks": [{"check": "phase", "passed": True, "detail": f"{self._phase} allows propose"}],
                "plan_sha256": plan.sha256,
                "outcome": outcome("ok", 0.0, 0.0, None),
            },
        )
        return plan

    def approve_plan(self, plan: Plan | str, approver: str, reason: str | None = None) -> Plan:
        """Approve a whole plan: calls that match it need no further approval under REQUIRE APPROVAL."""
        found = self._plan(plan)
        if not isinstance(approver, str) or not approver:
            raise ConfigError("a plan approval must name who approves (approver='bob')")
        if same_principal(approver, self.principal) and not self.governor.allow_self_approval:
            raise ConfigError(f"{approver} cannot approve their own plan")
        with self.lock:
            found.approved_by = approver
            self.save()
        self.record_event(
            {
                "kind": "plan",
                "tool": "approve_plan",
                "effect": "read",
                "plan": found.id,
                "args": {"plan": found.id, "sha256": found.sha256},
                "decision": "approved",
                "reason": f"plan {found.id} approved by {approver}" + (f": {reason}" if reason else ""),
                "checks": [{"check": "approval", "passed": True, "approver": approver, "detail": reason or ""}],
                "outcome": outcome("ok", 0.0, 0.0, None),
            },
        )
        return found

    def _plan(self, plan: Plan | str | None) -> Plan:
        if isinstance(plan, Plan):
            found = self.plans.get(plan.id)
            if found is None:
                raise ConfigError(f"plan {plan.id} was not proposed in session {self.id}")
            return found
        if isinstance(plan, str):
            found = self.plans.get(plan)
            if found is None:
                raise ConfigError(f"no plan {plan!r} in session {self.id}")
            return found
        raise ConfigError(f"expected a Plan or a plan id, got {plan!r}")


class _PhaseBlock:
    def __init__(self, session: Session, phase: str) -> None:
        self.session = session
        self.phase = phase

    def __enter__(self) -> Session:
        self.session._enter(self.phase)
        return self.session

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> Session:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        return None


class _CommitBlock:
    """``with s.commit(plan) as tx`` / ``async with``: ``begin_commit`` on entry, ``end_commit`` on exit."""

    def __init__(self, session: Session, plan: Plan | str | None) -> None:
        self.session = session
        self.plan = plan
        self.tx: Any = None

    def __enter__(self) -> Any:
        self.tx = self.session.begin_commit(self.plan)
        return self.tx

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.session.end_commit(exc)
        return False

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        await self.session.aend_commit(exc)
        return False
