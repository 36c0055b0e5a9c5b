"""The provider-neutral model interface: messages, tool calls, usage, and the ``Model`` protocol.

The transcript is stored in this form, so a session can switch models (or providers) mid-way without
losing its context. Importing this module imports no provider SDK.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | None  # None when the model's arguments were not a JSON object
    raw_arguments: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "raw_arguments": self.raw_arguments,
                "error": self.error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCall:
        return cls(d["id"], d["name"], d.get("arguments"), d.get("raw_arguments", ""), d.get("error"))


@dataclass(slots=True)
class Message:
    role: str  # "user" | "assistant" | "tool"
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        return cls(d["role"], d.get("content", ""), [ToolCall.from_dict(c) for c in d.get("tool_calls") or ()],
                   d.get("tool_call_id"), d.get("name"))


@dataclass(slots=True)
class ToolSchema:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class ModelResponse:
    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    stop_reason: str
    model: str


class ModelError(Exception):
    """A provider failure; the message names the provider, the model and the cause."""


class Model(Protocol):
    provider: str
    id: str

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse: ...


def estimate_tokens(system: str, messages: list[Message], tools: list[ToolSchema]) -> int:
    """A deterministic, cheap estimate of the prompt's tokens (about four characters a token)."""
    chars = len(system)
    for m in messages:
        chars += len(m.content) + 8
        for c in m.tool_calls:
            chars += len(c.name) + len(c.raw_arguments or "") + (len(repr(c.arguments)) if c.arguments else 0)
    for t in tools:
        chars += len(t.name) + len(t.description) + len(repr(t.parameters))
    return max(1, math.ceil(chars / 4))


def make_model(config: Mapping[str, Any], *, base_dir: Path) -> Model:
    """The ``model:`` mapping of an agent file → a model. SDKs are imported only for their provider."""
    provider = config.get("provider", "scripted")
    if provider == "scripted":
        from corral.harness.models.scripted import ScriptedModel

        script = config.get("script")
        if not script:
            raise ValueError("the scripted model needs `script: path/to/script.yaml`")
        path = Path(script)
        return ScriptedModel.from_file(path if path.is_absolute() else base_dir / path)
    if provider == "openai":
        from corral.harness.models.openai import OpenAIModel

        return OpenAIModel.from_config(config)
    if provider == "anthropic":
        from corral.harness.models.anthropic import AnthropicModel

        return AnthropicModel.from_config(config)
    if provider == "bedrock":
        from corral.harness.models.bedrock import BedrockModel

        return BedrockModel.from_config(config)
    raise ValueError(f"unknown model provider {provider!r}; expected scripted, openai, anthropic or bedrock")
