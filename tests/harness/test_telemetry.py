"""Spans per the OpenTelemetry GenAI conventions, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corral.harness.config import load_agent
from corral.harness.loop import run
from corral.harness.runtime import Harness
from corral.harness.telemetry import Telemetry
from tests.harness.test_loop import call, make_agent


def test_invoke_agent_chat_and_execute_tool_spans(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    script = [{"tool_calls": [call("lookup", order_id="A1"), call("refund", order_id="A1", amount=5)]},
              {"text": "done"}]
    harness = Harness(load_agent(make_agent(tmp_path, script, rules="FLAG lookup\n")), principal="alice",
                      tracer=provider.get_tracer("test"))
    result = run(harness, "go")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    agent = spans["invoke_agent shop"]
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.conversation.id"] == result.session
    assert agent.attributes["corral.stop_reason"] == "end_turn"
    chat = spans["chat scripted"]
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    lookup = spans["execute_tool lookup"]
    assert lookup.attributes["gen_ai.tool.name"] == "lookup"
    assert lookup.attributes["corral.decision"] == "flagged"
    assert lookup.attributes["corral.phase"] == "explore"
    assert lookup.attributes["corral.rule"] == ("policy.rules:1",)
    assert spans["execute_tool refund"].attributes["corral.decision"] == "blocked"
    assert lookup.parent.span_id == agent.context.span_id


def test_no_exporter_means_no_spans_and_no_cost():
    telemetry = Telemetry("x", exporter="none")
    assert telemetry.tracer is None
    with telemetry.chat("scripted", "m", 10) as span:
        span.set_attribute("a", 1)  # a no-op span
