"""The neutral interface: transcript serialisation, the token estimate, model errors."""

from __future__ import annotations

import json

from corral.harness.models.base import (
    Message,
    ModelError,
    ToolCall,
    ToolSchema,
    estimate_tokens,
    parse_arguments,
)


def test_a_transcript_survives_json():
    transcript = [
        Message("user", "Refund A1"),
        Message("assistant", "Looking.", [ToolCall("c1", "lookup", {"order_id": "A1"}, '{"order_id": "A1"}'),
                                          ToolCall("c2", "lookup", None, "{oops", "arguments are not valid JSON")]),
        Message("tool", '{"amount": 20}', tool_call_id="c1", name="lookup"),
    ]
    stored = json.loads(json.dumps([m.to_dict() for m in transcript]))
    assert [Message.from_dict(d) for d in stored] == transcript
    assert stored[0] == {"role": "user", "content": "Refund A1"}  # only what a message has
    assert Message.from_dict({"role": "assistant", "content": None}) == Message("assistant", "")


def test_parse_arguments():
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parse_arguments("  ") == ({}, None)
    assert parse_arguments("null") == (None, "arguments must be a JSON object, got NoneType")
    arguments, error = parse_arguments('{"a": ')
    assert arguments is None and error.startswith("arguments are not valid JSON: ")


def test_the_estimate_is_deterministic_and_counts_everything_sent():
    tool = ToolSchema("lookup", "Look an order up.", {"type": "object", "properties": {"id": {"type": "string"}}})
    base = [Message("user", "hi")]
    small = estimate_tokens("sys", base, [])
    assert small == estimate_tokens("sys", [Message("user", "hi")], [])
    assert estimate_tokens("sys" * 400, base, []) > small + 250  # ~4 bytes a token
    assert estimate_tokens("sys", base, [tool]) > small
    with_call = [*base, Message("assistant", "", [ToolCall("c1", "lookup", {"id": "x" * 400})])]
    assert estimate_tokens("sys", with_call, []) > small + 100
    assert estimate_tokens("", [Message("user", "注文" * 100)], []) >= 150  # not fooled by wide characters
    assert estimate_tokens("", [], []) == 1


def test_a_model_error_is_an_exception_with_its_provider_and_model():
    error = ModelError.of("openai", "gpt-4.1", "HTTP 429: slow down")
    assert str(error) == "openai model 'gpt-4.1': HTTP 429: slow down"
    assert (error.provider, error.model) == ("openai", "gpt-4.1")
    assert str(ModelError("plain")) == "plain"
