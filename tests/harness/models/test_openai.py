"""The OpenAI adapter against a local server that speaks Chat Completions, through the real SDK."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from corral.harness.models.base import Message, ModelError, ToolCall, ToolSchema
from corral.harness.models.openai import OpenAIModel
from corral.harness.models.providers import make_model

LOOKUP = ToolSchema("lookup_order", "Look an order up by id.",
                    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})


def completion(message: dict, finish_reason: str, *, usage: dict | None = None) -> dict:
    body = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4.1-mini-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                     "logprobs": None, "finish_reason": finish_reason}],
        "service_tier": "default",
        "system_fingerprint": "fp_b376dfbbd5",
    }
    if usage is not False:
        body["usage"] = usage or {
            "prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
    return body


def tool_call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.fixture
def model(fake_provider) -> OpenAIModel:
    return OpenAIModel("gpt-4.1-mini", base_url=f"{fake_provider.url}/v1", api_key="test-key", max_retries=0)


def test_a_tool_call_round_trip(fake_provider, model):
    fake_provider.reply("/v1/chat/completions", completion(
        {"content": None, "tool_calls": [tool_call("call_Xy1", "lookup_order", '{"order_id": "A2"}')]}, "tool_calls"))
    transcript = [
        Message("user", "Refund order A1 and A2."),
        Message("assistant", "Looking A1 up.", [ToolCall("call_Ab9", "lookup_order", {"order_id": "A1"},
                                                          '{"order_id": "A1"}')]),
        Message("tool", '{"order": "A1", "amount": 20}', tool_call_id="call_Ab9", name="lookup_order"),
    ]

    response = model.complete(system="You handle refunds.", messages=transcript, tools=[LOOKUP], max_tokens=256)

    [sent] = fake_provider.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.body["model"] == "gpt-4.1-mini"
    assert sent.body["max_tokens"] == 256  # a compatible server: the classic field
    assert sent.body["messages"] == [
        {"role": "system", "content": "You handle refunds."},
        {"role": "user", "content": "Refund order A1 and A2."},
        {"role": "assistant", "content": "Looking A1 up.", "tool_calls": [
            {"id": "call_Ab9", "type": "function",
             "function": {"name": "lookup_order", "arguments": '{"order_id": "A1"}'}}]},
        {"role": "tool", "tool_call_id": "call_Ab9", "content": '{"order": "A1", "amount": 20}'},
    ]
    assert sent.body["tools"] == [{"type": "function", "function": {
        "name": "lookup_order", "description": "Look an order up by id.", "parameters": LOOKUP.parameters}}]

    assert response.text == ""
    assert response.tool_calls == [ToolCall("call_Xy1", "lookup_order", {"order_id": "A2"}, '{"order_id": "A2"}')]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (82, 17)
    assert response.stop_reason == "tool_use"
    assert response.model == "gpt-4.1-mini-2025-04-14"


def test_each_tool_result_is_its_own_tool_message(fake_provider, model):
    fake_provider.reply("/v1/chat/completions", completion({"content": "Both refunded."}, "stop"))
    calls = [ToolCall("c1", "refund", {"order_id": "A1"}, '{"order_id":"A1"}'),
             ToolCall("c2", "refund", {"order_id": "A2"}, "")]
    transcript = [Message("user", "go"), Message("assistant", "", calls),
                  Message("tool", "ok 1", tool_call_id="c1", name="refund"),
                  Message("tool", "ok 2", tool_call_id="c2", name="refund")]

    response = model.complete(system="", messages=transcript, tools=[], max_tokens=50)

    body = fake_provider.requests[0].body
    assert "tools" not in body  # never an empty tools list
    assert body["messages"][0] == {"role": "user", "content": "go"}  # no system message when there is none
    assert body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "refund", "arguments": '{"order_id":"A1"}'}},
        {"id": "c2", "type": "function", "function": {"name": "refund", "arguments": '{"order_id": "A2"}'}}]}
    assert body["messages"][2:] == [{"role": "tool", "tool_call_id": "c1", "content": "ok 1"},
                                    {"role": "tool", "tool_call_id": "c2", "content": "ok 2"}]
    assert response.text == "Both refunded."
    assert response.tool_calls == []
    assert response.stop_reason == "end_turn"


@pytest.mark.parametrize(("finish", "expected"), [("stop", "end_turn"), ("length", "max_tokens"),
                                                  ("tool_calls", "tool_use"), ("content_filter", "content_filter")])
def test_finish_reasons_map_to_neutral_stop_reasons(fake_provider, model, finish, expected):
    fake_provider.reply("/v1/chat/completions", completion({"content": "partial"}, finish))
    response = model.complete(system="s", messages=[Message("user", "hi")], tools=[], max_tokens=5)
    assert response.stop_reason == expected


def test_malformed_arguments_come_back_as_an_error_never_an_exception(fake_provider, model):
    fake_provider.reply("/v1/chat/completions", completion({"content": None, "tool_calls": [
        tool_call("call_1", "lookup_order", '{"order_id": "A1"'),
        tool_call("call_2", "lookup_order", '["A1"]'),
        tool_call("call_3", "list_orders", ""),
    ]}, "tool_calls"))

    response = model.complete(system="s", messages=[Message("user", "hi")], tools=[LOOKUP], max_tokens=64)

    bad, not_object, empty = response.tool_calls
    assert bad.arguments is None
    assert bad.raw_arguments == '{"order_id": "A1"'
    assert bad.error.startswith("arguments are not valid JSON:")
    assert not_object.arguments is None
    assert not_object.error == "arguments must be a JSON object, got list"
    assert (empty.arguments, empty.error) == ({}, None)  # no arguments at all is an empty object

    # replayed later, a malformed call is sent as {} (its tool result carries the error)
    fake_provider.reply("/v1/chat/completions", completion({"content": "ok"}, "stop"))
    transcript = [Message("user", "hi"), Message("assistant", "", [bad]),
                  Message("tool", '{"error": "bad JSON"}', tool_call_id="call_1", name="lookup_order")]
    model.complete(system="s", messages=transcript, tools=[LOOKUP], max_tokens=64)
    replayed = fake_provider.requests[1].body["messages"][2]["tool_calls"][0]
    assert replayed["function"]["arguments"] == "{}"


def test_a_server_error_is_a_model_error_naming_provider_model_and_cause(fake_provider, model):
    fake_provider.reply("/v1/chat/completions", {"error": {"message": "The server had an error while processing "
                                                           "your request.", "type": "server_error",
                                                           "param": None, "code": None}}, status=500)
    with pytest.raises(ModelError) as caught:
        model.complete(system="s", messages=[Message("user", "hi")], tools=[], max_tokens=5)
    message = str(caught.value)
    assert "openai" in message and "gpt-4.1-mini" in message
    assert "HTTP 500" in message and "The server had an error" in message
    assert (caught.value.provider, caught.value.model) == ("openai", "gpt-4.1-mini")
    assert len(fake_provider.requests) == 1  # max_retries=0: asked once


def test_an_unreachable_server_is_a_model_error():
    model = OpenAIModel("m", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=5)
    with pytest.raises(ModelError, match=r"openai model 'm': cannot reach http://127.0.0.1:9/v1"):
        model.complete(system="s", messages=[Message("user", "hi")], tools=[], max_tokens=5)


def test_a_server_without_usage_is_estimated_not_free(fake_provider, model):
    fake_provider.reply("/v1/chat/completions", completion({"content": "x" * 40}, "stop", usage=False))
    response = model.complete(system="s" * 400, messages=[Message("user", "hi")], tools=[], max_tokens=5)
    assert response.usage.input_tokens >= 100
    assert response.usage.output_tokens == 10


def test_make_model_reads_the_agent_config_and_the_key_from_the_environment(fake_provider, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    fake_provider.reply("/v1/chat/completions", completion({"content": "hello"}, "stop"))
    model = make_model({"provider": "openai", "id": "local-llama", "base_url": f"{fake_provider.url}/v1",
                        "max_tokens": 100, "price": {"input_per_mtok": 1.0}, "max_retries": 0}, base_dir=tmp_path)

    assert isinstance(model, OpenAIModel)
    assert (model.provider, model.id) == ("openai", "local-llama")
    assert model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=9).text == "hello"
    assert fake_provider.requests[0].headers["authorization"] == "Bearer env-key"


def test_openai_itself_gets_max_completion_tokens():
    assert OpenAIModel("gpt-4.1", api_key="k").max_tokens_param == "max_completion_tokens"
    assert OpenAIModel("gpt-4.1", base_url="https://api.openai.com/v1", api_key="k").max_tokens_param == \
        "max_completion_tokens"
    assert OpenAIModel("llama", base_url="http://localhost:11434/v1").max_tokens_param == "max_tokens"
    body = OpenAIModel("o3", api_key="k").request(system="", messages=[Message("user", "hi")], tools=[], max_tokens=7)
    assert body["max_completion_tokens"] == 7 and "max_tokens" not in body


def test_no_key_for_openai_itself_is_a_model_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAIModel("gpt-4.1")  # building needs no key: only calling does
    with pytest.raises(ModelError, match="no API key: set OPENAI_API_KEY"):
        model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=5)


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ModelError, match=r"pip install 'corral\[openai\]'"):
        make_model({"provider": "openai", "id": "gpt-4.1"}, base_dir=tmp_path)


def test_the_request_body_is_plain_json():
    body = OpenAIModel("m", api_key="k").request(
        system="s", messages=[Message("user", "hi"), Message("assistant", "")], tools=[LOOKUP], max_tokens=3)
    assert json.loads(json.dumps(body)) == body
    assert body["messages"][-1] == {"role": "assistant", "content": ""}
