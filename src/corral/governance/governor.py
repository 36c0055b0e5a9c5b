"""The Governor: the tool registry, the policy, the store, the budget scopes — what every session shares.

A call's life is in ``pipeline.py`` (prepare → record → finish) and ``authorize.py`` (approvals),
strung together by ``calls.begin_call`` — the seam every enforcement point uses — and by
``Session.call`` (begin, run, finish). The Governor holds what those stages read: tools, policy, store,
clock, budget scopes and gates, approval settings, listeners.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from corral.errors import ConfigError, StoreError
from corral.governance import approvals as ap
from corral.governance.budget import NO_BUDGET, STOP, BudgetState, ScopeUsage, money, parse_budget, parse_gates
from corral.governance.calls import Call
from corral.governance.decision import Decision
from corral.governance.effects import READ, ToolSpec, to_money
from corral.governance.events import Event
from corral.governance.finish import DetachedCall
from corral.governance.pipeline import dry_decide, fault, refuse
from corral.governance.records import call_record, describe, outcome
from corral.governance.rules import Policy
from corral.governance.session import Session
from corral.governance.traces import Trace
from corral.logs import get_logger
from corral.store import Store, open_store

log = get_logger("corral")


def rule_sources(rules: Any, mode: str | None = None) -> list[tuple[str, str, str | None]]:
    """Rule text, a ``Path`` to a ``*.rules`` file, ``{"file": path, "mode": "shadow"}`` (or ``{"text":
    …}``), or a list of these → ``[(text, source, mode)]``."""
    if rules is None:
        return []
    if isinstance(rules, Path):
        try:
            return [(rules.read_text(encoding="utf-8"), _display_path(rules), mode)]
        except OSError as exc:
            raise ConfigError(f"rules file {rules}: {exc.strerror or exc}") from None
    if isinstance(rules, str):
        return [(rules, "<rules>", mode)]
    if isinstance(rules, Mapping):
        unknown = set(rules) - {"file", "text", "mode"}
        given = rules.get("mode", "enforce")
        if unknown or ("file" in rules) == ("text" in rules) or given not in ("enforce", "shadow"):
            raise ConfigError(
                f"a rules entry is {{'file': path, 'mode': 'enforce' | 'shadow'}} (or 'text' for rule text), "
                f"got {dict(rules)!r}"
            )
        if "file" in rules:
            return rule_sources(Path(rules["file"]), given)
        return rule_sources(str(rules["text"]), given)
    if isinstance(rules, Iterable):
        out: list[tuple[str, str, str | None]] = []
        for item in rules:
            out.extend(rule_sources(item, mode))
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
        call_ttl: float = 3600.0,
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
            ("call_ttl", call_ttl),
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
        self.call_ttl = float(call_ttl)  # how long a call begun durably may wait for its outcome
        self.compensation_tries = compensation_tries
        self.step_tries = step_tries
        self.retry_backoff = float(retry_backoff)
        self.redact_names = frozenset(redact)
        self._clock = clock
        if isinstance(rules, Policy):  # compiled already (a per-call process keeps its parsed rules)
            self._sources, self._policy = [], rules
        else:
            self._sources = rule_sources(rules)
            self._policy = Policy.from_sources(self._sources)
        self.store: Store = open_store(store)
        self._tools: dict[str, ToolSpec] = {}
        self._lock = threading.RLock()
        self._default_session: Any = None
        self.listeners: tuple[Callable[[Event], Any], ...] = ()

    # ----------------------------------------------------------------------------------- configuration

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def policy_sha256(self) -> str:
        return self._policy.sha256

    def rules(self, rules: Any) -> Governor:
        """Add rules (text, a Path, or a list). They are parsed and compiled now; errors surface here."""
        sources = rule_sources(rules)
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
    def tools(self) -> Mapping[str, ToolSpec]:
        """The registered tools by name (a read-only view: register through ``register`` or ``tool``)."""
        return _ReadOnly(self._tools)

    # ------------------------------------------------------------------------------------ listeners

    def subscribe(self, listener: Callable[[Event], Any]) -> Callable[[], None]:
        """Call ``listener(event)`` for every ``CallDecided``, ``CallRefused`` and ``CallFinished``
        (``corral.governance.events``). Returns a function that unsubscribes it."""
        if not callable(listener):
            raise ConfigError(f"a listener must be callable, got {listener!r}")
        with self._lock:
            self.listeners = (*self.listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self.listeners = tuple(fn for fn in self.listeners if fn is not listener)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # an observer cannot change a decision
                log.exception("corral: a listener failed on %s", type(event).__name__)

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
        if not self.limits:
            return NO_BUDGET
        scopes = self.scope_limits(session_id)
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
        return dry_decide(session, tool, dict(args), session.open_transaction)

    # ---------------------------------------------------------------------------------- approvals

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

    def resume_call(self, call_id: str) -> DetachedCall:
        """A call begun durably (``begin_call(..., durable=True)``) — in this process or any other on the
        same store — to finish here by its id. Raises ``CallNotOpen`` when it is not waiting to be
        finished."""
        return DetachedCall.load(self.store, call_id, spec_for=self._tools.get, now=self.now)

    def record_event(self, session: Any, record: dict[str, Any]) -> Trace:
        """Append a non-call trace (a plan, a compensation, a recovery) to the session's chain."""
        return session.record_event(record)

    # ------------------------------------------------------------------------------- metered spending

    def reserve_spend(self, session: Any, label: str, estimate: Decimal | float) -> tuple[str | None, Decimal]:
        """Reserve money for something that is not a tool call (a model call) before it happens.

        Raises ``Blocked`` (traced) at the stop gate or when it does not fit. Returns the reservation
        and the exact estimate; pair it with ``settle_spend``.
        """
        amount = to_money(estimate, f"{label}: estimate")
        now = self.now()
        record = call_record(self, session, label, now, session.open_transaction)
        record.update({"kind": "spend", "effect": READ, "args": {"estimate": float(amount)}})
        try:
            state = self.budget_state(session.id)
        except Exception as exc:
            raise fault(session, record, f"governance fault: the budget ledger failed: {exc!r}") from None
        if state.gate == STOP:
            check = {"check": "budget", "passed": False, "gate": STOP, "detail": f"stop gate: {state.pct:g}% used"}
            raise refuse(session, record, f"budget stop gate reached ({state.pct:g}% used)", [check])
        scopes = self.scope_limits(session.id)
        if not scopes:
            return None, amount
        try:
            rid = self.store.reserve(
                [(k, lim) for _, k, lim in scopes], amount, now + timedelta(seconds=self.reservation_ttl)
            )
        except Exception as exc:
            raise fault(session, record, f"governance fault: the budget ledger failed: {exc!r}") from None
        if rid is None:
            check = {"check": "budget", "passed": False, "gate": state.gate,
                     "detail": f"does not fit: {money(amount)} would pass a limit"}
            raise refuse(session, record, f"{label} would cost ~{money(amount)}, more than the budget has left",
                               [check])
        return rid, amount

    def settle_spend(
        self, session: Any, label: str, reservation: str | None, estimate: Decimal, actual: Decimal | float,
        detail: dict[str, Any] | None = None, error: BaseException | None = None,
    ) -> None:
        """Settle a ``reserve_spend`` at the real cost (0 on error) and trace it in the session's chain."""
        cost = Decimal(0) if error is not None else to_money(actual, f"{label}: cost")
        if reservation is not None:
            self.store.settle(reservation, cost)
        record = call_record(self, session, label, self.now(), session.open_transaction)
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
                "outcome": outcome("ok" if error is None else "error", float(cost), None,
                                   None if error is None else describe(error)),
            }
        )
        self.store.append(session.id, record, durable=False)

    # -------------------------------------------------------------------------------------- recovery

    def recover(self, claim: Any = None) -> Any:
        """Roll back what a crashed process left open; returns a report (``report.to_dict()``).

        ``claim(tx_record)`` lets several processes share the work: see ``corral.governance.recovery``."""
        from corral.governance.recovery import recover

        return recover(self, claim)

    def close(self) -> None:
        self.store.close()


class _ReadOnly(Mapping[str, ToolSpec]):
    """A live, read-only view of the registry: no copy per call on the hot path."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, ToolSpec]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> ToolSpec:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


__all__ = ["Call", "GovernedTool", "Governor", "StoreError"]
