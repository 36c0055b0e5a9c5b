"""Tool names as a provider accepts them, and back.

corral's tool names may carry dots (``api.get_invoice``, ``github.create_issue``); OpenAI, Anthropic and
Bedrock accept only ``[A-Za-z0-9_-]{1,64}``. For one call, ``ToolNames(tools)`` gives each such name a
wire name (dots become ``__``, anything else ``_``, cut to 64, made unique) and turns the answer's names
back, so the transcript, the traces and the rules only ever see the real ones. When every name is
already valid, nothing is copied.
"""

from __future__ import annotations

import re
from dataclasses import replace

from corral.harness.models.base import Message, ModelResponse, ToolSchema

_VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolNames:
    def __init__(self, tools: list[ToolSchema]) -> None:
        self.to_wire: dict[str, str] = {}
        taken = {t.name for t in tools if _VALID.match(t.name)}
        for tool in tools:
            if _VALID.match(tool.name):
                continue
            base = re.sub(r"[^A-Za-z0-9_-]", "_", tool.name.replace(".", "__"))[:64] or "tool"
            wire, n = base, 1
            while wire in taken:
                n += 1
                wire = f"{base[:60]}_{n}"
            taken.add(wire)
            self.to_wire[tool.name] = wire
        self.to_real = {w: r for r, w in self.to_wire.items()}

    def wire(self, name: str) -> str:
        return self.to_wire.get(name, name)

    def schemas(self, tools: list[ToolSchema]) -> list[ToolSchema]:
        if not self.to_wire:
            return tools
        return [ToolSchema(self.wire(t.name), t.description, t.parameters) for t in tools]

    def outbound(self, messages: list[Message]) -> list[Message]:
        """The history with the calls' and results' tool names as the provider knows them."""
        if not self.to_wire:
            return messages
        out = []
        for m in messages:
            if m.tool_calls or (m.name and m.name in self.to_wire):
                m = Message(m.role, m.content, [replace(c, name=self.wire(c.name)) for c in m.tool_calls],
                            m.tool_call_id, self.wire(m.name) if m.name else m.name)
            out.append(m)
        return out

    def inbound(self, response: ModelResponse) -> ModelResponse:
        """The answer with real tool names."""
        if not self.to_real or not response.tool_calls:
            return response
        calls = [replace(c, name=self.to_real.get(c.name, c.name)) for c in response.tool_calls]
        return ModelResponse(response.text, calls, response.usage, response.stop_reason, response.model)
