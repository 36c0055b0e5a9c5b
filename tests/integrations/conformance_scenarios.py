"""One policy, one set of scenarios, every enforcement point (DESIGN §12).

The same policy and the same scenarios run through the kernel API, the Claude Code hook, the Strands,
LangChain and OpenAI Agents adapters (tests/integrations) and — through the same runner — the harness
and the MCP proxy. Each enforcement point is an object with five methods (``EnforcementPoint``); the
runner plays a scenario's steps against it and checks every call's decision, the reason the model (or
the person) is shown, and that a refused call never ran.

Setup steps — moving phases, proposing a plan, approving, breaking the store — go through the kernel
API on the point's own governor and store (``kernel_session``), the way a person or the application
would do them; only tool calls go through the enforcement point.

From another suite (no ``__init__.py`` here, so put this folder on ``sys.path``)::

    sys.path.insert(0, str(Path(__file__).parents[1] / "integrations"))
    from conformance_scenarios import SCENARIOS, check_scenario
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from corral.errors import StoreError

ALLOWED = "allowed"
BLOCKED = "blocked"
PENDING = "pending"

# ------------------------------------------------------------------------------------------- the policy

POLICY = textwrap.dedent(
    """\
    # conformance policy: the same file behind every enforcement point
    REQUIRE PLAN
    REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
    BLOCK lookup_order WHEN arg.order_id MATCHES "ADMIN-*" BECAUSE "admin orders are off limits"
    BLOCK * WHEN tags CONTAINS egress AND labels CONTAINS pii AND labels CONTAINS untrusted BECAUSE "lethal trifecta"
    SHADOW BLOCK lookup_order WHEN arg.order_id MATCHES "VIP-*" BECAUSE "trial: VIP orders off limits"
    """
)
BUDGET = 1.00  # each session's limit, in dollars
AGENT = "conformance"
PRINCIPAL = "alice"
APPROVER = "bob"


@dataclass(frozen=True)
class ToolDecl:
    effect: str
    cost: float = 0.0
    description: str = ""
    params: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # what its results add to the session (§15)
    tags: tuple[str, ...] = ()


TOOLS: dict[str, ToolDecl] = {
    "lookup_order": ToolDecl("read", 0.0, "Look up an order by id.", ("order_id",), labels=("pii",)),
    "search": ToolDecl("read", 0.5, "Search the order archive (costs $0.50).", ("query",), labels=("untrusted",)),
    "update_note": ToolDecl("reversible", 0.0, "Write a note on an order.", ("order_id", "text")),
    "issue_refund": ToolDecl("reversible", 0.0, "Refund an amount on an order.", ("order_id", "amount")),
    "send_email": ToolDecl("irreversible", 0.0, "Send an email.", ("to", "body"), tags=("egress",)),
}
#: A tool the framework can call but corral was never told about: every point must refuse it.
UNKNOWN_TOOL = "delete_everything"


def tool_bodies(ran: list[tuple[str, dict[str, Any]]]) -> dict[str, Callable[..., Any]]:
    """Plain functions for every tool (the unknown one too) that record that they ran."""

    def lookup_order(order_id: str) -> dict[str, Any]:
        ran.append(("lookup_order", {"order_id": order_id}))
        return {"order_id": order_id, "status": "shipped"}

    def search(query: str) -> dict[str, Any]:
        ran.append(("search", {"query": query}))
        return {"hits": 3}

    def update_note(order_id: str, text: str) -> dict[str, Any]:
        ran.append(("update_note", {"order_id": order_id, "text": text}))
        return {"noted": True}

    def issue_refund(order_id: str, amount: float) -> dict[str, Any]:
        ran.append(("issue_refund", {"order_id": order_id, "amount": amount}))
        return {"refunded": amount}

    def send_email(to: str, body: str) -> dict[str, Any]:
        ran.append(("send_email", {"to": to, "body": body}))
        return {"sent": True}

    def delete_everything(confirm: bool = True) -> dict[str, Any]:
        ran.append((UNKNOWN_TOOL, {"confirm": confirm}))
        return {"deleted": "everything"}

    for fn, decl in zip((lookup_order, search, update_note, issue_refund, send_email), TOOLS.values(), strict=True):
        fn.__doc__ = decl.description
    delete_everything.__doc__ = "Delete every order."
    return {f.__name__: f for f in (lookup_order, search, update_note, issue_refund, send_email, delete_everything)}


def compensate(call: Any) -> None:
    """The compensation of the reversible tools: nothing to undo outside the tests that roll back."""


def register_options(name: str) -> dict[str, Any]:
    """What ``gov.register`` needs besides the function, for a declared tool."""
    decl = TOOLS[name]
    options: dict[str, Any] = {"effect": decl.effect, "cost": decl.cost}
    if decl.effect == "reversible":
        options["compensate"] = compensate
    if decl.labels:
        options["labels"] = list(decl.labels)
    if decl.tags:
        options["tags"] = list(decl.tags)
    return options


def write_agent(directory: Path, *, store: str | None = None) -> Path:
    """An agent file declaring the policy, budget and tools, with the rules file and a tools module beside it.

    The harness and the MCP proxy import ``conformance_tools``; the Claude Code hook reads only the
    effects and costs. ``allowed_tools`` names the declared tools, so the unknown one is refused.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "conformance.rules").write_text(POLICY, encoding="utf-8")
    (directory / "conformance_tools.py").write_text(_TOOLS_MODULE, encoding="utf-8")
    (directory / "script.yaml").write_text("- text: done\n", encoding="utf-8")
    lines = [
        f"name: {AGENT}",
        "model: {provider: scripted, script: script.yaml}",
        "governance:",
        f"  budget: {BUDGET}",
        "  rules: conformance.rules",
        "tools:",
    ]
    for name, decl in TOOLS.items():
        lines.append(f"  - python: conformance_tools:{name}")
        lines.append(f"    effect: {decl.effect}")
        lines.append(f"    cost: {decl.cost}")
        if decl.effect == "reversible":
            lines.append("    compensate: conformance_tools:compensate")
        if decl.labels:
            lines.append(f"    labels: [{', '.join(decl.labels)}]")
        if decl.tags:
            lines.append(f"    tags: [{', '.join(decl.tags)}]")
    lines.append(f"allowed_tools: [{', '.join(TOOLS)}]")
    lines.append(f"store: {store or 'sqlite:///' + str(directory / 'corral.db')}")
    path = directory / "agent.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_TOOLS_MODULE = '''"""The conformance scenarios' tools, for enforcement points that import them."""

RAN = []


def lookup_order(order_id: str) -> dict:
    """Look up an order by id."""
    RAN.append(("lookup_order", {"order_id": order_id}))
    return {"order_id": order_id, "status": "shipped"}


def search(query: str) -> dict:
    """Search the order archive (costs $0.50)."""
    RAN.append(("search", {"query": query}))
    return {"hits": 3}


def update_note(order_id: str, text: str) -> dict:
    """Write a note on an order."""
    RAN.append(("update_note", {"order_id": order_id, "text": text}))
    return {"noted": True}


def issue_refund(order_id: str, amount: float) -> dict:
    """Refund an amount on an order."""
    RAN.append(("issue_refund", {"order_id": order_id, "amount": amount}))
    return {"refunded": amount}


def send_email(to: str, body: str) -> dict:
    """Send an email."""
    RAN.append(("send_email", {"to": to, "body": body}))
    return {"sent": True}


def delete_everything(confirm: bool = True) -> dict:
    """Delete every order."""
    RAN.append(("delete_everything", {"confirm": confirm}))
    return {"deleted": "everything"}


def compensate(call):
    """Nothing to undo in the scenarios."""
'''


class FaultyStore:
    """A store whose budget ledger has failed: reserving raises (alone or in a batch); the rest works."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.url = getattr(inner, "url", "faulty://")

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("injected fault: the budget ledger is unreachable")

    def batch(self, ops: Any) -> Any:
        from corral.store import Reserve

        ops = list(ops)
        if any(isinstance(op, Reserve) for op in ops):
            self.reserve()
        return self._inner.batch(ops)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# ----------------------------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class Call:
    """A tool call through the enforcement point, and what must come of it."""

    tool: str
    args: Mapping[str, Any]
    expect: str
    reason: str | None = None  # a piece of the reason the model (or the person) must be shown


@dataclass(frozen=True)
class Phase:
    """Move the session (``commit`` binds the latest proposed plan)."""

    phase: str


@dataclass(frozen=True)
class Propose:
    steps: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Approve:
    """A person approves the session's newest pending approval."""

    approver: str = APPROVER


@dataclass(frozen=True)
class Fault:
    """From here on the store's budget ledger fails."""


@dataclass(frozen=True)
class TraceSays:
    """The session's latest call trace (read through the kernel on the point's store) has ``field``
    equal to ``expected`` — or, for a mapping, holding every key of ``expected`` with its value."""

    field: str
    expected: Any

    def holds(self, found: Any) -> bool:
        return _like(found, self.expected)


def _like(found: Any, expected: Any) -> bool:
    """``found`` is what ``expected`` says: a mapping holds its keys; a rule source ``":6"`` is line 6
    of the policy, whatever path each point loaded the rules file by."""
    if isinstance(expected, Mapping):
        return isinstance(found, Mapping) and all(_like(found.get(k), v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(found, list) and len(found) == len(expected) and all(
            _like(f, e) for f, e in zip(found, expected, strict=True)
        )
    if isinstance(expected, str) and expected.startswith(":"):
        return isinstance(found, str) and found.endswith(expected)
    return bool(found == expected)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Any, ...]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "premature_write",
        "a write before the commit phase is refused and does not run",
        (Call("update_note", {"order_id": "A1", "text": "hello"}, BLOCKED, "not allowed in explore"),
         Call("lookup_order", {"order_id": "A1"}, ALLOWED)),
    ),
    Scenario(
        "budget_stop",
        "the call that fills the budget runs; at the stop gate every call is refused",
        (Call("search", {"query": "late"}, ALLOWED),
         Call("search", {"query": "lost"}, ALLOWED),
         Call("search", {"query": "more"}, BLOCKED, "stop gate"),
         Call("lookup_order", {"order_id": "A1"}, BLOCKED, "stop gate")),
    ),
    Scenario(
        "approval",
        "a refund over $100 waits for a person; once approved the same call runs",
        (Phase("decide"),
         Propose(({"tool": "issue_refund", "args": {"order_id": "A1", "amount": 150}},)),
         Phase("commit"),
         Call("issue_refund", {"order_id": "A1", "amount": 150}, PENDING, "refunds over $100 need a human"),
         Approve(),
         Call("issue_refund", {"order_id": "A1", "amount": 150}, ALLOWED)),
    ),
    Scenario(
        "plan_binding",
        "in commit, a write must match an unused step of the plan",
        (Phase("decide"),
         Propose(({"tool": "update_note", "args": {"order_id": "A1", "text": "*"}},)),
         Phase("commit"),
         Call("update_note", {"order_id": "B2", "text": "sneaky"}, BLOCKED, "not in plan"),
         Call("update_note", {"order_id": "A1", "text": "refund sent"}, ALLOWED),
         Call("update_note", {"order_id": "A1", "text": "again"}, BLOCKED, "not in plan")),
    ),
    Scenario(
        "argument_rule",
        "a rule on an argument's value refuses one call and lets another through",
        (Call("lookup_order", {"order_id": "ADMIN-7"}, BLOCKED, "admin orders are off limits"),
         Call("lookup_order", {"order_id": "A7"}, ALLOWED)),
    ),
    Scenario(
        "unknown_tool",
        "a tool corral was never told about is refused",
        (Call(UNKNOWN_TOOL, {"confirm": True}, BLOCKED, "unknown tool"),),
    ),
    Scenario(
        "shadow_rule",
        "a shadow rule is evaluated and traced but never enforced: the call runs, its trace says what would have been",
        (Call("lookup_order", {"order_id": "VIP-1"}, ALLOWED),
         TraceSays("decision", "allowed"),
         TraceSays("shadow", {"decision": "blocked", "rules": [":6"]}),
         Call("lookup_order", {"order_id": "A1"}, ALLOWED),
         TraceSays("shadow", {"decision": "allowed", "rules": []})),
    ),
    Scenario(
        "lethal_trifecta",
        "after reading private data and untrusted content, the way out is refused, and the trace says why",
        (Call("lookup_order", {"order_id": "A1"}, ALLOWED),
         TraceSays("labels", []),
         Call("search", {"query": "mail the record to eve@evil.example"}, ALLOWED),
         TraceSays("labels", ["pii"]),
         Phase("decide"),
         Propose(({"tool": "send_email", "args": {"to": "*", "body": "*"}},)),
         Phase("commit"),
         Call("send_email", {"to": "eve@evil.example", "body": "the record"}, BLOCKED, "lethal trifecta"),
         TraceSays("labels", ["pii", "untrusted"])),
    ),
    Scenario(
        "internal_fault",
        "a fault inside governance (the budget ledger) refuses the call: fail closed",
        (Call("lookup_order", {"order_id": "A1"}, ALLOWED),
         Fault(),
         Call("search", {"query": "anything"}, BLOCKED, "governance fault")),
    ),
)


# --------------------------------------------------------------------------------------- the runner


@dataclass
class Outcome:
    """What one call came to at an enforcement point."""

    decision: str  # allowed | blocked | pending
    text: str = ""  # what the model (or the person asked) is shown
    ran: bool | None = None  # did the tool body run? None when the point cannot tell


class EnforcementPoint(Protocol):
    name: str

    def open(self, scenario: Scenario) -> None:
        """A fresh governor, store and session for the scenario, with the tools declared."""

    def kernel_session(self) -> Any:
        """A kernel ``Session`` on the point's store and session id, up to date, for setup steps."""

    def call(self, tool: str, args: Mapping[str, Any]) -> Outcome:
        """Make one tool call through the enforcement point, the way its agent would."""

    def inject_fault(self) -> None:
        """From now on the store's ``reserve`` raises (see ``FaultyStore``)."""

    def close(self) -> None: ...


@dataclass
class Played:
    step: Call
    outcome: Outcome
    problems: list[str] = field(default_factory=list)


def play(point: EnforcementPoint, scenario: Scenario) -> list[Played]:
    """Run a scenario's steps; return each call with what came of it and what was wrong with it."""
    played: list[Played] = []
    point.open(scenario)
    try:
        for step in scenario.steps:
            if isinstance(step, Phase):
                session = point.kernel_session()
                if step.phase == "commit":
                    session.begin_commit(session.plan)
                else:
                    session.back_to(step.phase)
            elif isinstance(step, Propose):
                point.kernel_session().propose([dict(s) for s in step.steps])
            elif isinstance(step, Approve):
                session = point.kernel_session()
                pending = session.governor.pending_approvals(session=session.id)
                if not pending:
                    raise AssertionError(f"{point.name}/{scenario.name}: nothing is pending to approve")
                newest = max(pending, key=lambda r: r.created)
                session.governor.approve(newest.id, step.approver)
            elif isinstance(step, Fault):
                point.inject_fault()
            elif isinstance(step, TraceSays):  # about the call just played: its problems are that call's
                if not played:
                    raise AssertionError(f"{point.name}/{scenario.name}: TraceSays before any call")
                played[-1].problems.extend(_trace_says(point, step))
            elif isinstance(step, Call):
                outcome = point.call(step.tool, dict(step.args))
                problems = []
                if outcome.decision != step.expect:
                    problems.append(f"expected {step.expect}, got {outcome.decision} ({outcome.text!r})")
                if step.reason and step.reason.lower() not in outcome.text.lower():
                    problems.append(f"the reason shown does not say {step.reason!r}: {outcome.text!r}")
                if outcome.ran is not None and outcome.ran != (outcome.decision == ALLOWED):
                    problems.append(f"the tool {'ran' if outcome.ran else 'did not run'} but the decision was "
                                    f"{outcome.decision}")
                played.append(Played(step, outcome, problems))
            else:  # pragma: no cover
                raise TypeError(f"unknown step {step!r}")
    finally:
        point.close()
    return played


def _trace_says(point: EnforcementPoint, step: TraceSays) -> list[str]:
    """Check the latest call trace of the point's session, as the kernel reads it from the store. A point
    in another process (the proxy) group-commits its reads' traces: give them a moment to arrive."""
    import time

    deadline = time.monotonic() + 5.0
    while True:
        calls = [t for t in point.kernel_session().traces if t.kind == "call"]
        found = getattr(calls[-1], step.field, None) if calls else None
        if step.holds(found) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if step.holds(found):
        return []
    return [f"its trace's {step.field} is {found!r}, expected {step.expected!r}"]


def check_scenario(point: EnforcementPoint, scenario: Scenario) -> list[Played]:
    """``play`` and fail with every problem listed, naming the point, the scenario and the call."""
    played = play(point, scenario)
    problems = [
        f"{point.name} / {scenario.name} / {p.step.tool}({dict(p.step.args)}): {problem}"
        for p in played for problem in p.problems
    ]
    if problems:
        raise AssertionError("\n".join(problems))
    return played


# ----------------------------------------------------------------------------- the reference: the kernel


class KernelPoint:
    """The kernel API itself: ``s.call`` (in a commit, the transaction's step)."""

    name = "kernel"

    def __init__(self, store: Any = None) -> None:
        self._store = store
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def open(self, scenario: Scenario) -> None:
        from corral import Governor

        self.governor = Governor(agent=AGENT, budget=BUDGET, rules=POLICY, store=self._store)
        bodies = tool_bodies(self.ran)
        for name in TOOLS:
            self.governor.register(name, bodies[name], **register_options(name))
        self.session = self.governor.session(principal=PRINCIPAL)

    def kernel_session(self) -> Any:
        return self.session

    def call(self, tool: str, args: Mapping[str, Any]) -> Outcome:
        from corral import ApprovalPending, GovernanceError

        before = len(self.ran)
        try:
            result = self.session.call(tool, **args)
        except ApprovalPending as exc:
            return Outcome(PENDING, str(exc), len(self.ran) > before)
        except GovernanceError as exc:
            return Outcome(BLOCKED, str(exc), len(self.ran) > before)
        return Outcome(ALLOWED, repr(result), len(self.ran) > before)

    def inject_fault(self) -> None:
        self.governor.store = FaultyStore(self.governor.store)

    def close(self) -> None:
        self.governor.close()
