"""The provider-neutral model interface: messages, tool calls, usage, and the ``Model`` protocol.

The transcript is stored in this form, so a session can switch models (or providers) mid-way without
losing its context. Each adapter maps it to its provider's wire format and back. Importing this module
imports no provider SDK: an adapter imports its SDK only when it is built, and a missing SDK is a
``ModelError`` that names the extra to install.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

MODEL_CALL: ContextVar[int | None] = ContextVar("corral_model_call", default=None)
"""The session's model-call number (0-based, counted across resumes), set by the agent loop around each
call. The scripted model plays the turn it names; without it, it counts the assistant messages it is sent."""

@dataclass(slots=True)
class ToolCall:
    """One tool call the model asked for.

    ``arguments`` is None when what the model sent was not a JSON object; ``error`` then says why and
    ``raw_arguments`` keeps the text, so the harness can feed the mistake back instead of crashing.
    """

    id: str
    name: str
    arguments: dict[str, Any] | None  # None when the model's arguments were not a JSON object
    raw_arguments: str = ""  # the text as the model sent it (for error messages)
    error: str | None = None  # why arguments is None ("arguments are not valid JSON: …")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments,
                "raw_arguments": self.raw_arguments, "error": self.error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCall:
        return cls(str(d["id"]), str(d["name"]), d.get("arguments"), d.get("raw_arguments") or "", d.get("error"))


@dataclass(slots=True)
class Message:
    """One transcript entry, provider-neutral and JSON-serialisable via ``to_dict`` / ``from_dict``."""

    role: str  # "user" | "assistant" | "tool"
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant only
    tool_call_id: str | None = None  # tool only
    name: str | None = None  # tool only: the tool's name

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
        return cls(
            str(d["role"]),
            d.get("content") or "",
            [ToolCall.from_dict(c) for c in d.get("tool_calls") or ()],
            d.get("tool_call_id"),
            d.get("name"),
        )


@dataclass(slots=True)
class ToolSchema:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class ModelResponse:
    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    stop_reason: str  # "end_turn" | "tool_use" | "max_tokens" | the provider's own otherwise
    model: str


class ModelError(Exception):
    """A provider failure; the message names the provider, the model and the cause.

    ``provider`` and ``model`` are also attributes, for telemetry and for callers that branch on them.
    """

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model

    @classmethod
    def of(cls, provider: str, model: str, cause: str) -> ModelError:
        return cls(f"{provider} model {model!r}: {cause}", provider=provider, model=model)

    @classmethod
    def missing_sdk(cls, provider: str, model: str, package: str) -> ModelError:
        return cls.of(provider, model, f"the {package!r} package is not installed; "
                                       f"install it with: pip install 'corral[{provider}]'")


class Model(Protocol):
    provider: str
    id: str

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse: ...


def parse_arguments(raw: str) -> tuple[dict[str, Any] | None, str | None]:
    """A model's argument text → ``(arguments, None)``, or ``(None, why)`` when it is not a JSON object.

    Empty text means "no arguments": some OpenAI-compatible servers send ``""`` for a call without any.
    """
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return None, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _size(text: str) -> int:
    # UTF-8 bytes, not characters: four bytes a token is close for English and errs on the safe
    # (larger) side for scripts whose characters are tokens of their own.
    return len(text.encode("utf-8"))


def estimate_tokens(system: str, messages: list[Message], tools: list[ToolSchema]) -> int:
    """A deterministic, cheap estimate of the prompt's tokens, used to reserve budget before a call.

    About four UTF-8 bytes a token over everything sent — system prompt, every message with its tool calls
    and results, every tool's schema — plus a few tokens of framing per message and per tool.
    """
    size = _size(system)
    framing = 0
    for m in messages:
        framing += 4
        size += _size(m.content) + _size(m.tool_call_id or "") + _size(m.name or "")
        for c in m.tool_calls:
            framing += 4
            size += _size(c.id) + _size(c.name)
            size += _size(_json(c.arguments) if c.arguments is not None else c.raw_arguments)
    for t in tools:
        framing += 8
        size += _size(t.name) + _size(t.description) + _size(_json(t.parameters))
    return max(1, math.ceil(size / 4) + framing)
