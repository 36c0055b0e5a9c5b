"""Google's Gemini API (``generateContent``) with function calling, through the official ``google-genai`` SDK.

The neutral transcript maps to Gemini's ``contents``: turns of role ``user`` and ``model`` made of parts;
a tool call is a ``functionCall`` part of the model's turn and its result a ``functionResponse`` part of
the next user turn (Gemini wants an object there: the result's JSON object, else ``{"result": …}``).
``base_url`` points the SDK at any endpoint that speaks the same API (a gateway, a local server).

The SDK is imported when the model is built (a missing SDK is a ``ModelError`` that says
``pip install 'corral[gemini]'``); the client is made on the first call, with ``GEMINI_API_KEY`` or
``GOOGLE_API_KEY`` unless ``api_key`` is given. Automatic function calling is always off: corral runs
every call itself, through governance.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from corral.harness.models._turns import alternating, call_input
from corral.harness.models.base import Message, ModelResponse, ToolCall, ToolSchema, Usage
from corral.harness.models.sdk import SDKModel

_STOP_REASONS = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens"}
_OUR_IDS = "corral_"  # ids we made for calls Gemini sent without one; never sent back as Gemini's own


class GeminiModel(SDKModel):
    """A Gemini model behind ``models.generateContent``."""

    provider = "gemini"
    package = "google.genai"

    def __init__(self, id: str, *, api_key: str | None = None, api_version: str | None = None,
                 **options: Any) -> None:
        self._api_key = api_key
        self.api_version = api_version
        super().__init__(id, **options)

    @classmethod
    def config_options(cls, config: Any) -> dict[str, Any]:
        return {**super().config_options(config), "api_key": config.get("api_key")}

    def make_client(self, sdk: Any) -> Any:
        from google.genai import types

        key = self._api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key:
            if not self.base_url:
                raise self.error("no API key: set GEMINI_API_KEY or `api_key` under `model:`")
            key = "unused"  # a local endpoint usually needs none
        http: dict[str, Any] = {"retry_options": types.HttpRetryOptions(attempts=1 + int(self._max_retries or 0))}
        if self.base_url:
            http["base_url"] = self.base_url
        http["api_version"] = self.api_version or "v1beta"  # the Gemini API's own (the SDK's default for
        # a custom base_url would be v1)
        if self._timeout is not None:
            http["timeout"] = int(float(self._timeout) * 1000)  # milliseconds
        return sdk.Client(api_key=key, http_options=types.HttpOptions(**http))

    def reason(self, exc: Exception) -> str:
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            status = f" {exc.status}" if getattr(exc, "status", None) else ""
            return f"HTTP {exc.code}{status}: {exc.message or exc}"
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            return f"cannot reach {self.base_url or 'the Gemini API'}: {type(exc).__name__}: {exc}"
        return super().reason(exc)

    # ------------------------------------------------------------------------------ the wire format

    def request(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                max_tokens: int) -> dict[str, Any]:
        """The keyword arguments of ``models.generate_content`` for this call (plain JSON)."""
        turns = alternating(
            messages,
            text=lambda s: {"text": s},
            tool_use=_function_call,
            tool_result=_function_response,
            is_tool_result=lambda p: "functionResponse" in p,
            with_tools=bool(tools),
            provider=self.provider,
            model=self.id,
        )
        config: dict[str, Any] = {"max_output_tokens": max_tokens,
                                  "automatic_function_calling": {"disable": True}}
        if system:
            config["system_instruction"] = system
        if tools:
            config["tools"] = [{"function_declarations": [
                {"name": t.name, "description": t.description, "parameters_json_schema": t.parameters}
                for t in tools]}]
        return {"model": self.id, "config": config,
                "contents": [{"role": "model" if role == "assistant" else "user", "parts": parts}
                             for role, parts in turns]}

    def parse(self, response: Any) -> ModelResponse:
        """A ``GenerateContentResponse`` → the neutral response; thoughts are left out."""
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            feedback = getattr(response, "prompt_feedback", None)
            why = getattr(feedback, "block_reason", None)
            raise self.error(f"the response has no candidates{f' (prompt blocked: {why})' if why else ''}")
        candidate = candidates[0]
        texts: list[str] = []
        calls: list[ToolCall] = []
        content = getattr(candidate, "content", None)
        for part in getattr(content, "parts", None) or ():
            if getattr(part, "thought", None):
                continue
            call = getattr(part, "function_call", None)
            if call is not None:
                args = call.args
                raw = json.dumps(args, ensure_ascii=False) if args is not None else ""
                arguments, error = (dict(args), None) if isinstance(args, dict) else (
                    ({}, None) if args is None else (None, f"arguments must be a JSON object, got {args!r}"))
                calls.append(ToolCall(call.id or f"{_OUR_IDS}{uuid.uuid4().hex[:16]}", call.name or "",
                                      arguments, raw, error))
            elif getattr(part, "text", None):
                texts.append(part.text)
        finish = getattr(candidate, "finish_reason", None)
        finish = getattr(finish, "value", finish) or "STOP"
        stop = "tool_use" if calls and finish == "STOP" else _STOP_REASONS.get(finish, str(finish).lower())
        usage = getattr(response, "usage_metadata", None)
        counted = Usage(int(getattr(usage, "prompt_token_count", 0) or 0),
                        int(getattr(usage, "candidates_token_count", 0) or 0)
                        + int(getattr(usage, "thoughts_token_count", 0) or 0))
        return ModelResponse("".join(texts), calls, counted, stop, getattr(response, "model_version", None) or self.id)

    # ----------------------------------------------------------------------------------- the call

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse:
        kwargs = self.request(system=system, messages=messages, tools=tools, max_tokens=max_tokens)
        client = self.client
        return self.parse(self.send(client.models.generate_content, kwargs))


def _function_call(call: ToolCall) -> dict[str, Any]:
    body: dict[str, Any] = {"name": call.name, "args": call_input(call)}
    if call.id and not call.id.startswith(_OUR_IDS):
        body["id"] = call.id
    return {"functionCall": body}


def _function_response(message: Message) -> dict[str, Any]:
    try:
        value = json.loads(message.content)
    except ValueError:
        value = message.content
    body: dict[str, Any] = {"name": message.name or "tool",
                            "response": value if isinstance(value, dict) else {"result": value}}
    if message.tool_call_id and not message.tool_call_id.startswith(_OUR_IDS):
        body["id"] = message.tool_call_id
    return {"functionResponse": body}
