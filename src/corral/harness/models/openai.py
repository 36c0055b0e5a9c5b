"""OpenAI Chat Completions with function calling, through the official ``openai`` SDK.

``base_url`` points it at any compatible server (vLLM, Ollama, LM Studio, a gateway). The SDK is imported
when the model is built; a missing SDK is a ``ModelError`` that says ``pip install 'corral[openai]'``. The
client itself is made on the first call, so building a harness needs no credentials.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any
from urllib.parse import urlparse

from corral.harness.models.base import (
    Message,
    ModelResponse,
    ToolCall,
    ToolSchema,
    Usage,
    estimate_tokens,
    parse_arguments,
)
from corral.harness.models.names import ToolNames
from corral.harness.models.sdk import HTTPSDKModel

_STOP_REASONS = {"tool_calls": "tool_use", "function_call": "tool_use", "stop": "end_turn", "length": "max_tokens"}


class OpenAIModel(HTTPSDKModel):
    """A chat model behind the Chat Completions API.

    ``max_tokens_param`` is the request field that caps the answer: OpenAI's own API wants
    ``max_completion_tokens`` (its reasoning models refuse ``max_tokens``), while compatible servers are
    surest to understand ``max_tokens``; by default it is chosen from ``base_url``.
    """

    provider = "openai"
    package = "openai"
    api_name = "the OpenAI API"

    def __init__(
        self,
        id: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 2,
        timeout: float | None = None,
        max_tokens_param: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(id, base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout,
                         client=client)
        self.max_tokens_param = max_tokens_param or _max_tokens_param(base_url)

    def make_client(self, sdk: Any) -> Any:
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not self.base_url:
                raise self.error("no API key: set OPENAI_API_KEY or `api_key` under `model:`")
            key = "unused"  # a local compatible server usually needs none
        options: dict[str, Any] = {"api_key": key, "base_url": self.base_url, "max_retries": self._max_retries}
        if self._timeout is not None:
            options["timeout"] = float(self._timeout)
        return sdk.OpenAI(**options)

    # ------------------------------------------------------------------------------ the wire format

    def request(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                max_tokens: int) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for this call."""
        wire: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for m in messages:
            if m.role in ("user", "system"):
                wire.append({"role": m.role, "content": m.content})
            elif m.role == "assistant":
                entry: dict[str, Any] = {"role": "assistant", "content": m.content or None}
                if m.tool_calls:
                    entry["tool_calls"] = [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c)}}
                        for c in m.tool_calls
                    ]
                elif not m.content:
                    entry["content"] = ""
                wire.append(entry)
            elif m.role == "tool":  # one tool message per result, answering its call by id
                wire.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content})
            else:
                raise self.error(f"cannot send a message with role {m.role!r} (expected user, assistant or tool)")
        kwargs: dict[str, Any] = {"model": self.id, "messages": wire, self.max_tokens_param: max_tokens}
        if tools:
            kwargs["tools"] = [
                {"type": "function",
                 "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in tools
            ]
        return kwargs

    def parse(self, completion: Any, *, prompt_estimate: int = 0) -> ModelResponse:
        """A ``ChatCompletion`` → the neutral response. Malformed tool arguments never raise."""
        if not getattr(completion, "choices", None):
            raise self.error("the response has no choices")
        choice = completion.choices[0]
        message = choice.message
        text = message.content or getattr(message, "refusal", None) or ""
        calls = []
        for i, call in enumerate(message.tool_calls or (), start=1):
            call_id = call.id or f"call_{i}"
            function = getattr(call, "function", None)
            if function is None:  # a custom (non-function) tool call: nothing we declared
                raw = str(getattr(getattr(call, "custom", None), "input", ""))
                name = str(getattr(getattr(call, "custom", None), "name", "") or "")
                calls.append(ToolCall(call_id, name, None, raw, f"unsupported tool call type {call.type!r}"))
                continue
            raw = function.arguments or ""
            arguments, error = parse_arguments(raw)
            calls.append(ToolCall(call_id, function.name, arguments, raw, error))
        finish = choice.finish_reason or ("tool_calls" if calls else "stop")
        usage = completion.usage
        if usage is not None and usage.prompt_tokens is not None:
            counted = Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
        else:  # some compatible servers send no usage: estimate rather than settle at nothing
            written = len(text.encode("utf-8")) + sum(len(c.raw_arguments.encode("utf-8")) for c in calls)
            counted = Usage(prompt_estimate, math.ceil(written / 4))
        return ModelResponse(text, calls, counted, _STOP_REASONS.get(finish, finish), completion.model or self.id)

    # ----------------------------------------------------------------------------------- the call

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse:
        names = ToolNames(tools)  # OpenAI takes [A-Za-z0-9_-] names only: api.x goes out as api__x
        kwargs = self.request(system=system, messages=names.outbound(messages), tools=names.schemas(tools),
                              max_tokens=max_tokens)
        completion = self.send(self.client.chat.completions.create, kwargs)
        return names.inbound(self.parse(completion, prompt_estimate=estimate_tokens(system, messages, tools)))


def _arguments(call: ToolCall) -> str:
    """The model's own text when it was valid; ``{}`` for malformed arguments, which some compatible
    servers refuse to replay (the call's tool result already tells the model what was wrong)."""
    if call.arguments is None:
        return "{}"
    if call.raw_arguments.strip():
        return call.raw_arguments
    return json.dumps(call.arguments, ensure_ascii=False)


def _max_tokens_param(base_url: str | None) -> str:
    if not base_url:
        return "max_completion_tokens"
    host = urlparse(base_url).hostname or ""
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"
