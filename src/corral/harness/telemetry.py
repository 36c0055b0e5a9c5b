"""OpenTelemetry spans for the agent loop, per the GenAI semantic conventions.

``invoke_agent`` wraps a run, ``chat`` each model call, ``execute_tool`` each tool call; governance adds
``corral.decision``, ``corral.phase`` and ``corral.rule``. Without the ``otel`` extra (or with the
exporter ``none``) every span is a no-op, so the loop never depends on telemetry being there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record_exception(self, exc: BaseException) -> None:
        return None


_NO_SPAN = _NoSpan()


class Telemetry:
    """Spans for one agent. ``tracer`` may be given (tests pass one wired to an in-memory exporter)."""

    def __init__(self, agent: str, *, exporter: str | None = None, endpoint: str | None = None,
                 tracer: Any = None) -> None:
        self.agent = agent
        self.tracer = tracer
        if self.tracer is None:
            self.tracer = _make_tracer(exporter, endpoint)

    @contextlib.contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
        if self.tracer is None:
            yield _NO_SPAN
            return
        with self.tracer.start_as_current_span(name, attributes=_clean(attributes)) as span:
            yield span

    def invoke_agent(self, session: str, principal: str | None) -> contextlib.AbstractContextManager[Any]:
        return self._span(f"invoke_agent {self.agent}", {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.agent,
            "gen_ai.conversation.id": session,
            "corral.principal": principal,
        })

    def chat(self, provider: str, model: str, max_tokens: int) -> contextlib.AbstractContextManager[Any]:
        return self._span(f"chat {model}", {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
        })

    def execute_tool(self, tool: str, call_id: str, phase: str) -> contextlib.AbstractContextManager[Any]:
        return self._span(f"execute_tool {tool}", {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "corral.phase": phase,
        })


def record_usage(span: Any, input_tokens: int, output_tokens: int, model: str, stop_reason: str) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    span.set_attribute("gen_ai.response.model", model)
    span.set_attribute("gen_ai.response.finish_reasons", [stop_reason])


def record_decision(span: Any, trace: Any) -> None:
    """The governance verdict on a tool call: decision, phase, and the rules that matched."""
    if trace is None:
        return
    span.set_attribute("corral.decision", trace.decision or "")
    span.set_attribute("corral.phase", trace.phase or "")
    span.set_attribute("corral.trace_id", trace.id)
    rules = [c.get("source", "") for c in (trace.checks or ()) if c.get("check") == "rule" and c.get("matched")]
    if rules:
        span.set_attribute("corral.rule", rules)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def _make_tracer(exporter: str | None, endpoint: str | None) -> Any:
    """Console or OTLP from the config, else from the standard environment variables; else none."""
    exporter = exporter or os.environ.get("OTEL_TRACES_EXPORTER")
    if exporter in (None, "", "none"):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        return None
    service = os.environ.get("OTEL_SERVICE_NAME", "corral")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "console":
        import sys

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            return None
        kwargs = {"endpoint": endpoint} if endpoint else {}
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(**kwargs)))
    else:
        return None
    return provider.get_tracer("corral")
