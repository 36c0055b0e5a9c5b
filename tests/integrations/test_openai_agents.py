"""OpenAI Agents SDK: governed function tools, driven by the SDK's own ``agents.testing.ScriptedModel``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import Agent, FunctionTool, RunConfig, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
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

from corral import Governor
from corral.integrations.openai_agents import govern_function_tool

RUN = RunConfig(tracing_disabled=True)


def play(agent: Agent, inputs: Any) -> Any:
    return asyncio.run(Runner.run(agent, inputs, run_config=RUN))


def outputs(result: Any) -> dict[str, Any]:
    """The tool outputs the model was given, by call id."""
    found = {}
    for item in result.new_items:
        if getattr(item, "type", None) == "tool_call_output_item":
            found[item.raw_item["call_id"]] = item.output
    return found


def script(*turns: list[Any]) -> ScriptedModel:
    return ScriptedModel([*turns, [assistant_message("done")]])


# ----------------------------------------------------------------------------------------- conformance


class OpenAIAgentsPoint:
    name = "openai-agents"

    def open(self, scenario: Any) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.governor = Governor(agent="conformance", budget=1.0, rules=POLICY)
        self.session = self.governor.session(principal=PRINCIPAL)
        bodies = tool_bodies(self.ran)
        self.tools = [govern_function_tool(function_tool(fn), self.governor, self.session, **register_options(name))
                      for name, fn in bodies.items() if name in TOOLS]
        self.tools.append(govern_function_tool(function_tool(bodies[UNKNOWN_TOOL]), self.governor, self.session))
        self.calls = 0

    def kernel_session(self) -> Any:
        return self.session

    def call(self, name: str, args: dict[str, Any]) -> Outcome:
        self.calls += 1
        call_id = f"call_{self.calls}"
        before = len(self.ran)
        agent = Agent(name="desk", model=script([function_call(name, args, call_id=call_id)]), tools=self.tools)
        result = play(agent, "go")
        ran = len(self.ran) > before
        if result.interruptions:
            reason = self.governor.check(name, args, session=self.session).reason
            return Outcome(PENDING, reason, ran)
        text = str(outputs(result)[call_id])
        return Outcome(BLOCKED if text.startswith("corral refused") else ALLOWED, text, ran)

    def inject_fault(self) -> None:
        self.governor.store = FaultyStore(self.governor.store)

    def close(self) -> None:
        self.governor.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_conformance_through_the_agents_sdk(scenario: Any) -> None:
    check_scenario(OpenAIAgentsPoint(), scenario)


# ---------------------------------------------------------------------------------------- behaviour


@pytest.fixture
def desk() -> dict[str, Any]:
    ran: list[Any] = []
    undone: list[Any] = []

    @function_tool
    def lookup(order_id: str) -> str:
        """Look up an order."""
        ran.append(("lookup", order_id))
        return f"order {order_id}"

    @function_tool
    def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        ran.append(("refund", order_id, amount))
        if order_id == "BROKEN":
            raise RuntimeError("payment service down")
        return "refunded"

    gov = Governor(agent="desk", budget=10.0, phases=False,
                   rules='REQUIRE APPROVAL FOR refund WHEN arg.amount ABOVE 100 BECAUSE "big refunds need a human"\n'
                         'BLOCK lookup WHEN arg.order_id MATCHES "ADMIN*" BECAUSE "admin orders are off limits"')
    session = gov.session(principal="alice")
    tools = [govern_function_tool(lookup, gov, session, effect="read", cost=0.2),
             govern_function_tool(refund, gov, session, effect="reversible", compensate=lambda c: undone.append(c))]
    return {"gov": gov, "session": session, "tools": tools, "originals": [lookup, refund], "ran": ran,
            "undone": undone}


def test_the_governed_tool_looks_like_the_original(desk: dict[str, Any]) -> None:
    for governed, original in zip(desk["tools"], desk["originals"], strict=True):
        assert isinstance(governed, FunctionTool)
        assert (governed.name, governed.description, governed.params_json_schema) == (
            original.name, original.description, original.params_json_schema)
        assert governed.on_invoke_tool is not original.on_invoke_tool


def test_allowed_and_refused_calls(desk: dict[str, Any]) -> None:
    agent = Agent(name="desk", tools=desk["tools"], model=script([
        function_call("lookup", {"order_id": "A1"}, call_id="c1"),
        function_call("lookup", {"order_id": "ADMIN-9"}, call_id="c2")]))
    result = play(agent, "go")
    assert result.final_output == "done"
    out = outputs(result)
    assert out["c1"] == "order A1" and desk["ran"] == [("lookup", "A1")]
    assert out["c2"].startswith("corral refused lookup") and "admin orders are off limits" in out["c2"]
    assert desk["session"].budget.spent == 0.2
    assert sorted(t.decision for t in desk["session"].traces) == ["allowed", "blocked"]


def test_approval_through_the_sdk_runs_the_call_once(desk: dict[str, Any]) -> None:
    agent = Agent(name="desk", tools=desk["tools"], model=script([
        function_call("refund", {"order_id": "A1", "amount": 500}, call_id="c1")]))
    result = play(agent, "go")
    [item] = result.interruptions
    assert item.tool_name == "refund" and desk["ran"] == []
    [request] = desk["gov"].pending_approvals(session=desk["session"].id)  # in corral's queue as well
    assert request.tool == "refund" and request.args == {"order_id": "A1", "amount": 500}
    state = result.to_state()
    state.approve(item)
    resumed = play(agent, state)
    assert resumed.final_output == "done" and desk["ran"] == [("refund", "A1", 500.0)]
    approval = desk["gov"].store.get_approval(request.id)
    assert approval["status"] == "used" and approval["approver"] == "openai-agents-approval"
    assert [t.decision for t in desk["session"].traces if t.tool == "refund"][-1] == "approved"


def test_a_rejection_in_the_sdk_never_reaches_the_tool(desk: dict[str, Any]) -> None:
    agent = Agent(name="desk", tools=desk["tools"], model=script([
        function_call("refund", {"order_id": "A1", "amount": 500}, call_id="c1")]))
    result = play(agent, "go")
    state = result.to_state()
    state.reject(result.interruptions[0])
    resumed = play(agent, state)
    assert resumed.final_output == "done" and desk["ran"] == []
    assert [t.decision for t in desk["session"].traces] == ["pending"]


def test_an_approval_given_in_corral_needs_no_sdk_approval(desk: dict[str, Any]) -> None:
    first = play(Agent(name="desk", tools=desk["tools"], model=script([
        function_call("refund", {"order_id": "A1", "amount": 500}, call_id="c1")])), "go")
    assert first.interruptions
    [request] = desk["gov"].pending_approvals(session=desk["session"].id)
    desk["gov"].approve(request.id, "bob")
    second = play(Agent(name="desk", tools=desk["tools"], model=script([
        function_call("refund", {"order_id": "A1", "amount": 500}, call_id="c2")])), "go")
    assert not second.interruptions and outputs(second)["c2"] == "refunded"
    assert desk["gov"].store.get_approval(request.id)["approver"] == "bob"


def test_a_failure_in_a_commit_rolls_back_and_the_model_is_told(desk: dict[str, Any]) -> None:
    gov = Governor(agent="desk2", budget=10.0)
    session = gov.session(principal="alice")
    undone: list[Any] = []
    refund = govern_function_tool(desk["originals"][1], gov, session, effect="reversible",
                                  compensate=lambda c: undone.append(c))
    with session.decide():
        pass
    tx = session.begin_commit()
    result = play(Agent(name="desk", tools=[refund], model=script(
        [function_call("refund", {"order_id": "A1", "amount": 10}, call_id="c1")],
        [function_call("refund", {"order_id": "BROKEN", "amount": 20}, call_id="c2")])), "go")
    out = outputs(result)
    assert out["c1"] == "refunded" and "corral rolled back" in out["c2"] and "payment service down" in out["c2"]
    assert tx.state == "rolled_back" and [c.args["order_id"] for c in undone] == ["A1"]


def test_a_failure_outside_a_commit_is_formatted_as_the_sdk_would(desk: dict[str, Any]) -> None:
    result = play(Agent(name="desk", tools=desk["tools"], model=script(
        [function_call("refund", {"order_id": "BROKEN", "amount": 20}, call_id="c1")])), "go")
    assert "error" in str(outputs(result)["c1"]).lower()
    [trace] = desk["session"].traces
    assert trace.outcome["status"] == "error" and "payment service down" in trace.outcome["error"]


def test_arguments_that_are_not_json_are_refused(desk: dict[str, Any]) -> None:
    from agents.tool_context import ToolContext

    lookup = desk["tools"][0]
    ctx = ToolContext(context=None, tool_name="lookup", tool_call_id="c1", tool_arguments="{oops")
    text = asyncio.run(lookup.on_invoke_tool(ctx, "{oops"))
    assert text.startswith("corral refused lookup") and desk["ran"] == []
    text = asyncio.run(lookup.on_invoke_tool(ctx, json.dumps([1])))
    assert "not a JSON object" in text


def test_an_undeclared_tool_is_refused_as_unknown() -> None:
    @function_tool
    def wipe() -> str:
        """Wipe everything."""
        raise AssertionError("must not run")

    gov = Governor(agent="x", phases=False)
    governed = govern_function_tool(wipe, gov, gov.session(principal="alice"))
    result = play(Agent(name="desk", tools=[governed], model=script([function_call("wipe", {}, call_id="c1")])), "go")
    assert "unknown tool 'wipe'" in outputs(result)["c1"]


def test_the_tools_own_needs_approval_still_applies() -> None:
    ran = []

    @function_tool(needs_approval=True)
    def deploy() -> str:
        """Deploy."""
        ran.append("deploy")
        return "deployed"

    gov = Governor(agent="x", phases=False)
    governed = govern_function_tool(deploy, gov, gov.session(principal="alice"), effect="irreversible")
    result = play(Agent(name="desk", tools=[governed], model=script([function_call("deploy", {}, call_id="c1")])),
                  "go")
    assert result.interruptions and ran == []
    state = result.to_state()
    state.approve(result.interruptions[0])
    play(Agent(name="desk", tools=[governed], model=ScriptedModel([[assistant_message("done")]])), state)
    assert ran == ["deploy"]
