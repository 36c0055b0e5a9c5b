"""Anthropic's Messages API with tools, through the official ``anthropic`` SDK.

Tool calls are ``tool_use`` blocks of the assistant's turn; their results go back as ``tool_result``
blocks of one user turn. The SDK is imported when the model is built (a missing SDK is a ``ModelError``
that says ``pip install 'corral[anthropic]'``); the client is made on the first call.
"""

from __future__ import annotations

import json
import os
from typing import Any

from corral.harness.models._turns import alternating, call_input, safe_id
from corral.harness.models.base import Message, ModelResponse, ToolCall, ToolSchema, Usage
from corral.harness.models.names import ToolNames
from corral.harness.models.sdk import HTTPSDKModel, error_body


class AnthropicModel(HTTPSDKModel):
    """A Claude model behind the Messages API; ``base_url`` for a proxy or a compatible gateway."""

    provider = "anthropic"
    package = "anthropic"
    api_name = "the Anthropic API"

    def make_client(self, sdk: Any) -> Any:
        options: dict[str, Any] = {"max_retries": self._max_retries}
        key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
        if key:
            options["api_key"] = key
        if self.base_url:
            options["base_url"] = self.base_url
        if self._timeout is not None:
            options["timeout"] = float(self._timeout)
        return sdk.Anthropic(**options)

    def client_problem(self) -> str:
        return "cannot make a client (set ANTHROPIC_API_KEY or `api_key` under `model:`)"

    def status_reason(self, exc: Any) -> str:
        error = error_body(exc)
        if error is not None and error.get("type"):
            return f"{error['type']}: {error['message']}"
        return super().status_reason(exc)

    # ------------------------------------------------------------------------------ the wire format

    def request(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                max_tokens: int) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for this call."""
        turns = alternating(
            messages,
            text=lambda s: {"type": "text", "text": s},
            tool_use=lambda c: {"type": "tool_use", "id": safe_id(c.id), "name": c.name, "input": call_input(c)},
            tool_result=_tool_result,
            is_tool_result=lambda b: b.get("type") == "tool_result",
            with_tools=bool(tools),
            provider=self.provider,
            model=self.id,
        )
        kwargs: dict[str, Any] = {
            "model": self.id,
            "max_tokens": max_tokens,
            "messages": [{"role": role, "content": blocks} for role, blocks in turns],
        }
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                               for t in tools]
        return kwargs

    def parse(self, message: Any) -> ModelResponse:
        """A ``Message`` → the neutral response. Blocks other than text and tool_use are left out."""
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content or ():
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind == "tool_use":
                raw = json.dumps(block.input, ensure_ascii=False, default=str)
                if isinstance(block.input, dict):
                    calls.append(ToolCall(block.id, block.name, dict(block.input), raw))
                else:
                    calls.append(ToolCall(block.id, block.name, None, raw, "arguments must be a JSON object, "
                                                                          f"got {type(block.input).__name__}"))
        usage = message.usage
        # cached prompt tokens are reported apart from input_tokens; all of them were sent and billed
        sent = (usage.input_tokens or 0) + (getattr(usage, "cache_creation_input_tokens", None) or 0) + (
            getattr(usage, "cache_read_input_tokens", None) or 0)
        stop = message.stop_reason or ("tool_use" if calls else "end_turn")
        return ModelResponse("".join(texts), calls, Usage(int(sent), int(usage.output_tokens or 0)), stop,
                             message.model or self.id)

    # ----------------------------------------------------------------------------------- the call

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse:
        names = ToolNames(tools)  # Anthropic takes [A-Za-z0-9_-] names only: api.x goes out as api__x
        kwargs = self.request(system=system, messages=names.outbound(messages), tools=names.schemas(tools),
                              max_tokens=max_tokens)
        return names.inbound(self.parse(self.send(self.client.messages.create, kwargs)))


def _tool_result(m: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": safe_id(m.tool_call_id or "")}
    if m.content:
        block["content"] = m.content
    return block
