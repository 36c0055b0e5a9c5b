"""The Bedrock adapter: boto3's real bedrock-runtime client with botocore's Stubber in front of it.

The Stubber checks the request against the service model (so a malformed Converse call fails here) and
the canned response against the output shape; nothing is sent anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from corral.harness.models._turns import OMITTED
from corral.harness.models.base import Message, ModelError, ToolCall, ToolSchema
from corral.harness.models.bedrock import BedrockModel
from corral.harness.models.providers import make_model

MODEL = "anthropic.claude-sonnet-5-v1:0"
LOOKUP = ToolSchema("lookup_order", "Look an order up by id.",
                    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})


@pytest.fixture
def client():
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDTEST",
                        aws_secret_access_key="secret")


def converse_response(content: list[dict], stop_reason: str, inputs: int = 120, outputs: int = 40, **usage) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs, **usage},
        "metrics": {"latencyMs": 812},
    }


def test_a_tool_call_round_trip(client):
    model = BedrockModel(MODEL, client=client)
    transcript = [
        Message("user", "Refund A1 and A2."),
        Message("assistant", "Looking both up.", [
            ToolCall("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "lookup_order", {"order_id": "A1"}, '{"order_id": "A1"}'),
            ToolCall("tooluse_2", "lookup_order", {"order_id": "A2"}, '{"order_id": "A2"}'),
        ]),
        Message("tool", '{"amount": 20}', tool_call_id="tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", name="lookup_order"),
        Message("tool", "", tool_call_id="tooluse_2", name="lookup_order"),
    ]
    expected = {
        "modelId": MODEL,
        "system": [{"text": "You handle refunds."}],
        "inferenceConfig": {"maxTokens": 300},
        "toolConfig": {"tools": [{"toolSpec": {"name": "lookup_order", "description": "Look an order up by id.",
                                               "inputSchema": {"json": LOOKUP.parameters}}}]},
        "messages": [
            {"role": "user", "content": [{"text": "Refund A1 and A2."}]},
            {"role": "assistant", "content": [
                {"text": "Looking both up."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "lookup_order",
                             "input": {"order_id": "A1"}}},
                {"toolUse": {"toolUseId": "tooluse_2", "name": "lookup_order", "input": {"order_id": "A2"}}},
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "content": [{"text": '{"amount": 20}'}]}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "(no output)"}]}},
            ]},
        ],
    }
    reply = converse_response([
        {"text": "Refunding A1."},
        {"toolUse": {"toolUseId": "tooluse_abc", "name": "refund", "input": {"order_id": "A1", "amount": 20}}},
    ], "tool_use", cacheReadInputTokens=30)

    with Stubber(client) as stub:
        stub.add_response("converse", reply, expected)
        response = model.complete(system="You handle refunds.", messages=transcript, tools=[LOOKUP], max_tokens=300)
        stub.assert_no_pending_responses()

    assert response.text == "Refunding A1."
    assert response.tool_calls == [ToolCall("tooluse_abc", "refund", {"order_id": "A1", "amount": 20},
                                            '{"order_id": "A1", "amount": 20}')]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (150, 40)
    assert response.stop_reason == "tool_use"
    assert response.model == MODEL


def test_an_answer_without_tools_or_system(client):
    model = BedrockModel(MODEL, client=client)
    transcript = [Message("assistant", "Earlier answer."), Message("user", "Thanks!")]
    expected = {"modelId": MODEL, "inferenceConfig": {"maxTokens": 16}, "messages": [
        {"role": "user", "content": [{"text": OMITTED}]},
        {"role": "assistant", "content": [{"text": "Earlier answer."}]},
        {"role": "user", "content": [{"text": "Thanks!"}]},
    ]}
    with Stubber(client) as stub:
        stub.add_response("converse", converse_response([{"text": "You're welcome."}], "end_turn", 9, 4), expected)
        response = model.complete(system="", messages=transcript, tools=[], max_tokens=16)
    assert (response.text, response.tool_calls, response.stop_reason) == ("You're welcome.", [], "end_turn")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 4)


def test_a_tool_without_a_description_leaves_the_field_out(client):
    model = BedrockModel(MODEL, client=client)
    ping = ToolSchema("ping", "", {"type": "object", "properties": {}})
    expected = {"modelId": MODEL, "inferenceConfig": {"maxTokens": 8},
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "toolConfig": {"tools": [{"toolSpec": {"name": "ping", "inputSchema": {"json": ping.parameters}}}]}}
    with Stubber(client) as stub:
        stub.add_response("converse", converse_response([{"text": "pong"}], "end_turn"), expected)
        assert model.complete(system="", messages=[Message("user", "hi")], tools=[ping], max_tokens=8).text == "pong"


def test_a_tool_use_whose_input_is_not_an_object_is_an_error_not_an_exception(client):
    model = BedrockModel(MODEL, client=client)
    with Stubber(client) as stub:
        stub.add_response("converse", converse_response(
            [{"toolUse": {"toolUseId": "tooluse_1", "name": "lookup_order", "input": ["A1"]}}], "tool_use"))
        response = model.complete(system="", messages=[Message("user", "hi")], tools=[LOOKUP], max_tokens=16)
    [call] = response.tool_calls
    assert (call.arguments, call.raw_arguments) == (None, '["A1"]')
    assert call.error == "arguments must be a JSON object, got list"


def test_a_service_error_is_a_model_error_naming_provider_model_and_cause(client):
    model = BedrockModel(MODEL, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("converse", service_error_code="ThrottlingException",
                              service_message="Too many requests, please wait before trying again.",
                              http_status_code=429)
        with pytest.raises(ModelError) as caught:
            model.complete(system="", messages=[Message("user", "hi")], tools=[], max_tokens=16)
    assert str(caught.value) == (f"bedrock model {MODEL!r}: HTTP 429 ThrottlingException: "
                                 "Too many requests, please wait before trying again.")


def test_region_from_config_else_the_environment_else_us_east_1(monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert BedrockModel(MODEL).region == "us-east-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert BedrockModel(MODEL).region == "eu-west-3"

    model = make_model({"provider": "bedrock", "id": MODEL, "region": "ap-southeast-2",
                        "base_url": "https://vpce-0123.bedrock-runtime.ap-southeast-2.vpce.amazonaws.com",
                        "max_retries": 0}, base_dir=tmp_path)
    assert isinstance(model, BedrockModel)
    assert model.region == "ap-southeast-2"
    built = model.client  # made offline: building a client sends nothing
    assert built.meta.region_name == "ap-southeast-2"
    assert built.meta.endpoint_url == "https://vpce-0123.bedrock-runtime.ap-southeast-2.vpce.amazonaws.com"
    assert built.meta.config.retries["total_max_attempts"] == 1


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ModelError, match=r"'boto3' package is not installed.*pip install 'corral\[bedrock\]'"):
        make_model({"provider": "bedrock", "id": MODEL}, base_dir=tmp_path)
