"""LangChain: govern_tool wraps a tool so the kernel decides; a refusal is an error ToolMessage.

The model is LangChain's own ``GenericFakeChatModel`` playing scripted ``AIMessage``s with tool calls;
the loop below is the one every LangChain agent runs: model → tool calls → ``ToolMessage``s → model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException, tool
from pydantic import BaseModel, Field

from corral import Governor
from corral.integrations.langchain import CorralRefusal, GovernedTool, govern_tool


def agent_turn(tools: Mapping[str, Any], calls: list[tuple[str, dict[str, Any]]]) -> list[ToolMessage]:
    """One turn of a LangChain tool-calling loop, driven by the fake chat model."""
    scripted = AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": f"call_{i}"}
                                                 for i, (n, a) in enumerate(calls)])
    model = GenericFakeChatModel(messages=iter([scripted, AIMessage(content="done")]))
    messages: list[Any] = [HumanMessage(content="go")]
    ai = model.invoke(messages)
    messages.append(ai)
    results = []
    for call in ai.tool_calls:
        message = tools[call["name"]].invoke(call)
        results.append(message)
        messages.append(message)
    assert model.invoke(messages).content == "done"
    return results


# ----------------------------------------------------------------------------------------- conformance


class LangChainPoint:
    name = "langchain"

    def open(self, scenario: Any) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.governor = Governor(agent="conformance", budget=1.0, rules=POLICY)
        self.session = self.governor.session(principal=PRINCIPAL)
        bodies = tool_bodies(self.ran)
        self.tools = {name: govern_tool(StructuredTool.from_function(fn), self.governor, self.session,
                                        **register_options(name)) for name, fn in bodies.items() if name in TOOLS}
        # handed to the model, never declared to corral: governed, and therefore refused
        self.tools[UNKNOWN_TOOL] = govern_tool(StructuredTool.from_function(bodies[UNKNOWN_TOOL]), self.governor,
                                               self.session)

    def kernel_session(self) -> Any:
        return self.session

    def call(self, name: str, args: dict[str, Any]) -> Outcome:
        before = len(self.ran)
        [message] = agent_turn(self.tools, [(name, args)])
        ran = len(self.ran) > before
        text = str(message.content)
        if message.status == "success":
            return Outcome(ALLOWED, text, ran)
        return Outcome(PENDING if text.startswith("corral is holding") else BLOCKED, text, ran)

    def inject_fault(self) -> None:
        self.governor.store = FaultyStore(self.governor.store)

    def close(self) -> None:
        self.governor.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_conformance_through_langchain(scenario: Any) -> None:
    check_scenario(LangChainPoint(), scenario)


# ---------------------------------------------------------------------------------------- behaviour


class RefundArgs(BaseModel):
    order_id: str = Field(description="the order")
    amount: float = Field(description="dollars", gt=0)


@pytest.fixture
def desk() -> dict[str, Any]:
    ran: list[Any] = []
    undone: list[Any] = []

    def refund(order_id: str, amount: float) -> str:
        ran.append(("refund", order_id, amount))
        if order_id == "BROKEN":
            raise RuntimeError("payment service down")
        return f"refunded {amount}"

    refund_tool = StructuredTool.from_function(refund, name="refund", description="Refund an order.",
                                               args_schema=RefundArgs)
    gov = Governor(agent="desk", budget=10.0,
                   rules='BLOCK refund WHEN arg.amount ABOVE 1000 BECAUSE "refunds over $1000 are never automatic"\n'
                         'REQUIRE APPROVAL FOR refund WHEN arg.amount ABOVE 100')
    session = gov.session(principal="alice")
    governed = govern_tool(refund_tool, gov, session, effect="reversible", cost=0.5,
                           compensate=lambda call: undone.append(call))
    return {"gov": gov, "session": session, "tool": governed, "inner": refund_tool, "ran": ran, "undone": undone}


def commit(session: Any) -> Any:
    with session.decide():
        pass
    return session.begin_commit()


def test_the_wrapper_keeps_name_description_and_schema(desk: dict[str, Any]) -> None:
    governed, inner = desk["tool"], desk["inner"]
    assert isinstance(governed, BaseTool) and isinstance(governed, GovernedTool)
    assert (governed.name, governed.description) == (inner.name, inner.description)
    assert governed.args == inner.args
    assert governed.tool_call_schema.model_json_schema() == inner.tool_call_schema.model_json_schema()


def test_an_allowed_call_runs_and_is_settled(desk: dict[str, Any]) -> None:
    commit(desk["session"])
    [message] = agent_turn({"refund": desk["tool"]}, [("refund", {"order_id": "A1", "amount": 20})])
    assert message.status == "success" and message.content == "refunded 20.0"
    assert desk["ran"] == [("refund", "A1", 20.0)]
    [trace] = desk["session"].traces
    assert trace.decision == "allowed" and trace.outcome["cost"] == 0.5
    assert desk["session"].budget.spent == 0.5


def test_a_refusal_is_an_error_tool_message_with_the_reason(desk: dict[str, Any]) -> None:
    [message] = agent_turn({"refund": desk["tool"]}, [("refund", {"order_id": "A1", "amount": 20})])
    assert message.status == "error" and message.content.startswith("corral refused refund")
    assert "not allowed in explore" in message.content and desk["ran"] == []
    commit(desk["session"])
    [message] = agent_turn({"refund": desk["tool"]}, [("refund", {"order_id": "A1", "amount": 5000})])
    assert message.status == "error" and "never automatic" in message.content


def test_a_pending_approval_names_the_request_and_an_approval_lets_it_run(desk: dict[str, Any]) -> None:
    commit(desk["session"])
    [message] = agent_turn({"refund": desk["tool"]}, [("refund", {"order_id": "A1", "amount": 500})])
    [request] = desk["gov"].pending_approvals(session=desk["session"].id)
    assert message.status == "error" and f"corral approvals approve {request.id}" in message.content
    desk["gov"].approve(request.id, "bob")
    [message] = agent_turn({"refund": desk["tool"]}, [("refund", {"order_id": "A1", "amount": 500})])
    assert message.status == "success" and desk["ran"] == [("refund", "A1", 500.0)]


def test_direct_callers_can_have_the_refusal_raised(desk: dict[str, Any]) -> None:
    desk["tool"].handle_tool_error = False
    with pytest.raises(CorralRefusal) as caught:
        desk["tool"].invoke({"order_id": "A1", "amount": 20})
    assert isinstance(caught.value, ToolException)
    assert caught.value.error.trace.decision == "blocked" and caught.value.error.trace.tool == "refund"


def test_a_failure_in_a_commit_rolls_back_and_says_so(desk: dict[str, Any]) -> None:
    tx = commit(desk["session"])
    results = agent_turn({"refund": desk["tool"]}, [("refund", {"order_id": "A1", "amount": 20}),
                                                    ("refund", {"order_id": "BROKEN", "amount": 30})])
    assert [m.status for m in results] == ["success", "error"]
    assert "rolled back" in results[1].content and "payment service down" in results[1].content
    assert tx.state == "rolled_back" and [c.args["order_id"] for c in desk["undone"]] == ["A1"]


def test_a_failure_outside_a_commit_raises_as_before(desk: dict[str, Any]) -> None:
    gov = Governor(agent="loose", phases=False)
    session = gov.session(principal="alice")
    governed = govern_tool(desk["inner"], gov, session, effect="irreversible")
    with pytest.raises(RuntimeError, match="payment service down"):
        governed.invoke({"order_id": "BROKEN", "amount": 30})
    [trace] = session.traces
    assert trace.outcome["status"] == "error" and "payment service down" in trace.outcome["error"]


def test_the_tools_own_handled_errors_keep_their_text_and_count_as_failures() -> None:
    def lookup(order_id: str) -> str:
        raise ToolException(f"no order {order_id}")

    inner = StructuredTool.from_function(lookup, name="lookup", description="Look up.", handle_tool_error=True)
    gov = Governor(agent="x")
    session = gov.session(principal="alice")
    [message] = agent_turn({"lookup": govern_tool(inner, gov, session, effect="read")}, [("lookup", {"order_id": "Z"})])
    assert message.status == "error" and message.content == "no order Z"
    [trace] = session.traces
    assert trace.outcome["status"] == "error" and "no order Z" in trace.outcome["error"]


def test_the_tools_own_unhandled_tool_exception_still_raises() -> None:
    def lookup(order_id: str) -> str:
        raise ToolException("lookup is down")

    inner = StructuredTool.from_function(lookup, name="lookup", description="Look up.")
    gov = Governor(agent="x")
    governed = govern_tool(inner, gov, gov.session(principal="alice"), effect="read")
    with pytest.raises(ToolException, match="lookup is down") as caught:
        governed.invoke({"order_id": "Z"})
    assert not isinstance(caught.value, CorralRefusal)


def test_async_tools_are_governed_too() -> None:
    ran = []

    @tool
    async def fetch(url: str) -> str:
        """Fetch a page."""
        ran.append(url)
        return "<html>"

    gov = Governor(agent="x", rules='BLOCK fetch WHEN arg.url MATCHES "*internal*"')
    session = gov.session(principal="alice")
    governed = govern_tool(fetch, gov, session, effect="read")

    async def both() -> tuple[Any, Any]:
        ok = await governed.ainvoke({"name": "fetch", "args": {"url": "https://example.org"}, "id": "1",
                                     "type": "tool_call"})
        no = await governed.ainvoke({"name": "fetch", "args": {"url": "https://internal.corp"}, "id": "2",
                                     "type": "tool_call"})
        return ok, no

    ok, no = asyncio.run(both())
    assert ok.status == "success" and ok.content == "<html>" and ran == ["https://example.org"]
    assert no.status == "error" and "corral refused fetch" in no.content


def test_content_and_artifact_tools_keep_their_artifact() -> None:
    @tool(response_format="content_and_artifact")
    def search(query: str) -> tuple[str, dict[str, Any]]:
        """Search."""
        return "2 hits", {"ids": [1, 2]}

    gov = Governor(agent="x")
    governed = govern_tool(search, gov, gov.session(principal="alice"), effect="read")
    message = governed.invoke({"name": "search", "args": {"query": "q"}, "id": "1", "type": "tool_call"})
    assert (message.content, message.artifact) == ("2 hits", {"ids": [1, 2]})


def test_the_inner_tool_runs_as_a_child_run() -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.started: list[tuple[str, Any]] = []

        def on_tool_start(self, serialized: Any, input_str: str, *, run_id: Any, parent_run_id: Any = None,
                          **kwargs: Any) -> None:
            self.started.append((serialized.get("name"), parent_run_id))

    @tool
    def lookup(order_id: str) -> str:
        """Look up."""
        return order_id

    gov = Governor(agent="x")
    recorder = Recorder()
    govern_tool(lookup, gov, gov.session(principal="alice"), effect="read").invoke(
        {"order_id": "A"}, config={"callbacks": [recorder]})
    assert [name for name, _ in recorder.started] == ["lookup", "lookup"]
    assert recorder.started[0][1] is None and recorder.started[1][1] is not None


def test_an_undeclared_tool_is_refused_as_unknown() -> None:
    @tool
    def wipe() -> str:
        """Wipe everything."""
        raise AssertionError("must not run")

    gov = Governor(agent="x", phases=False)
    [message] = agent_turn({"wipe": govern_tool(wipe, gov, gov.session(principal="alice"))}, [("wipe", {})])
    assert message.status == "error" and "unknown tool 'wipe'" in message.content


def test_a_tool_registered_with_the_governor_uses_that_registration() -> None:
    @tool
    def lookup(order_id: str) -> str:
        """Look up."""
        return order_id

    gov = Governor(agent="x")
    gov.register("lookup", lambda order_id: order_id, effect="read", cost=0.1)
    session = gov.session(principal="alice")
    assert govern_tool(lookup, gov, session).invoke({"order_id": "A"}) == "A"
    assert session.traces[0].outcome["cost"] == 0.1
