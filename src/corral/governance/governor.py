"""The Governor: the tool registry, the policy, the store, and the pipeline every call goes through.

A call is governed in four steps, each in one method below:

1. ``_prepare``   — find the tool, bind its arguments, run ``decision.decide`` (tool, phase, plan,
                    budget gate and whether the estimate fits, rules) and consume the plan step.
2. ``_authorize`` — when a rule requires approval: reserve the budget first (no one approves a call that
                    cannot be paid for), then a stored grant, an approved plan, the approver, or a
                    pending request.
3. ``_record``    — one store batch: the reservation (the atomic check that the call fits), the decision
                    trace (durable before a write runs) and, in a transaction, the step's INTENT.
4. ``_finish``    — one store batch: the settlement, the outcome and, in a transaction, DONE or FAILED.

A durable write therefore costs two commits; a read without a cost none (its trace is group-committed).

Anything that goes wrong inside governance blocks the call and leaves a trace: no path degrades to allow.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from corral.canonical import canonical_sha256
from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    ConfigError,
    GovernanceError,
    StoreError,
)
from corral.governance import approvals as ap
from corral.governance.budget import BudgetState, ScopeUsage, money, parse_budget, parse_gates
from corral.governance.calls import Call, PendingCall
from corral.governance.decision import (
    APPROVAL_REQUIRED,
    BLOCKED,
    CallContext,
    Decision,
    Facts,
    decide,
)
from corral.governance.effects import READ, ToolSpec
from corral.governance.rules import Policy
from corral.governance.traces import Trace, iso, redact
from corral.ids import new_id
from corral.store import Append, Op, Reserve, Settle, Store, open_store


def _load_rules(rules: Any) -> list[tuple[str, str]]:
    """Rule text, a ``Path`` to a ``*.rules`` file, or a list of either → ``[(text, source)]``."""
    if rules is None:
        return []
    if isinstance(rules, Path):
        try:
            return [(rules.read_text(encoding="utf-8"), _display_path(rules))]
        except OSError as exc:
            raise ConfigError(f"rules file {rules}: {exc.strerror or exc}") from None
    if isinstance(rules, str):
        return [(rules, "<rules>")]
    if isinstance(rules, Iterable):
        out: list[tuple[str, str]] = []
        for item in rules:
            out.extend(_load_rules(item))
        return out
    raise ConfigError(f"rules must be rule text, a pathlib.Path or a list of them, got {type(rules).__name__}")


def _display_path(path: Path) -> str:
    """A rule's source as a person finds it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class GovernedTool:
    """A decorated tool: calling it goes through governance in the governor's default session."""

    def __init__(self, governor: Governor, spec: ToolSpec) -> None:
        self._governor = governor
        self.spec = spec
        self.fn = spec.fn
        self.name = spec.name
        self.__name__ = spec.name
        self.__doc__ = spec.fn.__doc__
        self.__wrapped__ = spec.fn

    def compensate(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate the function that undoes this tool; it receives the ``Call`` it undoes."""
        if not callable(fn):
            raise ConfigError(f"tool {self.name!r}: a compensation must be callable")
        self.spec.set_compensation(fn)
        return fn

    def _given(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args:
            return kwargs
        sig = self.spec.signature
        if sig is None:
            raise TypeError(f"{self.name} takes keyword arguments only")
        bound = sig.bind_partial(*args, **kwargs)
        return dict(bound.arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        session = self._governor.default_session
        if self.spec.is_async:
            return session.acall(self.name, **self._given(args, kwargs))
        return session.call(self.name, **self._given(args, kwargs))

    def __repr__(self) -> str:
        return f"<governed tool {self.name} ({self.spec.effect})>"


class Governor:
    """Governs tool calls for one agent: ``gov.session()`` starts a session, ``s.call`` makes a call."""

    def __init__(
        self,
        agent: str = "agent",
        budget: Any = None,
        rules: Any = None,
        store: Any = None,
        approver: Callable[..., Any] | None = None,
        gates: Mapping[str, Any] | None = None,
        phases: bool = True,
        clock: Callable[[], datetime] | None = None,
        *,
        tenant: str | None = None,
        redact: Iterable[str] = (),
        approval_ttl: float = 900.0,
        approver_timeout: float = 30.0,
        allow_self_approval: bool = False,
        reservation_ttl: float = 600.0,
        compensation_tries: int = 3,
        retry_backoff: float = 0.002,
        step_tries: int = 3,
    ) -> None:
        if not isinstance(agent, str) or not agent.strip():
            raise ConfigError(f"agent must be a non-empty name, got {agent!r}")
        if approver is not None and not callable(approver):
            raise ConfigError(f"approver must be callable, got {approver!r}")
        if clock is not None and not callable(clock):
            raise ConfigError(f"clock must be callable, got {clock!r}")
        if not isinstance(phases, bool):
            raise ConfigError(f"phases must be True or False, got {phases!r}")
        for name, value in (
            ("approval_ttl", approval_ttl),
            ("approver_timeout", approver_timeout),
            ("reservation_ttl", reservation_ttl),
            ("retry_backoff", retry_backoff),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds ≥ 0, got {value!r}")
        for name, value in (("compensation_tries", compensation_tries), ("step_tries", step_tries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if isinstance(redact, str):
            redact = [redact]
        self.agent = agent
        self.tenant = tenant
        self.limits = parse_budget(budget)
        if "tenant" in self.limits and tenant is None:
            self.tenant = "default"
        self.gates = parse_gates(gates)
        self.phases = phases
        self.approver = approver
        self.approval_ttl = float(approval_ttl)
        self.approver_timeout = float(approver_timeout)
        self.allow_self_approval = allow_self_approval
        self.reservation_ttl = float(reservation_ttl)
        self.compensation_tries = compensation_tries
        self.step_tries = step_tries
        self.retry_backoff = float(retry_backoff)
        self.redact_names = frozenset(redact)
        self._clock = clock
        self._sources = _load_rules(rules)
        self._policy = Policy.from_sources(self._sources)
        self.store: Store = open_store(store)
        self._tools: dict[str, ToolSpec] = {}
        self._lock = threading.RLock()
        self._default_session: Any = None

    # ----------------------------------------------------------------------------------- configuration

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def policy_sha256(self) -> str:
        return self._policy.sha256

    def rules(self, rules: Any) -> Governor:
        """Add rules (text, a Path, or a list). They are parsed and compiled now; errors surface here."""
        sources = _load_rules(rules)
        with self._lock:
            self._policy = self._policy.extend(sources)
            self._sources.extend(sources)
        return self

    def tool(self, name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], GovernedTool]:
        """Decorator: ``@gov.tool(effect="read")``. Checked at first use, so ``@t.compensate`` may follow."""
        if callable(name):
            raise ConfigError("use @gov.tool(...) with parentheses, e.g. @gov.tool(effect='read')")

        def register(fn: Callable[..., Any]) -> GovernedTool:
            spec = ToolSpec.build(name or getattr(fn, "__name__", None), fn, options)
            self._add(spec)
            return GovernedTool(self, spec)

        return register

    def register(self, name: str, fn: Callable[..., Any], **options: Any) -> GovernedTool:
        """Register a tool and check it at once; a bad registration raises ``ConfigError`` and changes nothing."""
        spec = ToolSpec.build(name, fn, options)
        spec.check()
        self._add(spec)
        return GovernedTool(self, spec)

    def _add(self, spec: ToolSpec) -> None:
        with self._lock:
            if spec.name in self._tools:
                raise ConfigError(f"tool {spec.name!r} is already registered")
            self._tools[spec.name] = spec

    @property
    def tools(self) -> dict[str, ToolSpec]:
        return dict(self._tools)

    # ----------------------------------------------------------------------------------------- sessions

    def session(
        self,
        principal: str | None = None,
        roles: Iterable[str] = (),
        *,
        id: str | None = None,
        create: bool = False,
    ) -> Any:
        """A new session for ``principal``; ``gov.session(id=...)`` resumes one from the store.

        With ``create=True`` a missing ``id`` starts a new session under that id (for callers that bring
        their own ids, like Claude Code's ``session_id``).
        """
        from corral.governance.session import Session

        if id is not None:
            if create and self.store.get_session(id) is None:
                return Session.start(self, principal, roles, session_id=id)
            return Session.resume(self, id)
        return Session.start(self, principal, roles)

    @property
    def default_session(self) -> Any:
        """The session in which directly called decorated tools are governed."""
        with self._lock:
            if self._default_session is None:
                self._default_session = self.session(principal=None)
            return self._default_session

    # ------------------------------------------------------------------------------------------- time

    def now(self) -> datetime:
        """The governor's only time source. A clock that fails or returns a naive time is a fault."""
        if self._clock is None:
            return datetime.now(UTC)
        value = self._clock()
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise TypeError(f"the clock must return an aware datetime, got {value!r}")
        return value

    # ----------------------------------------------------------------------------------------- budget

    def scope_limits(self, session_id: str) -> list[tuple[str, str, Decimal]]:
        """``[(kind, key, limit)]`` for every budget scope a call in this session must fit in."""
        out = []
        for kind, limit in self.limits.items():
            key = {"session": session_id, "agent": self.agent, "tenant": self.tenant}[kind]
            out.append((kind, f"{kind}:{key}", limit))
        return out

    def budget_state(self, session_id: str) -> BudgetState:
        scopes = self.scope_limits(session_id)
        if not scopes:
            return BudgetState.of((), self.gates)
        usage = self.store.usage([key for _, key, _ in scopes])
        return BudgetState.of(
            [ScopeUsage(kind, key, limit, s, r) for (kind, key, limit), (s, r) in zip(scopes, usage, strict=True)],
            self.gates,
        )

    # --------------------------------------------------------------------------------- the dry run

    def check(self, tool: str, args: Mapping[str, Any] | None = None, *, session: Any = None) -> Decision:
        """What would happen if ``tool`` were called now: nothing runs, is spent, traced or asked."""
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise ConfigError(f"check: args must be a mapping, got {type(args).__name__}")
        session = session if session is not None else self.default_session
        tx = session.open_transaction
        try:
            pc = self._prepare(session, tool, dict(args), tx, dry=True)
        except Blocked as exc:
            trace = exc.trace
            return Decision(BLOCKED, str(exc), list(trace.checks) if trace else [])
        return pc.decision

    # ---------------------------------------------------------------------------------- the pipeline

    def _base_record(self, session: Any, name: str, now: datetime, tx: Any) -> dict[str, Any]:
        plan = session.plan if tx is not None else None
        return {
            "id": new_id(),
            "kind": "call",
            "ts": iso(now),
            "session": session.id,
            "agent": self.agent,
            "principal": session.principal,
            "tool": name,
            "effect": None,
            "phase": session.phase,
            "tx": tx.id if tx is not None else None,
            "plan": plan.id if plan is not None else None,
            "args": {},
            "args_sha256": None,
            "decision": None,
            "reason": None,
            "checks": [],
            "policy_sha256": self._policy.sha256,
            "budget": None,
        }

    def _refuse(
        self,
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
        """Record a refusal durably (unless dry) and return the exception that carries its trace."""
        record["decision"] = decision
        record["reason"] = reason
        if checks is not None:
            record["checks"] = checks
        if record.get("budget") is None:
            try:
                record["budget"] = self.budget_state(session.id).view().to_dict()
            except Exception:
                record["budget"] = None
        trace = Trace(record)
        if not dry:
            session.last_trace = trace
            try:
                self.store.append(session.id, record, durable=True)
            except Exception as exc:  # the refusal stands; say the trace could not be stored
                record["reason"] = f"{reason} (and the trace could not be stored: {exc})"
        return exc_type(reason, trace=trace, **extra)

    def _prepare(
        self, session: Any, name: str, given: dict[str, Any], tx: Any, *, dry: bool = False
    ) -> PendingCall:
        """Decide and consume the plan step. Raises ``Blocked`` (traced) on refusal.

        The budget is not reserved here: the decision has checked that the estimate fits, and ``_record``
        (or ``_authorize``, before asking for approval) reserves it atomically, refusing the call if it no
        longer fits.
        """
        try:
            now = self.now()
            clock_fault = None
        except Exception as exc:
            now, clock_fault = datetime.now(UTC), exc
        record = self._base_record(session, name, now, tx)
        spec = self._tools.get(name) if isinstance(name, str) else None
        if clock_fault is not None:
            raise self._refuse(session, record, f"governance fault: the clock failed: {clock_fault!r}", dry=dry)
        if spec is None:
            record["args"] = redact(given, self.redact_names)
            known = ", ".join(sorted(self._tools)) or "none"
            check = {"check": "tool", "passed": False, "detail": f"{name!r} is not a registered tool"}
            raise self._refuse(
                session, record, f"unknown tool {name!r} (registered: {known})", [check], dry=dry
            )
        try:
            if not spec.checked:
                spec.check()
        except ConfigError as exc:
            check = {"check": "tool", "passed": False, "detail": str(exc)}
            raise self._refuse(session, record, str(exc), [check], exc_type=ConfigError, dry=dry) from None
        try:
            args = spec.bind(given)
        except TypeError as exc:
            record["args"] = redact(given, self.redact_names)
            check = {"check": "tool", "passed": False, "detail": f"arguments do not fit {name}: {exc}"}
            raise self._refuse(session, record, f"arguments do not fit {name}: {exc}", [check], dry=dry) from None
        record["args"] = redact(args, self.redact_names)
        try:
            record["args_sha256"] = canonical_sha256(args)
            effect = spec.effect_for(args)
            record["effect"] = effect
            estimate = spec.estimate(args)
        except Exception as exc:
            check = {"check": "tool", "passed": False, "detail": f"governance fault: {exc!r}"}
            raise self._refuse(session, record, f"governance fault in {name}: {exc}", [check], dry=dry) from None

        with session.lock:
            record["phase"] = session.phase
            plan = session.plan if tx is not None else None
            try:
                budget = self.budget_state(session.id)
                plan_args = _plan_view(spec, given)
                ctx = CallContext(
                    tool=name,
                    effect=effect,
                    args=args,
                    plan_args=plan_args,
                    phase=session.phase,
                    phases_enabled=self.phases,
                    in_transaction=tx is not None,
                    plan=plan,
                    cost=estimate,
                    budget=budget,
                    facts=Facts(
                        name, effect, session.phase, args, estimate, budget, session.principal,
                        session.roles, self.agent, now, session.call_log,
                    ),
                )
                decision = decide(ctx, self._policy)
            except Exception as exc:
                check = {"check": "governance", "passed": False, "detail": f"fault: {exc!r}"}
                raise self._refuse(
                    session, record, f"governance fault while deciding on {name}: {exc!r}", [check], dry=dry
                ) from None
            record["checks"] = decision.checks
            if decision.flags:
                record["flags"] = decision.flags
            if decision.decision == BLOCKED:
                record["budget"] = budget.view().to_dict()
                raise self._refuse(session, record, decision.reason, dry=dry)
            pc = PendingCall(session, spec, name, given, args, decision, record, estimate, tx=tx)
            if dry:
                return pc
            if decision.plan_step is not None and plan is not None:
                pc.plan_step = plan.consume(name, plan_args)
            scopes = self.scope_limits(session.id)
            if scopes and (estimate > 0 or spec.cost_fn is not None):
                expires = now + timedelta(seconds=self.reservation_ttl)
                pc.reserve = Reserve([(k, lim) for _, k, lim in scopes], estimate, expires)
            # The trace says what holds once it is stored: it is stored together with the reservation.
            after = budget.after_reserving(estimate, self.gates) if pc.reserve else budget
            record["budget"] = after.view().to_dict()
            if budget.tightest is not None:
                t = budget.tightest
                _set_budget_check(
                    record,
                    True,
                    f"reserved {money(estimate if pc.reserve else Decimal(0))}; "
                    f"{money(t.spent + t.reserved)} + {money(estimate)} of {money(t.limit)} ({after.pct:g}%)",
                )
            return pc

    def _reserve(self, pc: PendingCall) -> None:
        """Take the call's reservation now, on its own (before an approver is asked)."""
        if pc.reserve is None:
            return
        try:
            rid = self.store.reserve(pc.reserve.scopes, pc.reserve.amount, pc.reserve.expires_at)
        except Exception as exc:
            self._unconsume(pc)
            raise self._refuse(pc.session, pc.record, f"governance fault: the budget ledger failed: {exc!r}") from None
        if rid is None:
            self._does_not_fit(pc)
        pc.reserve, pc.reservation = None, rid

    def _does_not_fit(self, pc: PendingCall) -> None:
        """The atomic reservation found no room (another call got there first): refuse, as the decision would have."""
        self._unconsume(pc)
        pc.record["budget"] = None  # the refusal shows the budget as it is now, not as it would have been
        _set_budget_check(pc.record, False, f"does not fit: {money(pc.estimate)} would pass a limit")
        raise self._refuse(
            pc.session, pc.record, f"{pc.name} would cost ~{money(pc.estimate)}, more than the budget has left"
        )

    def _unconsume(self, pc: PendingCall) -> None:
        plan = pc.session.plan
        if pc.plan_step is not None and plan is not None:
            plan.release_step(pc.plan_step)
            pc.plan_step = None

    def _release(self, pc: PendingCall) -> None:
        self._unconsume(pc)
        if pc.reservation is not None:
            try:
                self.store.release(pc.reservation)
            finally:
                pc.reservation = None

    # ---------------------------------------------------------------------------------- approvals

    def _approval_step(self, pc: PendingCall) -> ap.ApprovalRequest | None:
        """Resolve the approval without asking anyone, if it can be; else the request to ask about.

        Returns None when the call is now approved. Raises (traced) when it is pending or denied.
        """
        session = pc.session
        plan = session.plan if pc.tx is not None else None
        if pc.plan_step is not None and plan is not None and plan.approved_by:
            self._approved(pc, None, plan.approved_by, f"covered by approved plan {plan.id}")
            return None
        now = self.now()
        binding = ap.binding_hash(session.id, pc.name, pc.args, session.phase, self._policy.sha256)
        for found in sorted(self.store.find_approvals(binding=binding), key=lambda a: a["created"]):
            status = found["status"]
            expired = _parse_ts(found["expires"]) <= now
            if status in (ap.PENDING, ap.APPROVED) and expired:
                self.store.resolve_approval(found["id"], status, {"status": ap.EXPIRED})
                self._denied(pc, found["id"], None, f"approval {found['id']} expired")
            if status == ap.APPROVED:
                if self.store.resolve_approval(found["id"], ap.APPROVED, {"status": ap.USED}):
                    self._approved(pc, found["id"], found.get("approver"), found.get("decision_reason"))
                    return None
            elif status in (ap.DENIED, ap.EXPIRED):
                if self.store.resolve_approval(found["id"], status, {"status": ap.USED}):
                    why = found.get("decision_reason") or ("expired" if status == ap.EXPIRED else "denied")
                    self._denied(pc, found["id"], found.get("approver"), f"approval {found['id']} {why}")
            elif status == ap.PENDING and self.approver is None:
                self._pending(pc, ap.ApprovalRequest.from_dict(found))
        request = ap.ApprovalRequest(
            id=new_id(),
            binding=binding,
            session=session.id,
            agent=self.agent,
            principal=session.principal,
            tool=pc.name,
            args=redact(pc.args, self.redact_names),
            phase=session.phase,
            reason=pc.decision.approval_reason or pc.decision.reason,
            created=iso(now),
            expires=iso(now + timedelta(seconds=self.approval_ttl)),
            plan=plan.id if plan is not None else None,
        )
        self.store.put_approval(request.to_dict())
        if self.approver is None:
            self._pending(pc, request)
        return request

    def _apply_answer(self, pc: PendingCall, request: ap.ApprovalRequest, answer: ap.Approval) -> None:
        if (
            answer.approved
            and not self.allow_self_approval
            and answer.approver is not None
            and answer.approver == pc.session.principal
        ):
            self.store.resolve_approval(
                request.id, ap.PENDING, {"status": ap.USED, "decision_reason": "self-approval refused"}
            )
            self._denied(pc, request.id, answer.approver, f"{answer.approver} cannot approve their own request")
        fields = {  # the asking call consumes the answer either way: the next call asks again
            "approver": answer.approver,
            "decided": iso(self.now()),
            "decision_reason": answer.reason,
            "status": ap.USED,
            "approved": answer.approved,
        }
        self.store.resolve_approval(request.id, ap.PENDING, fields)
        if answer.approved:
            self._approved(pc, request.id, answer.approver, answer.reason)
        else:
            self._denied(pc, request.id, answer.approver, answer.reason or f"denied by {answer.approver}")

    def _approval_fault(self, pc: PendingCall, request: ap.ApprovalRequest, exc: BaseException) -> None:
        with _suppress():
            self.store.resolve_approval(
                request.id, ap.PENDING, {"status": ap.USED, "decision_reason": f"approver failed: {exc!r}"}
            )
        self._release(pc)
        pc.record["checks"].append(
            {"check": "approval", "passed": False, "approval": request.id, "detail": f"approver failed: {exc!r}"}
        )
        raise self._refuse(pc.session, pc.record, f"governance fault: the approver failed: {exc!r}")

    def _approved(self, pc: PendingCall, approval_id: str | None, approver: str | None, why: str | None) -> None:
        ts = self.now().astimezone(UTC).strftime("%H:%M")
        detail = f"approved {ts}" + (f" by {approver}" if approver else "") + (f": {why}" if why else "")
        pc.record["checks"].append(
            {"check": "approval", "passed": True, "approval": approval_id, "approver": approver, "detail": detail}
        )
        pc.record["approval"] = approval_id
        pc.record["decision"] = "approved"

    def _denied(self, pc: PendingCall, approval_id: str | None, approver: str | None, why: str) -> None:
        self._release(pc)
        pc.record["checks"].append(
            {"check": "approval", "passed": False, "approval": approval_id, "approver": approver, "detail": why}
        )
        pc.record["approval"] = approval_id
        raise self._refuse(pc.session, pc.record, why, exc_type=ApprovalDenied, decision="denied")

    def _pending(self, pc: PendingCall, request: ap.ApprovalRequest) -> None:
        self._release(pc)
        pc.record["checks"].append(
            {
                "check": "approval",
                "passed": False,
                "approval": request.id,
                "detail": f"pending approval {request.id} (expires {request.expires})",
            }
        )
        pc.record["approval"] = request.id
        raise self._refuse(
            pc.session,
            pc.record,
            f"{pc.decision.reason}: waiting for approval {request.id}",
            exc_type=ApprovalPending,
            decision="pending",
            request=request,
        )

    def _start_approval(self, pc: PendingCall) -> ap.ApprovalRequest | None:
        """Everything before asking: None when no one needs to be asked (no rule requires it, or a stored
        grant or an approved plan covers the call); raises when it is pending, denied or faulty."""
        if pc.decision.decision != APPROVAL_REQUIRED:
            return None
        self._reserve(pc)
        try:
            return self._approval_step(pc)
        except GovernanceError:
            raise
        except Exception as exc:
            self._release(pc)
            raise self._refuse(pc.session, pc.record, f"governance fault in approvals: {exc!r}") from None

    def _authorize(self, pc: PendingCall) -> None:
        request = self._start_approval(pc)
        if request is None:
            return
        try:
            answer = ap.ask_sync(self.approver, request, self.approver_timeout)  # type: ignore[arg-type]
        except Exception as exc:
            self._approval_fault(pc, request, exc)
        self._apply_answer(pc, request, answer)

    async def _aauthorize(self, pc: PendingCall) -> None:
        request = self._start_approval(pc)
        if request is None:
            return
        try:
            answer = await ap.ask_async(self.approver, request, self.approver_timeout)  # type: ignore[arg-type]
        except Exception as exc:
            self._approval_fault(pc, request, exc)
        self._apply_answer(pc, request, answer)

    def approve(self, approval_id: str, approver: str, reason: str | None = None) -> dict[str, Any]:
        """Grant a pending request; the resumed session may then run that exact call, once."""
        return self._resolve(approval_id, approver, reason, approved=True)

    def deny(self, approval_id: str, approver: str, reason: str | None = None) -> dict[str, Any]:
        return self._resolve(approval_id, approver, reason, approved=False)

    def _resolve(self, approval_id: str, approver: str, reason: str | None, *, approved: bool) -> dict[str, Any]:
        return ap.resolve(
            self.store, approval_id, approver, reason, approved=approved, now=self.now(),
            allow_self_approval=self.allow_self_approval,
        )

    def pending_approvals(self, session: str | None = None) -> list[ap.ApprovalRequest]:
        return [
            ap.ApprovalRequest.from_dict(a) for a in self.store.find_approvals(session=session, status=ap.PENDING)
        ]

    # ----------------------------------------------------------------------------- record and finish

    def _record(self, pc: PendingCall, ops: Sequence[Op] = ()) -> None:
        """Everything before the call runs, as one store batch: the reservation, the decision and ``ops``
        (a transaction's INTENT). A write's decision is durable before it runs; an allowed read's waits
        for its outcome (group-committed). If the reservation does not fit, nothing is written and the
        call is refused; if the batch cannot be written, the call is refused as a governance fault.
        """
        record = pc.record
        if record["decision"] is None:
            record["decision"] = pc.decision.decision
            record["reason"] = pc.decision.reason
        elif record["decision"] == "approved":
            record["reason"] = pc.decision.reason
        durable = pc.effect != READ or record["decision"] != "allowed"
        batch: list[Op] = []
        if pc.reserve is not None:
            batch.append(pc.reserve)
        if durable:
            batch.append(Append(pc.session.id, record))
        batch.extend(ops)
        if batch:
            try:
                results = self.store.batch(batch)
            except Exception as exc:
                self._release(pc)
                record["decision"] = None
                what = "the decision could not be stored" if durable or ops else "the budget ledger failed"
                raise self._refuse(pc.session, record, f"governance fault: {what}: {exc!r}") from None
            if results is None:
                self._does_not_fit(pc)
            if pc.reserve is not None:
                pc.reserve, pc.reservation = None, results[0]
        pc.recorded = durable
        if pc.plan_step is not None:  # the used step is part of the session: another process must see it
            pc.session._save()
        pc.started = time.perf_counter()

    def _finish(
        self, pc: PendingCall, *, result: Any = None, error: BaseException | None = None, ops: Sequence[Op] = ()
    ) -> dict[str, Any]:
        """Everything after the call ran, as one store batch: the settlement at the real cost (0 when the
        call failed), the outcome of a recorded decision and ``ops`` (a transaction's DONE or FAILED).
        An unrecorded read's trace, decision and outcome in one record, is group-committed after it."""
        duration = round((time.perf_counter() - pc.started) * 1000, 3)
        cost = Decimal(0)
        note = None
        if error is None:
            cost = pc.estimate
            if pc.spec.cost_fn is not None:
                try:
                    from corral.governance.effects import to_money

                    cost = to_money(pc.spec.cost_fn(result), f"tool {pc.name!r}: cost_fn")
                except Exception as exc:
                    note = f"cost_fn failed ({exc!r}); settled at the estimate"
        outcome = {
            "status": "ok" if error is None else "error",
            "cost": float(cost),
            "duration_ms": duration,
            "error": None if error is None else _describe(error),
        }
        if note:
            outcome["note"] = note
        pc.session.note_executed(pc.name, self.now())
        pc.extra["outcome"] = outcome
        pc.session.last_trace = Trace({**pc.record, "outcome": outcome})
        batch: list[Op] = []
        if pc.reservation is not None:
            batch.append(Settle(pc.reservation, cost))
        batch.extend(ops)
        if pc.recorded:  # the decision is sealed in the chain: its outcome is a record of its own
            batch.append(Append(pc.session.id, self._outcome_record(pc.session.id, pc.record["id"], outcome)))
        if batch:
            self.store.batch(batch)
            pc.reservation = None
        if not pc.recorded:
            pc.record["outcome"] = outcome
            self.store.append(pc.session.id, pc.record, durable=False)
        return outcome

    def _outcome_record(self, session_id: str, ref: str, outcome: dict[str, Any]) -> dict[str, Any]:
        return {"id": new_id(), "kind": "outcome", "ts": iso(self.now()), "session": session_id, "ref": ref,
                "outcome": outcome}

    def _append_outcome(self, session_id: str, ref: str, outcome: dict[str, Any]) -> None:
        self.store.append(session_id, self._outcome_record(session_id, ref, outcome), durable=True)

    def record_event(self, session: Any, record: dict[str, Any]) -> Trace:
        """Append a non-call trace (a plan, a compensation, a recovery) to the session's chain."""
        base = self._base_record(session, record.get("tool", ""), self.now(), session.open_transaction)
        base.update(record)
        self.store.append(session.id, base, durable=True)
        return Trace(base)

    # ------------------------------------------------------------------------------------- execution

    def invoke(self, session: Any, name: str, given: dict[str, Any], tx: Any = None) -> Any:
        """Govern and run one call outside a transaction (sync)."""
        pc = self._prepare(session, name, given, tx)
        self._authorize(pc)
        self._record(pc)
        try:
            result = run_sync(pc.spec.fn, given)
        except BaseException as exc:
            self._finish(pc, error=exc)
            raise
        self._finish(pc, result=result)
        return result

    async def ainvoke(self, session: Any, name: str, given: dict[str, Any], tx: Any = None) -> Any:
        pc = self._prepare(session, name, given, tx)
        await self._aauthorize(pc)
        self._record(pc)
        try:
            result = await run_async(pc.spec.fn, given)
        except BaseException as exc:
            self._finish(pc, error=exc)
            raise
        self._finish(pc, result=result)
        return result

    # ------------------------------------------------------------------------------- metered spending

    def reserve_spend(self, session: Any, label: str, estimate: Decimal | float) -> tuple[str | None, Decimal]:
        """Reserve money for something that is not a tool call (a model call) before it happens.

        Raises ``Blocked`` (traced) at the stop gate or when it does not fit. Returns the reservation
        and the exact estimate; pair it with ``settle_spend``.
        """
        from corral.governance.budget import STOP
        from corral.governance.effects import to_money

        amount = to_money(estimate, f"{label}: estimate")
        now = self.now()
        record = self._base_record(session, label, now, session.open_transaction)
        record.update({"kind": "spend", "effect": READ, "args": {"estimate": float(amount)}})
        try:
            state = self.budget_state(session.id)
        except Exception as exc:
            raise self._refuse(session, record, f"governance fault: the budget ledger failed: {exc!r}") from None
        if state.gate == STOP:
            check = {"check": "budget", "passed": False, "gate": STOP, "detail": f"stop gate: {state.pct:g}% used"}
            raise self._refuse(session, record, f"budget stop gate reached ({state.pct:g}% used)", [check])
        scopes = self.scope_limits(session.id)
        if not scopes:
            return None, amount
        try:
            rid = self.store.reserve(
                [(k, lim) for _, k, lim in scopes], amount, now + timedelta(seconds=self.reservation_ttl)
            )
        except Exception as exc:
            raise self._refuse(session, record, f"governance fault: the budget ledger failed: {exc!r}") from None
        if rid is None:
            check = {"check": "budget", "passed": False, "gate": state.gate,
                     "detail": f"does not fit: {money(amount)} would pass a limit"}
            raise self._refuse(session, record, f"{label} would cost ~{money(amount)}, more than the budget has left",
                               [check])
        return rid, amount

    def settle_spend(
        self, session: Any, label: str, reservation: str | None, estimate: Decimal, actual: Decimal | float,
        detail: dict[str, Any] | None = None, error: BaseException | None = None,
    ) -> None:
        """Settle a ``reserve_spend`` at the real cost (0 on error) and trace it in the session's chain."""
        from corral.governance.effects import to_money

        cost = Decimal(0) if error is not None else to_money(actual, f"{label}: cost")
        if reservation is not None:
            self.store.settle(reservation, cost)
        record = self._base_record(session, label, self.now(), session.open_transaction)
        state = self.budget_state(session.id)
        record.update(
            {
                "kind": "spend",
                "effect": READ,
                "args": detail or {},
                "decision": "allowed",
                "reason": f"{label}: reserved {money(estimate)}, settled {money(cost)}",
                "checks": [{"check": "budget", "passed": True, "gate": state.gate,
                            "detail": f"reserved {money(estimate)}; settled {money(cost)}"}],
                "budget": state.view().to_dict(),
                "outcome": {"status": "ok" if error is None else "error", "cost": float(cost), "duration_ms": None,
                            "error": None if error is None else _describe(error)},
            }
        )
        self.store.append(session.id, record, durable=False)

    # -------------------------------------------------------------------------------------- recovery

    def recover(self) -> Any:
        """Roll back what a crashed process left open; returns a report (``report.to_dict()``)."""
        from corral.governance.recovery import recover

        return recover(self)

    def close(self) -> None:
        self.store.close()


def _plan_view(spec: ToolSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a plan step is matched against: as given, minus those equal to their default."""
    sig = spec.signature
    if sig is None:
        return dict(given)
    out = {}
    for key, value in given.items():
        param = sig.parameters.get(key)
        if param is not None and param.default is not inspect.Parameter.empty and param.default == value:
            continue
        out[key] = value
    return out


def _set_budget_check(record: dict[str, Any], passed: bool, detail: str) -> None:
    for check in record["checks"]:
        if check.get("check") == "budget":
            check["passed"] = passed
            check["detail"] = detail
            return
    record["checks"].append({"check": "budget", "passed": passed, "detail": detail, "gate": None})


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return True


def run_sync(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a tool or compensation from sync code; an async one runs to completion on its own loop."""
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        return _run_coroutine(result)
    return result


def run_sync_positional(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        return _run_coroutine(result)
    return result


def _run_coroutine(awaitable: Any) -> Any:
    import asyncio  # only for async tools: a process that runs none (the Claude Code hook) never imports it

    async def wrap() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrap())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(wrap())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="corral-async-tool")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


async def run_async(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_async_positional(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


__all__ = ["Call", "GovernedTool", "Governor", "StoreError"]
