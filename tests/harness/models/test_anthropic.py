"""The Anthropic adapter against a local server that speaks the Messages API, through the real SDK."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.harness.models._turns import OMITTED
from corral.harness.models.anthropic import AnthropicModel
from corral.harness.models.base import Message, ModelError, ToolCall, ToolSchema
from corral.harness.models.providers import make_model

LOOKUP = ToolSchema("lookup_order", "Look an order up by id.",
                    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})
REFUND = ToolSchema("refund", "Refund an order.",
                    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})


def message(content: list[dict], stop_reason: str, **usage: int) -> dict:
    return {
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-20260514",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 91, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard", **usage},
    }


@pytest.fixture
def model(fake_provider) -> AnthropicModel:
    return AnthropicModel("claude-sonnet-5", base_url=fake_provider.url, api_key="test-key", max_retries=0)


def test_a_tool_call_round_trip_groups_tool_results_in_one_user_turn(fake_provider, model):
    fake_provider.reply("/v1/messages", message([
        {"type": "text", "text": "Both found. Refunding A1."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "refund", "input": {"order_id": "A1"}},
    ], "tool_use"))
    transcript = [
        Message("user", "Refund A1 and A2."),
        Message("assistant", "Looking both up.", [
            ToolCall("toolu_01", "lookup_order", {"order_id": "A1"}, '{"order_id": "A1"}'),
            ToolCall("toolu_02", "lookup_order", {"order_id": "A2"}, '{"order_id": "A2"}'),
        ]),
        Message("tool", '{"amount": 20}', tool_call_id="toolu_01", name="lookup_order"),
        Message("tool", '{"amount": 35}', tool_call_id="toolu_02", name="lookup_order"),
    ]

    response = model.complete(system="You handle refunds.", messages=transcript, tools=[LOOKUP, REFUND],
                              max_tokens=512)

    [sent] = fake_provider.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["authorization"] == "Bearer test-key"  # how this SDK sends an api_key
    assert sent.headers["anthropic-version"]
    assert sent.body["model"] == "claude-sonnet-5"
    assert sent.body["max_tokens"] == 512
    assert sent.body["system"] == "You handle refunds."
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Refund A1 and A2."}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking both up."},
            {"type": "tool_use", "id": "toolu_01", "name": "lookup_order", "input": {"order_id": "A1"}},
            {"type": "tool_use", "id": "toolu_02", "name": "lookup_order", "input": {"order_id": "A2"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": '{"amount": 20}'},
            {"type": "tool_result", "tool_use_id": "toolu_02", "content": '{"amount": 35}'},
        ]},
    ]
    assert sent.body["tools"] == [
        {"name": "lookup_order", "description": "Look an order up by id.", "input_schema": LOOKUP.parameters},
        {"name": "refund", "description": "Refund an order.", "input_schema": REFUND.parameters},
    ]

    assert response.text == "Both found. Refunding A1."
    assert response.tool_calls == [ToolCall("toolu_01A09q90qw90lq917835lq9", "refund", {"order_id": "A1"},
                                            '{"order_id": "A1"}')]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (472, 91)
    assert response.stop_reason == "tool_use"
    assert response.model == "claude-sonnet-5-20260514"


def test_an_answer_and_cached_tokens(fake_provider, model):
    fake_provider.reply("/v1/messages", message([{"type": "text", "text": "Done."}], "end_turn",
                                                input_tokens=10, cache_read_input_tokens=400,
                                                cache_creation_input_tokens=50, output_tokens=3))
    response = model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=20)

    body = fake_provider.requests[0].body
    assert "system" not in body and "tools" not in body
    assert (response.text, response.tool_calls, response.stop_reason) == ("Done.", [], "end_turn")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (460, 3)


def test_max_tokens_stop_reason_passes_through(fake_provider, model):
    fake_provider.reply("/v1/messages", message([{"type": "text", "text": "It was the best"}], "max_tokens"))
    response = model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=4)
    assert response.stop_reason == "max_tokens"


def test_a_tool_use_whose_input_is_not_an_object_is_an_error_not_an_exception(fake_provider, model):
    fake_provider.reply("/v1/messages", message([
        {"type": "tool_use", "id": "toolu_bad", "name": "lookup_order", "input": "A1"},
    ], "tool_use"))
    response = model.complete(system="", messages=[Message("user", "hi")], tools=[LOOKUP], max_tokens=20)
    [call] = response.tool_calls
    assert call.arguments is None
    assert call.raw_arguments == '"A1"'
    assert call.error == "arguments must be a JSON object, got str"


def test_a_transcript_from_another_provider_is_made_acceptable(model):
    """A window that starts on the assistant, an empty turn, a text after tool results, foreign ids."""
    transcript = [
        Message("assistant", "", [ToolCall("call:1/a", "lookup_order", None, '{"order_id": ', "bad JSON")]),
        Message("tool", '{"error": "bad JSON"}', tool_call_id="call:1/a", name="lookup_order"),
        Message("user", "Try again."),
        Message("assistant", ""),
        Message("user", "Please."),
    ]
    body = model.request(system="s", messages=transcript, tools=[LOOKUP], max_tokens=10)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": OMITTED}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1_a", "name": "lookup_order", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1_a", "content": '{"error": "bad JSON"}'},
            {"type": "text", "text": "Try again."},
            {"type": "text", "text": "Please."},
        ]},
    ]


def test_without_tools_the_history_of_tool_calls_is_sent_as_text(model):
    transcript = [Message("user", "hi"),
                  Message("assistant", "", [ToolCall("t1", "lookup_order", {"order_id": "A1"})]),
                  Message("tool", "found", tool_call_id="t1", name="lookup_order")]
    body = model.request(system="", messages=transcript, tools=[], max_tokens=10)
    assert "tools" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": '[called lookup_order with {"order_id": "A1"}]'}]},
        {"role": "user", "content": [{"type": "text", "text": "[result of lookup_order (t1)]: found"}]},
    ]


def test_a_server_error_is_a_model_error_naming_provider_model_and_cause(fake_provider, model):
    fake_provider.reply("/v1/messages", {"type": "error", "error": {"type": "api_error",
                                                                     "message": "Internal server error"},
                                         "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}, status=500)
    with pytest.raises(ModelError) as caught:
        model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=5)
    assert str(caught.value) == "anthropic model 'claude-sonnet-5': HTTP 500: api_error: Internal server error"
    assert len(fake_provider.requests) == 1


def test_make_model_builds_it_from_the_agent_config(fake_provider, monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    fake_provider.reply("/v1/messages", message([{"type": "text", "text": "hello"}], "end_turn"))
    model = make_model({"provider": "anthropic", "id": "claude-haiku-4-5", "base_url": fake_provider.url,
                        "max_retries": 0}, base_dir=tmp_path)
    assert isinstance(model, AnthropicModel)
    assert model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=9).text == "hello"
    assert fake_provider.requests[0].headers["authorization"] == "Bearer env-key"


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ModelError, match=r"pip install 'corral\[anthropic\]'"):
        make_model({"provider": "anthropic", "id": "claude-haiku-4-5"}, base_dir=tmp_path)
