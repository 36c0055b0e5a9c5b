"""Anthropic's Messages API with tools, through the official ``anthropic`` SDK.

Tool calls are ``tool_use`` blocks of the assistant's turn; their results go back as ``tool_result``
blocks of one user turn. The SDK is imported when the model is built (a missing SDK is a ``ModelError``
that says ``pip install 'corral[anthropic]'``); the client is made on the first call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from corral.harness.models._turns import alternating, call_input, safe_id
from corral.harness.models.base import Message, ModelError, ModelResponse, ToolCall, ToolSchema, Usage


def _sdk(model: str) -> Any:
    try:
        import anthropic
    except ImportError:
        raise ModelError.missing_sdk("anthropic", model, "anthropic") from None
    return anthropic


class AnthropicModel:
    """A Claude model behind the Messages API; ``base_url`` for a proxy or a compatible gateway."""

    provider = "anthropic"

    def __init__(
        self,
        id: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 2,
        timeout: float | None = None,
        client: Any = None,
    ) -> None:
        self.id = id
        self.base_url = base_url
        self._api_key = api_key
        self._max_retries = max_retries
        self._timeout = timeout
        self._client = client
        if client is None:
            _sdk(id)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AnthropicModel:
        return cls(
            str(config["id"]),
            base_url=config.get("base_url"),
            api_key=config.get("api_key"),
            max_retries=int(config.get("max_retries", 2)),
            timeout=config.get("timeout"),
        )

    def _error(self, cause: str) -> ModelError:
        return ModelError.of(self.provider, self.id, cause)

    @property
    def client(self) -> Any:
        if self._client is None:
            anthropic = _sdk(self.id)
            options: dict[str, Any] = {"max_retries": self._max_retries}
            key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
            if key:
                options["api_key"] = key
            if self.base_url:
                options["base_url"] = self.base_url
            if self._timeout is not None:
                options["timeout"] = float(self._timeout)
            try:
                self._client = anthropic.Anthropic(**options)
            except Exception as exc:
                raise self._error(f"cannot make a client (set ANTHROPIC_API_KEY or `api_key` under `model:`): "
                                  f"{exc}") from exc
        return self._client

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
        kwargs = self.request(system=system, messages=messages, tools=tools, max_tokens=max_tokens)
        client = self.client
        anthropic = _sdk(self.id)
        try:
            message = client.messages.create(**kwargs)
        except anthropic.APIStatusError as exc:
            raise self._error(f"HTTP {exc.status_code}: {_reason(exc)}") from exc
        except anthropic.APIConnectionError as exc:
            raise self._error(f"cannot reach {self.base_url or 'the Anthropic API'}: {exc}") from exc
        except Exception as exc:
            raise self._error(f"{type(exc).__name__}: {exc}") from exc
        return self.parse(message)


def _tool_result(m: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": safe_id(m.tool_call_id or "")}
    if m.content:
        block["content"] = m.content
    return block


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            kind = f"{error['type']}: " if error.get("type") else ""
            return f"{kind}{error['message']}"
    return str(getattr(exc, "message", None) or exc)
