"""The Gemini adapter against a local server that speaks the Gemini API (generateContent), through the real
google-genai SDK: function calls, function responses, errors, and a switch to Gemini mid-session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from corral.harness.config import load_agent
from corral.harness.loop import run
from corral.harness.models.base import Message, ModelError, ToolCall, ToolSchema
from corral.harness.models.gemini import GeminiModel
from corral.harness.models.providers import make_model
from corral.harness.runtime import Harness

PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
LOOKUP = ToolSchema("lookup_order", "Look an order up by id.",
                    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"],
                     "additionalProperties": False})


def answer(parts: list[dict], finish: str = "STOP", prompt: int = 61, out: int = 14) -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out,
                              "totalTokenCount": prompt + out},
            "modelVersion": "gemini-2.5-flash-001", "responseId": "resp-1"}


@pytest.fixture
def model(fake_provider) -> GeminiModel:
    return GeminiModel("gemini-2.5-flash", base_url=fake_provider.url, api_key="test-key", max_retries=0)


def test_a_function_call_round_trip(fake_provider, model):
    fake_provider.reply(PATH, answer([{"functionCall": {"id": "fc-2", "name": "lookup_order",
                                                        "args": {"order_id": "A2"}}}]))
    transcript = [
        Message("user", "Refund A1 and A2."),
        Message("assistant", "Looking A1 up.", [ToolCall("fc-1", "lookup_order", {"order_id": "A1"})]),
        Message("tool", '{"order": "A1", "amount": 20}', tool_call_id="fc-1", name="lookup_order"),
        Message("tool", "plain text result", tool_call_id="fc-9", name="lookup_order"),
    ]
    response = model.complete(system="You handle refunds.", messages=transcript, tools=[LOOKUP], max_tokens=256)

    [sent] = fake_provider.requests
    assert sent.path == PATH and sent.headers["x-goog-api-key"] == "test-key"
    assert sent.body["systemInstruction"]["parts"] == [{"text": "You handle refunds."}]
    assert sent.body["generationConfig"]["maxOutputTokens"] == 256
    assert sent.body["contents"] == [
        {"role": "user", "parts": [{"text": "Refund A1 and A2."}]},
        {"role": "model", "parts": [{"text": "Looking A1 up."},
                                    {"functionCall": {"id": "fc-1", "name": "lookup_order",
                                                      "args": {"order_id": "A1"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "fc-1", "name": "lookup_order", "response": {"order": "A1", "amount": 20}}},
            {"functionResponse": {"id": "fc-9", "name": "lookup_order",
                                  "response": {"result": "plain text result"}}}]},
    ]
    [declaration] = sent.body["tools"][0]["functionDeclarations"]
    # the SDK writes this field in proto-JSON's snake_case spelling, which the API reads as well
    schema = declaration.pop("parametersJsonSchema", None) or declaration.pop("parameters_json_schema")
    assert schema == LOOKUP.parameters
    assert declaration == {"name": "lookup_order", "description": "Look an order up by id."}
    assert response.tool_calls == [ToolCall("fc-2", "lookup_order", {"order_id": "A2"}, '{"order_id": "A2"}')]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (61, 14)
    assert response.stop_reason == "tool_use" and response.model == "gemini-2.5-flash-001"


def test_calls_without_ids_get_ours_and_are_sent_back_without_them(fake_provider, model):
    fake_provider.reply(PATH, answer([{"text": "Checking."}, {"functionCall": {"name": "lookup_order",
                                                                             "args": {"order_id": "A1"}}}]))
    first = model.complete(system="", messages=[Message("user", "hi")], tools=[LOOKUP], max_tokens=50)
    [made] = first.tool_calls
    assert made.id.startswith("corral_") and first.text == "Checking."
    fake_provider.reply(PATH, answer([{"text": "Done."}], finish="MAX_TOKENS"))
    second = model.complete(system="", messages=[Message("user", "hi"), Message("assistant", "", [made]),
                                                 Message("tool", '{"ok": true}', tool_call_id=made.id,
                                                         name="lookup_order")], tools=[LOOKUP], max_tokens=50)
    parts = fake_provider.requests[1].body["contents"]
    assert parts[1]["parts"] == [{"functionCall": {"name": "lookup_order", "args": {"order_id": "A1"}}}]
    assert parts[2]["parts"] == [{"functionResponse": {"name": "lookup_order", "response": {"ok": True}}}]
    assert (second.text, second.stop_reason) == ("Done.", "max_tokens")


def test_thoughts_are_left_out_and_a_blocked_prompt_is_a_model_error(fake_provider, model):
    fake_provider.reply(PATH, answer([{"text": "thinking...", "thought": True}, {"text": "Answer."}]))
    assert model.complete(system="", messages=[Message("user", "q")], tools=[], max_tokens=9).text == "Answer."
    fake_provider.reply(PATH, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}})
    with pytest.raises(ModelError, match=r"no candidates \(prompt blocked: .*SAFETY"):
        model.complete(system="", messages=[Message("user", "q")], tools=[], max_tokens=9)


def test_an_api_error_names_provider_model_status_and_message(fake_provider, model):
    fake_provider.reply(PATH, {"error": {"code": 400, "message": "Function name is invalid.",
                                         "status": "INVALID_ARGUMENT"}}, status=400)
    with pytest.raises(ModelError) as caught:
        model.complete(system="", messages=[Message("user", "q")], tools=[LOOKUP], max_tokens=9)
    assert str(caught.value) == ("gemini model 'gemini-2.5-flash': HTTP 400 INVALID_ARGUMENT: "
                                 "Function name is invalid.")
    assert len(fake_provider.requests) == 1


def test_an_unreachable_endpoint_is_a_model_error():
    model = GeminiModel("gemini-2.5-flash", base_url="http://127.0.0.1:9", api_key="k", max_retries=0, timeout=5)
    with pytest.raises(ModelError, match=r"gemini model 'gemini-2.5-flash': cannot reach http://127.0.0.1:9"):
        model.complete(system="", messages=[Message("user", "q")], tools=[], max_tokens=9)


def test_no_key_for_google_itself_and_a_missing_sdk(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ModelError, match="no API key: set GEMINI_API_KEY"):
        GeminiModel("gemini-2.5-flash").complete(system="", messages=[Message("user", "q")], tools=[], max_tokens=9)
    monkeypatch.setitem(sys.modules, "google.genai", None)
    with pytest.raises(ModelError, match=r"pip install 'corral\[gemini\]'"):
        make_model({"provider": "gemini", "id": "gemini-2.5-flash"}, base_dir=tmp_path)


def test_an_agent_switches_to_gemini_mid_session_with_its_tools(fake_provider, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", "env-key")
    (tmp_path / "shop.py").write_text('def lookup_order(order_id: str) -> dict:\n    """Look an order up."""\n'
                                      '    return {"order_id": order_id, "total": 120}\n')
    (tmp_path / "script.yaml").write_text(yaml.safe_dump([{"text": "Hello Ada."}]))
    base = {"name": "shop", "tools": [{"python": "shop:lookup_order", "effect": "read"}],
            "store": f"sqlite:///{tmp_path / 'c.db'}"}
    scripted = tmp_path / "scripted.yaml"
    scripted.write_text(yaml.safe_dump({**base, "model": {"provider": "scripted", "script": "script.yaml"}}))
    gemini = tmp_path / "gemini.yaml"
    gemini.write_text(yaml.safe_dump({**base, "model": {"provider": "gemini", "id": "gemini-2.5-flash",
                                                        "base_url": fake_provider.url}}))
    first = run(Harness(load_agent(scripted), principal="ada"), "My name is Ada.")
    fake_provider.reply(PATH, answer([{"functionCall": {"name": "lookup_order", "args": {"order_id": "A1"}}}]))
    fake_provider.reply(PATH, answer([{"text": "Ada, order A1 totals 120."}]))
    second = run(Harness(load_agent(gemini), principal="ada"), "What is A1's total?", session_id=first.session)
    assert second.stop_reason == "end_turn" and second.answer == "Ada, order A1 totals 120."
    one, two = (r.body for r in fake_provider.requests)
    assert [p["text"] for c in one["contents"] for p in c["parts"]] == [
        "My name is Ada.", "Hello Ada.", "What is A1's total?"]  # the scripted turns, kept
    assert two["contents"][-1]["parts"] == [{"functionResponse": {"name": "lookup_order",
                                                                  "response": {"order_id": "A1", "total": 120}}}]
    assert fake_provider.requests[0].headers["x-goog-api-key"] == "env-key"
    [lookup] = [t for t in second.traces if t["kind"] == "call" and t["tool"] == "lookup_order"]
    assert lookup["decision"] == "allowed"
