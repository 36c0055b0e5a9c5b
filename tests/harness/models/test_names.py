"""Dotted tool names (api.get_invoice) reach providers that take only [A-Za-z0-9_-], and come back whole."""

from __future__ import annotations

from corral.harness.models.anthropic import AnthropicModel
from corral.harness.models.base import Message, ToolCall, ToolSchema
from corral.harness.models.names import ToolNames
from corral.harness.models.openai import OpenAIModel
from tests.harness.models.test_anthropic import message
from tests.harness.models.test_openai import completion, tool_call

SCHEMA = {"type": "object", "properties": {"invoice_id": {"type": "string"}}}
TOOLS = [ToolSchema("api.get_invoice", "Get one invoice", SCHEMA), ToolSchema("lookup", "Look up", SCHEMA)]
HISTORY = [Message("user", "check INV-1"),
           Message("assistant", "", [ToolCall("c1", "api.get_invoice", {"invoice_id": "INV-1"})]),
           Message("tool", '{"amount": 3}', tool_call_id="c1", name="api.get_invoice")]


def test_openai_sees_wire_names_and_the_harness_real_ones(fake_provider):
    fake_provider.reply("/v1/chat/completions", completion(
        {"content": None, "tool_calls": [tool_call("c2", "api__get_invoice", '{"invoice_id": "INV-2"}')]},
        "tool_calls"))
    model = OpenAIModel("m", base_url=f"{fake_provider.url}/v1", api_key="k", max_retries=0)
    response = model.complete(system="", messages=HISTORY, tools=TOOLS, max_tokens=50)
    body = fake_provider.requests[0].body
    assert [t["function"]["name"] for t in body["tools"]] == ["api__get_invoice", "lookup"]
    assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "api__get_invoice"
    assert response.tool_calls[0].name == "api.get_invoice"
    assert HISTORY[1].tool_calls[0].name == "api.get_invoice"  # the transcript itself is untouched


def test_anthropic_too(fake_provider):
    fake_provider.reply("/v1/messages", message([{"type": "tool_use", "id": "toolu_2", "name": "api__get_invoice",
                                                  "input": {"invoice_id": "INV-2"}}], "tool_use"))
    model = AnthropicModel("claude", base_url=fake_provider.url, api_key="k", max_retries=0)
    response = model.complete(system="", messages=HISTORY, tools=TOOLS, max_tokens=50)
    body = fake_provider.requests[0].body
    assert [t["name"] for t in body["tools"]] == ["api__get_invoice", "lookup"]
    assert body["messages"][1]["content"][0]["name"] == "api__get_invoice"
    assert response.tool_calls[0].name == "api.get_invoice"


def test_collisions_and_long_names_stay_unique_and_valid():
    tools = [ToolSchema("a.b", "", {}), ToolSchema("a__b", "", {}), ToolSchema("x" * 70 + ".y", "", {})]
    names = ToolNames(tools)
    wires = [names.wire(t.name) for t in tools]
    assert wires[1] == "a__b" and wires[0] != "a__b" and len(set(wires)) == 3
    assert all(len(w) <= 64 and w.replace("_", "").replace("-", "").isalnum() for w in wires)
    assert ToolNames([ToolSchema("plain", "", {})]).to_wire == {}
