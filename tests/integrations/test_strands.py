"""Strands Agents: CorralHooks decides in BeforeToolCallEvent, settles in AfterToolCallEvent.

Strands ships no fake model, so ``ScriptedModel`` below implements its ``Model`` interface: each turn
streams the tool calls (or the text) a script says, exactly as a provider's stream would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from conformance_scenarios import (
    ALLOWED,
    BLOCKED,
    PENDING,
    POLICY,
    PRINCIPAL,
    SCENARIOS,
    TOOLS,
    UNKNOWN_TOOL,
    FaultyStore,
    Outcome,
    check_scenario,
    register_options,
    tool_bodies,
)
from strands import Agent, tool
from strands.hooks import AfterToolCallEvent, BeforeToolCallEvent
from strands.models.model import Model

from corral import Approval, Governor
from corral.integrations.strands import APPROVAL_INTERRUPT, CorralHooks, answer_from


class ScriptedModel(Model):
    """A Strands model that plays a script: each turn is ``{"tools": [(name, args), ...]}`` or ``{"text": ...}``."""

    def __init__(self, turns: list[dict[str, Any]]) -> None:
        self.turns = list(turns)
        self.calls = 0

    def update_config(self, **model_config: Any) -> None:
        return None

    def get_config(self) -> Any:
        return {}

    async def structured_output(self, output_model: Any, prompt: Any, system_prompt: Any = None,
                                **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: Any = None,
                     **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        turn = self.turns.pop(0) if self.turns else {"text": "done"}
        self.calls += 1
        yield {"messageStart": {"role": "assistant"}}
        for i, (name, args) in enumerate(turn.get("tools", ())):
            yield {"contentBlockStart": {"start": {"toolUse": {"name": name, "toolUseId": f"t{self.calls}-{i}"}}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(args)}}}}
            yield {"contentBlockStop": {}}
        if "text" in turn:
            yield {"contentBlockStart": {"start": {}}}
            yield {"contentBlockDelta": {"delta": {"text": turn["text"]}}}
            yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": "tool_use" if turn.get("tools") else "end_turn"}}


def tool_results(agent: Any) -> dict[str, dict[str, Any]]:
    """Every tool result the model was given, by tool use id."""
    out = {}
    for message in agent.messages:
        for block in message.get("content", ()):
            if "toolResult" in block:
                out[block["toolResult"]["toolUseId"]] = block["toolResult"]
    return out


def text_of(result: Mapping[str, Any]) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", ()))


# ----------------------------------------------------------------------------------------- conformance


class StrandsPoint:
    name = "strands"

    def open(self, scenario: Any) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.governor = Governor(agent="conformance", budget=1.0, rules=POLICY)
        self.session = self.governor.session(principal=PRINCIPAL)
        self.hooks = CorralHooks(self.governor, self.session,
                                 effects={name: register_options(name) for name in TOOLS})
        self.tools = [tool(fn) for fn in tool_bodies(self.ran).values()]

    def kernel_session(self) -> Any:
        return self.session

    def call(self, name: str, args: dict[str, Any]) -> Outcome:
        before = len(self.ran)
        agent = Agent(model=ScriptedModel([{"tools": [(name, args)]}, {"text": "done"}]), tools=self.tools,
                      hooks=[self.hooks], callback_handler=None)
        result = agent("go")
        ran = len(self.ran) > before
        if result.stop_reason == "interrupt":
            return Outcome(PENDING, " ".join(json.dumps(i.reason) for i in result.interrupts), ran)
        [outcome] = tool_results(agent).values()
        return Outcome(ALLOWED if outcome["status"] == "success" else BLOCKED, text_of(outcome), ran)

    def inject_fault(self) -> None:
        self.governor.store = FaultyStore(self.governor.store)

    def close(self) -> None:
        self.governor.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_conformance_through_strands(scenario: Any) -> None:
    check_scenario(StrandsPoint(), scenario)


# ---------------------------------------------------------------------------------------- behaviour


@pytest.fixture
def desk() -> dict[str, Any]:
    ran: list[Any] = []

    @tool
    def lookup(order_id: str) -> str:
        """Look up an order."""
        ran.append(("lookup", order_id))
        return f"order {order_id}"

    @tool
    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        ran.append(("refund", order_id, amount))
        return "refunded"

    @tool
    def flaky(order_id: str) -> str:
        """Fails."""
        ran.append(("flaky", order_id))
        raise RuntimeError("the payment service is down")

    undone: list[Any] = []
    gov = Governor(agent="desk", budget=10.0, phases=False,
                   rules='REQUIRE APPROVAL FOR refund WHEN arg.amount ABOVE 100 BECAUSE "big refunds need a human"')
    session = gov.session(principal="alice")
    effects = {"lookup": {"effect": "read", "cost": 0.25},
               "refund": {"effect": "reversible", "cost": 1.0, "compensate": lambda call: undone.append(call)},
               "flaky": {"effect": "reversible", "compensate": lambda call: undone.append(call)}}
    return {"gov": gov, "session": session, "tools": [lookup, refund, flaky], "ran": ran, "undone": undone,
            "effects": effects}


def run(desk: dict[str, Any], turns: list[dict[str, Any]], hooks: Any = None, agent: Any = None) -> Any:
    hooks = hooks or CorralHooks(desk["gov"], desk["session"], effects=desk["effects"])
    agent = agent or Agent(model=ScriptedModel(turns), tools=desk["tools"], hooks=[hooks], callback_handler=None)
    return agent, agent("go")


def test_allowed_calls_run_and_are_settled(desk: dict[str, Any]) -> None:
    agent, result = run(desk, [{"tools": [("lookup", {"order_id": "A1"})]}, {"text": "ok"}])
    assert result.stop_reason == "end_turn" and desk["ran"] == [("lookup", "A1")]
    [trace] = desk["session"].traces
    assert (trace.tool, trace.decision, trace.outcome["status"], trace.outcome["cost"]) == ("lookup", "allowed", "ok",
                                                                                            0.25)
    assert desk["session"].budget.spent == 0.25 and desk["session"].budget.reserved == 0


def test_a_refusal_cancels_the_tool_with_the_reason(desk: dict[str, Any]) -> None:
    desk["gov"].rules('BLOCK lookup WHEN arg.order_id MATCHES "ADMIN*" BECAUSE "admin orders are off limits"')
    agent, result = run(desk, [{"tools": [("lookup", {"order_id": "ADMIN-1"})]}, {"text": "ok"}])
    [outcome] = tool_results(agent).values()
    assert outcome["status"] == "error" and "admin orders are off limits" in text_of(outcome)
    assert "trace" in text_of(outcome) and desk["ran"] == []


def test_approval_through_an_interrupt_runs_the_call_once(desk: dict[str, Any]) -> None:
    agent, result = run(desk, [{"tools": [("refund", {"order_id": "A1", "amount": 500})]}, {"text": "ok"}])
    assert result.stop_reason == "interrupt" and desk["ran"] == []
    [interrupt] = result.interrupts
    assert interrupt.name.startswith(APPROVAL_INTERRUPT)
    assert interrupt.reason["tool"] == "refund" and "big refunds need a human" in interrupt.reason["reason"]
    [request] = desk["gov"].pending_approvals(session=desk["session"].id)
    assert interrupt.reason["approval"] == request.id
    resumed = agent([{"interruptResponse": {"interruptId": interrupt.id,
                                            "response": {"approved": True, "approver": "bob", "reason": "fine"}}}])
    assert resumed.stop_reason == "end_turn" and desk["ran"] == [("refund", "A1", 500.0)]
    approval = desk["gov"].store.get_approval(request.id)
    assert approval["approver"] == "bob" and approval["status"] == "used"
    decisions = [t.decision for t in desk["session"].traces if t.tool == "refund"]
    assert decisions[-1] == "approved" and set(decisions[:-1]) == {"pending"}


def test_a_denied_interrupt_cancels_the_call(desk: dict[str, Any]) -> None:
    agent, result = run(desk, [{"tools": [("refund", {"order_id": "A1", "amount": 500})]}, {"text": "ok"}])
    [interrupt] = result.interrupts
    agent([{"interruptResponse": {"interruptId": interrupt.id, "response": (False, "not today")}}])
    assert desk["ran"] == []
    [outcome] = tool_results(agent).values()
    assert outcome["status"] == "error" and "not today" in text_of(outcome)
    assert [t.decision for t in desk["session"].traces if t.tool == "refund"][-1] == "denied"


@pytest.mark.parametrize("response, message", [("sure", "not understood"),
                                               (True, "cannot approve their own request")])
def test_an_interrupt_answer_that_cannot_approve_cancels(desk: dict[str, Any], response: Any, message: str) -> None:
    hooks = CorralHooks(desk["gov"], desk["session"], effects=desk["effects"], approver="alice")  # the principal
    agent, result = run(desk, [{"tools": [("refund", {"order_id": "A1", "amount": 500})]}, {"text": "ok"}], hooks)
    [interrupt] = result.interrupts
    agent([{"interruptResponse": {"interruptId": interrupt.id, "response": response}}])
    [outcome] = tool_results(agent).values()
    assert outcome["status"] == "error" and message in text_of(outcome) and desk["ran"] == []


def test_approvals_deny_mode_names_the_request(desk: dict[str, Any]) -> None:
    hooks = CorralHooks(desk["gov"], desk["session"], effects=desk["effects"], approvals="deny")
    agent, result = run(desk, [{"tools": [("refund", {"order_id": "A1", "amount": 500})]}, {"text": "ok"}], hooks)
    assert result.stop_reason == "end_turn" and desk["ran"] == []
    [request] = desk["gov"].pending_approvals(session=desk["session"].id)
    [outcome] = tool_results(agent).values()
    assert f"corral approvals approve {request.id}" in text_of(outcome)
    desk["gov"].approve(request.id, "bob")
    run(desk, [{"tools": [("refund", {"order_id": "A1", "amount": 500})]}, {"text": "ok"}], hooks)
    assert desk["ran"] == [("refund", "A1", 500.0)]


def test_a_failing_tool_in_a_commit_rolls_back(desk: dict[str, Any]) -> None:
    gov = Governor(agent="desk2", budget=10.0)
    session = gov.session(principal="alice")
    hooks = CorralHooks(gov, session, effects=desk["effects"])
    with session.decide():
        pass
    tx = session.begin_commit()
    agent, _ = run(desk, [{"tools": [("refund", {"order_id": "A1", "amount": 50})]},
                          {"tools": [("flaky", {"order_id": "A1"})]}, {"text": "ok"}], hooks)
    assert tx.state == "rolled_back" and [c.tool for c in desk["undone"]] == ["refund"]
    results = tool_results(agent)
    assert "rolled back" in text_of(results["t2-0"]) and results["t2-0"]["status"] == "error"
    assert [s.status for s in tx.steps] == ["COMPENSATED", "FAILED"]
    assert session.budget.spent == 1.0  # the refund ran and was paid; the failure cost nothing


def test_a_failing_tool_outside_a_commit_settles_at_zero(desk: dict[str, Any]) -> None:
    agent, _ = run(desk, [{"tools": [("flaky", {"order_id": "A1"})]}, {"text": "ok"}])
    [trace] = desk["session"].traces
    assert trace.outcome["status"] == "error" and "payment service is down" in trace.outcome["error"]


def test_a_call_another_hook_cancels_gives_back_its_reservation(desk: dict[str, Any]) -> None:
    class Veto:
        def register_hooks(self, registry: Any, **kwargs: Any) -> None:
            registry.add_callback(BeforeToolCallEvent, self.veto)

        def veto(self, event: Any) -> None:
            event.cancel_tool = "vetoed by the operator"

    hooks = CorralHooks(desk["gov"], desk["session"], effects=desk["effects"])
    # Strands runs BeforeToolCallEvent callbacks in registration order: corral decides first, the veto after
    agent = Agent(model=ScriptedModel([{"tools": [("lookup", {"order_id": "A1"})]}, {"text": "ok"}]),
                  tools=desk["tools"], hooks=[hooks, Veto()], callback_handler=None)
    agent("go")
    assert desk["ran"] == []
    [trace] = desk["session"].traces
    assert trace.outcome["status"] == "error" and "vetoed" in trace.outcome["error"]
    assert (desk["session"].budget.spent, desk["session"].budget.reserved) == (0.0, 0.0)


def test_a_fault_while_settling_is_told_not_raised(desk: dict[str, Any]) -> None:
    class Breaker:
        def register_hooks(self, registry: Any, **kwargs: Any) -> None:
            registry.add_callback(AfterToolCallEvent, self.breaks)

        def breaks(self, event: Any) -> None:
            gov.store = Broken(gov.store)

    class Broken(FaultyStore):
        def batch(self, ops: Any) -> Any:
            raise OSError("disk full")

    gov = desk["gov"]
    hooks = CorralHooks(gov, desk["session"], effects=desk["effects"])
    # AfterToolCallEvent callbacks run in reverse: the breaker (registered last) runs before corral settles
    agent = Agent(model=ScriptedModel([{"tools": [("lookup", {"order_id": "A1"})]}, {"text": "ok"}]),
                  tools=desk["tools"], hooks=[hooks, Breaker()], callback_handler=None)
    result = agent("go")
    assert result.stop_reason == "end_turn" and desk["ran"] == [("lookup", "A1")]
    [outcome] = tool_results(agent).values()
    assert "could not record this call's outcome" in text_of(outcome)


def test_a_tool_strands_does_not_have_is_refused_by_corral(desk: dict[str, Any]) -> None:
    agent, _ = run(desk, [{"tools": [(UNKNOWN_TOOL, {})]}, {"text": "ok"}])
    [outcome] = tool_results(agent).values()
    assert outcome["status"] == "error" and "unknown tool" in text_of(outcome)


def test_answers_to_an_interrupt() -> None:
    assert answer_from(True, "x") == Approval(True, "x", None)
    assert answer_from((False, "no"), "x") == Approval(False, "x", "no")
    assert answer_from(Approval(True, None, "ok"), "x") == Approval(True, "x", "ok")
    assert answer_from({"approved": True, "approver": "bob"}, "x") == Approval(True, "bob", None)
    assert answer_from("yes", "x") is None and answer_from({"approved": "yes"}, "x") is None


def test_bad_options_are_configuration_errors(desk: dict[str, Any]) -> None:
    from corral import ConfigError

    with pytest.raises(ConfigError, match="approvals"):
        CorralHooks(desk["gov"], desk["session"], approvals="maybe")
    CorralHooks(desk["gov"], desk["session"], effects={"lookup": "read"})
    with pytest.raises(ConfigError, match="already registered with effect read"):
        CorralHooks(desk["gov"], desk["session"], effects={"lookup": "irreversible"})
