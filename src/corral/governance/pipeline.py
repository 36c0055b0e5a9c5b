"""The stages every governed call goes through, in order (DESIGN §5–§9):

1. ``prepare``  — find the tool, bind its arguments (defaults applied), run ``decision.decide`` (tool,
                  phase, plan, budget gate, rules) and consume the plan step. Pure but for the budget
                  read; nothing is written unless the call is refused.
2. ``authorize``— (``authorize.py``) when a rule requires approval: a stored grant, an approved plan,
                  the approver, or a pending request.
3. ``record``   — one store batch: the reservation (the atomic check that the call fits, its gate judged
                  in the same step), the decision (durable before a write runs) and, in a transaction,
                  the step's INTENT.
4. ``finish``   — one store batch: the settlement, the outcome and, in a transaction, DONE or FAILED.

A durable write therefore costs two commits; a read without a cost none (its trace is group-committed).
``calls.begin_call`` strings the stages together into the public seam; ``Transaction`` adds the saga.

Anything that goes wrong inside governance blocks the call and leaves a trace: ``refuse`` is the one way
a refusal is recorded, and no path degrades to allow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from corral.canonical import canonical_sha256
from corral.errors import Blocked, CallNotOpen, ConfigError, GovernanceError, GovernanceFault
from corral.governance.budget import STOP, blocking_gate, money
from corral.governance.decision import BLOCKED, CallContext, Decision, Facts, decide
from corral.governance.effects import READ, ToolSpec, to_money
from corral.governance.events import CallDecided, CallFinished, CallRefused
from corral.governance.records import call_record, describe, outcome, outcome_record, rule_inputs
from corral.governance.traces import Trace, redact
from corral.store import Append, CloseCall, Op, Reserve, Settle
from corral.struct import field, struct


@struct(slots=True)
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
    recorded: bool = False
    open_call: bool = False  # begun durably: another process may finish it by its id (``OpenCall``)
    started: float = 0.0
    outcome: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gov(self) -> Any:
        return self.session.governor

    @property
    def effect(self) -> str:
        return self.record["effect"]


# ---------------------------------------------------------------------------------------- refusals


def refuse(
    session: Any,
    record: dict[str, Any],
    reason: str,
    checks: list[dict[str, Any]] | None = None,
    *,
    exc_type: type[GovernanceError] = Blocked,
    decision: str = BLOCKED,
    dry: bool = False,
    **extra: Any,
) -> GovernanceError:
    """Record a refusal durably (unless ``dry``) and return the exception that carries its trace."""
    gov = session.governor
    record["decision"] = decision
    record["reason"] = reason
    if checks is not None:
        record["checks"] = checks
    if record.get("budget") is None:
        try:
            record["budget"] = gov.budget_state(session.id).view().to_dict()
        except Exception:
            record["budget"] = None
    trace = Trace(record)
    if not dry:
        session.last_trace = trace
        try:
            gov.store.append(session.id, record, durable=True)
        except Exception as exc:  # the refusal stands; its trace waits in memory for the store to answer
            record["reason"] = f"{reason} (the trace could not be stored at once: {exc})"
            try:
                gov.store.append(session.id, record, durable=False)
            except Exception:
                record["reason"] = f"{reason} (and the trace could not be stored: {exc})"
        if gov.listeners:
            gov.emit(CallRefused(trace))
    return exc_type(reason, trace=trace, **extra)


def fault(session: Any, record: dict[str, Any], reason: str, checks: list[dict[str, Any]] | None = None,
          *, dry: bool = False) -> GovernanceError:
    """A refusal caused by a fault inside governance (§9): ``GovernanceFault``, with a failed
    ``governance`` check naming the fault unless ``checks`` already say which check failed."""
    if checks is None:
        checks = [c for c in record.get("checks") or () if c.get("check") != "governance"]
        checks.append({"check": "governance", "passed": False, "detail": reason})
    return refuse(session, record, reason, checks, exc_type=GovernanceFault, dry=dry)


def refusal_record(session: Any, tool: str, effect: str | None, args: dict[str, Any]) -> dict[str, Any]:
    """A decision record for a call an enforcement point refuses before the kernel decides (``refuse``)."""
    gov = session.governor
    record = call_record(gov, session, tool, gov.now(), session.open_transaction)
    record.update({"effect": effect, "args": redact(args, gov.redact_names), "args_sha256": canonical_sha256(args)})
    return record


# ----------------------------------------------------------------------------------------- prepare


def prepare(session: Any, name: str, given: dict[str, Any], tx: Any, *, dry: bool = False,
            estimate: Any = None, hold_for: float | None = None) -> PendingCall:
    """Decide and consume the plan step. Raises ``Blocked`` (traced, unless ``dry``) on refusal.

    The budget is not reserved here: the decision has checked that the estimate fits, and ``record``
    (or ``authorize``, before asking for approval) reserves it atomically, refusing the call if it no
    longer fits. ``estimate`` overrides the tool's own cost estimate for this one call; ``hold_for`` is how
    long its reservation lasts (seconds; default the governor's ``reservation_ttl``).
    """
    gov = session.governor
    try:
        now = gov.now()
        clock_fault = None
    except Exception as exc:
        now, clock_fault = datetime.now(UTC), exc
    record = call_record(gov, session, name, now, tx)
    spec = gov.tools.get(name) if isinstance(name, str) else None
    if clock_fault is not None:
        raise fault(session, record, f"governance fault: the clock failed: {clock_fault!r}", dry=dry)
    if spec is None:
        record["args"] = redact(given, gov.redact_names)
        known = ", ".join(sorted(gov.tools)) or "none"
        check = {"check": "tool", "passed": False, "detail": f"{name!r} is not a registered tool"}
        raise refuse(session, record, f"unknown tool {name!r} (registered: {known})", [check], dry=dry)
    try:
        if not spec.checked:
            spec.check()
    except ConfigError as exc:
        check = {"check": "tool", "passed": False, "detail": str(exc)}
        raise refuse(session, record, str(exc), [check], exc_type=ConfigError, dry=dry) from None
    try:
        args = spec.bind(given)
    except TypeError as exc:
        record["args"] = redact(given, gov.redact_names)
        check = {"check": "tool", "passed": False, "detail": f"arguments do not fit {name}: {exc}"}
        raise refuse(session, record, f"arguments do not fit {name}: {exc}", [check], dry=dry) from None
    record["args"] = redact(args, gov.redact_names)
    try:
        record["args_sha256"] = canonical_sha256(args)
        effect = spec.effect_for(args)
        record["effect"] = effect
        estimate = spec.estimate(args) if estimate is None else to_money(estimate, f"{name}: estimate")
    except Exception as exc:
        check = {"check": "tool", "passed": False, "detail": f"governance fault: {exc!r}"}
        raise fault(session, record, f"governance fault in {name}: {exc}", [check], dry=dry) from None

    with session.lock:
        phase = session.phase
        record["phase"] = phase
        plan = session.plan if tx is not None else None
        try:
            budget = gov.budget_state(session.id)
            ctx = _context(session, spec, args, effect, estimate, budget, plan, tx, now)
            decision = decide(ctx, gov.policy)
        except Exception as exc:
            check = {"check": "governance", "passed": False, "detail": f"fault: {exc!r}"}
            raise fault(
                session, record, f"governance fault while deciding on {name}: {exc!r}", [check], dry=dry
            ) from None
        record["checks"] = decision.checks
        if decision.flags:
            record["flags"] = decision.flags
        record["labels"] = sorted(ctx.facts.labels)
        if decision.shadow is not None:
            record["shadow"] = decision.shadow
        if not dry:
            record["inputs"] = rule_inputs(ctx.facts, session.log_delta())
        if decision.decision == BLOCKED:
            record["budget"] = budget.view().to_dict()
            raise refuse(session, record, decision.reason, dry=dry)
        pc = PendingCall(session, spec, name, given, args, decision, record, estimate, tx=tx)
        if dry:
            return pc
        if decision.plan_step is not None and plan is not None:
            pc.plan_step = plan.consume(name, args, spec.bind)
        scopes = gov.scope_limits(session.id)
        if scopes and (estimate > 0 or spec.cost_fn is not None):
            # The gate this call must not have reached is judged again inside the atomic reservation,
            # so processes racing one budget cannot all pass a gate that one snapshot showed open.
            gate = blocking_gate(gov.gates, effect)
            expires = now + timedelta(seconds=gov.reservation_ttl if hold_for is None else hold_for)
            pc.reserve = Reserve([(k, lim) for _, k, lim in scopes], estimate, expires,
                                 gate[1] if gate is not None else None, record["id"])
        # The trace says what holds once it is stored: it is stored together with the reservation.
        after = budget.after_reserving(estimate, gov.gates) if pc.reserve else budget
        record["budget"] = after.view().to_dict()
        if budget.tightest is not None:
            t = budget.tightest
            set_budget_check(
                record,
                True,
                f"reserved {money(estimate if pc.reserve else Decimal(0))}; "
                f"{money(t.spent + t.reserved)} + {money(estimate)} of {money(t.limit)} ({after.pct:g}%)",
            )
        return pc


def _context(session: Any, spec: ToolSpec, args: dict[str, Any], effect: str, estimate: Decimal, budget: Any,
             plan: Any, tx: Any, now: datetime) -> CallContext:
    """Everything ``decide`` reads about this call and its session, built once."""
    gov = session.governor
    phase = session.phase
    facts = Facts(spec.name, effect, phase, args, estimate, budget, session.principal, session.roles, gov.agent,
                  now, session.call_log, session.labels, spec.tags)
    return CallContext(tool=spec.name, effect=effect, args=args, phase=phase, phases_enabled=gov.phases,
                       in_transaction=tx is not None, plan=plan, cost=estimate, budget=budget, facts=facts,
                       bind=spec.bind)


def dry_decide(session: Any, name: str, given: dict[str, Any], tx: Any) -> Decision:
    """The decision alone (``gov.check``): the same checks as ``prepare``, with no record built, nothing
    consumed, reserved, traced or asked. A refusal is a ``blocked`` decision, never an exception — except
    a tool whose registration is incomplete (``ConfigError``), as for a real call."""
    gov = session.governor
    spec = gov.tools.get(name) if isinstance(name, str) else None
    if spec is None:
        known = ", ".join(sorted(gov.tools)) or "none"
        return Decision(BLOCKED, f"unknown tool {name!r} (registered: {known})",
                        [{"check": "tool", "passed": False, "detail": f"{name!r} is not a registered tool"}])
    if not spec.checked:
        spec.check()
    try:
        args = spec.bind(given)
    except TypeError as exc:
        reason = f"arguments do not fit {name}: {exc}"
        return Decision(BLOCKED, reason, [{"check": "tool", "passed": False, "detail": reason}])
    try:
        now = gov.now()
        effect = spec.effect_for(args)
        estimate = spec.estimate(args)
        with session.lock:
            plan = session.plan if tx is not None else None
            budget = gov.budget_state(session.id)
            return decide(_context(session, spec, args, effect, estimate, budget, plan, tx, now), gov.policy)
    except Exception as exc:
        reason = f"governance fault while deciding on {name}: {exc!r}"
        return Decision(BLOCKED, reason, [{"check": "governance", "passed": False, "detail": reason}])


# ------------------------------------------------------------------------------------ reservations


def reserve(pc: PendingCall) -> None:
    """Take the call's reservation now, on its own (before an approver is asked)."""
    if pc.reserve is None:
        return
    op = pc.reserve
    try:
        results = pc.gov.store.batch([op])
    except Exception as exc:
        unconsume(pc)
        raise fault(pc.session, pc.record, f"governance fault: the budget ledger failed: {exc!r}") from None
    if results is None:
        does_not_fit(pc)
    pc.reserve, pc.reservation = None, results[0]


def does_not_fit(pc: PendingCall) -> None:
    """The atomic reservation found no room, or a gate reached (another call got there first): refuse,
    as the decision would have."""
    unconsume(pc)
    gov = pc.gov
    pc.record["budget"] = None  # the refusal shows the budget as it is now, not as it would have been
    try:
        state = gov.budget_state(pc.session.id)
    except Exception:
        state = None
    gate = state.gate if state is not None else None
    blocking = blocking_gate(gov.gates, pc.effect)
    least = state.least_left if state is not None else None
    fits = least is None or least.remaining >= pc.estimate
    if fits and state is not None and gate is not None and blocking is not None and state.fraction >= blocking[1]:
        detail = f"{gate} gate reached: {state.pct:g}% used"
        reason = (f"budget {gate} gate reached ({state.pct:g}% used)" if gate == STOP
                  else f"budget force_decide gate reached ({state.pct:g}% used): no writes; go back to decide "
                       "and re-plan")
    else:
        detail = f"does not fit: {money(pc.estimate)} would pass a limit"
        reason = f"{pc.name} would cost ~{money(pc.estimate)}, more than the budget has left"
    set_budget_check(pc.record, False, detail, gate)
    raise refuse(pc.session, pc.record, reason)


def unconsume(pc: PendingCall) -> None:
    """Give the plan step back: the call was refused or paused before it ran."""
    plan = pc.session.plan
    if pc.plan_step is not None and plan is not None:
        plan.release_step(pc.plan_step)
        pc.plan_step = None


def release(pc: PendingCall) -> None:
    """Give back the plan step and the reservation of a call that will not run."""
    unconsume(pc)
    if pc.reservation is not None:
        try:
            pc.gov.store.release(pc.reservation)
        finally:
            pc.reservation = None


# ------------------------------------------------------------------------------------------ record


def record(pc: PendingCall, ops: Sequence[Op] = (), *, durable: bool = False) -> None:
    """Everything before the call runs, as one store batch: the reservation, the decision and ``ops``
    (a transaction's INTENT). A write's decision is durable before it runs; an allowed read's waits for
    its outcome (group-committed) unless ``durable``. If the reservation does not fit, nothing is written
    and the call is refused; if the batch cannot be written, the call is refused as a governance fault.
    """
    gov = pc.gov
    rec = pc.record
    if rec["decision"] is None:
        rec["decision"] = pc.decision.decision
        rec["reason"] = pc.decision.reason
    elif rec["decision"] == "approved":
        rec["reason"] = pc.decision.reason
    durable = durable or pc.effect != READ or rec["decision"] != "allowed"
    batch: list[Op] = []
    if pc.reserve is not None:
        batch.append(pc.reserve)
    if durable:
        batch.append(Append(pc.session.id, rec))
    batch.extend(ops)
    if batch:
        try:
            results = gov.store.batch(batch)
        except Exception as exc:
            release(pc)
            rec["decision"] = None
            what = "the decision could not be stored" if durable or ops else "the budget ledger failed"
            raise fault(pc.session, rec, f"governance fault: {what}: {exc!r}") from None
        if results is None:
            does_not_fit(pc)
        if pc.reserve is not None:
            pc.reserve, pc.reservation = None, results[0]
    else:
        try:
            writable = gov.store.writable()
        except Exception as exc:
            writable, why = False, repr(exc)
        else:
            why = "its earlier writes failed and it does not answer yet"
        if not writable:  # §9: a store that cannot be written blocks reads too, until it answers again
            release(pc)
            rec["decision"] = None
            raise fault(pc.session, rec, f"governance fault: the store cannot be written ({why})")
    pc.recorded = durable
    if pc.plan_step is not None:  # the used step is part of the session: another process must see it
        pc.session.save()
    pc.started = time.perf_counter()
    if gov.listeners:
        gov.emit(CallDecided(Trace(rec)))


# ------------------------------------------------------------------------------------------ finish


def finish(
    pc: PendingCall,
    *,
    result: Any = None,
    error: BaseException | str | None = None,
    cost: Any = None,
    ops: Sequence[Op] = (),
) -> dict[str, Any]:
    """Everything after the call ran, as one store batch: the settlement at the real cost (0 when the
    call failed), the outcome of a recorded decision and ``ops`` (a transaction's DONE or FAILED).
    An unrecorded read's trace, decision and outcome in one record, is group-committed after it."""
    gov = pc.gov
    duration = round((time.perf_counter() - pc.started) * 1000, 3) if pc.started else None
    spent = Decimal(0)
    note = None
    if error is None:
        spent = pc.estimate
        if cost is not None:
            spent = to_money(cost, f"tool {pc.name!r}: cost")
        elif pc.spec.cost_fn is not None:
            try:
                spent = to_money(pc.spec.cost_fn(result), f"tool {pc.name!r}: cost_fn")
            except Exception as exc:
                note = f"cost_fn failed ({exc!r}); settled at the estimate"
    text = None if error is None else (error if isinstance(error, str) else describe(error))
    out = outcome("ok" if error is None else "error", float(spent), duration, text, note)
    now = gov.now()
    if error is None:
        pc.session.note_executed(pc.name, now)
        if pc.spec.labels:  # what the result brings into the session (§15): in its outcome, and kept
            out["labels"] = sorted(pc.spec.labels)
            pc.session.add_labels(pc.spec.labels)
    pc.outcome = out
    batch: list[Op] = []
    if pc.reservation is not None:
        batch.append(Settle(pc.reservation, spent))
    batch.extend(ops)
    if pc.recorded:  # the decision is sealed in the chain: its outcome is a record of its own
        batch.append(Append(pc.session.id, outcome_record(pc.session.id, pc.record["id"], out, now)))
    if pc.open_call:
        batch.append(CloseCall(pc.record["id"]))
    if batch:
        if gov.store.batch(batch) is None:
            raise CallNotOpen(f"call {pc.record['id']} ({pc.name}) was finished already, elsewhere")
        pc.reservation = None
    if not pc.recorded:  # the record carries its outcome: the trace is the record itself
        pc.record["outcome"] = out
        gov.store.append(pc.session.id, pc.record, durable=False)
        trace = Trace(pc.record)
    else:
        trace = Trace({**pc.record, "outcome": out})
    pc.session.last_trace = trace
    if gov.listeners:
        gov.emit(CallFinished(trace))
    return out


def set_budget_check(record: dict[str, Any], passed: bool, detail: str, gate: str | None = None) -> None:
    for check in record["checks"]:
        if check.get("check") == "budget":
            check["passed"] = passed
            check["detail"] = detail
            if gate is not None:
                check["gate"] = gate
            return
    record["checks"].append({"check": "budget", "passed": passed, "detail": detail, "gate": gate})


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
