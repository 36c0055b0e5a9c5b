"""Amazon Bedrock's Converse API with ``toolConfig``, through boto3's ``bedrock-runtime`` client.

Tool calls are ``toolUse`` blocks of the assistant's turn; their results go back as ``toolResult`` blocks
of one user turn. Credentials come from the usual AWS chain (environment, profile, role); the region from
``region:``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else us-east-1. ``base_url``, when given, is
the endpoint URL (a VPC endpoint, a proxy). boto3 is imported when the model is built (missing → a
``ModelError`` that says ``pip install 'corral[bedrock]'``); the client is made on the first call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from corral.harness.models._turns import alternating, call_input, safe_id
from corral.harness.models.base import Message, ModelResponse, ToolCall, ToolSchema, Usage
from corral.harness.models.names import ToolNames
from corral.harness.models.sdk import SDKModel

DEFAULT_REGION = "us-east-1"
_EMPTY_RESULT = "(no output)"


class BedrockModel(SDKModel):
    """A model on Amazon Bedrock; ``client`` injects a ready ``bedrock-runtime`` client (tests, sessions)."""

    provider = "bedrock"
    package = "boto3"

    def __init__(
        self,
        id: str,
        *,
        region: str | None = None,
        base_url: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(id, base_url=base_url, max_retries=max_retries, timeout=timeout, client=client)
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION

    @classmethod
    def config_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        retries = config.get("max_retries")
        return {
            "region": config.get("region"),
            "base_url": config.get("base_url"),
            "max_retries": None if retries is None else int(retries),
            "timeout": config.get("timeout"),
        }

    def make_client(self, sdk: Any) -> Any:
        from botocore.config import Config

        settings: dict[str, Any] = {}
        if self._max_retries is not None:
            settings["retries"] = {"total_max_attempts": self._max_retries + 1, "mode": "standard"}
        if self._timeout is not None:
            settings["read_timeout"] = float(self._timeout)
        return sdk.client("bedrock-runtime", region_name=self.region, endpoint_url=self.base_url,
                          config=Config(**settings))

    def client_problem(self) -> str:
        return f"cannot make a bedrock-runtime client in {self.region}"

    def reason(self, exc: Exception) -> str:
        response = getattr(exc, "response", None)
        if isinstance(response, Mapping) and isinstance(response.get("Error"), Mapping):
            error = response["Error"]
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            where = f"HTTP {status} " if status else ""
            return f"{where}{error.get('Code', type(exc).__name__)}: {error.get('Message', exc)}"
        return super().reason(exc)

    # ------------------------------------------------------------------------------ the wire format

    def request(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                max_tokens: int) -> dict[str, Any]:
        """The keyword arguments of ``converse`` for this call."""
        turns = alternating(
            messages,
            text=lambda s: {"text": s},
            tool_use=lambda c: {"toolUse": {"toolUseId": safe_id(c.id), "name": c.name, "input": call_input(c)}},
            tool_result=lambda m: {"toolResult": {"toolUseId": safe_id(m.tool_call_id or ""),
                                                  "content": [{"text": m.content or _EMPTY_RESULT}]}},
            is_tool_result=lambda b: "toolResult" in b,
            with_tools=bool(tools),
            provider=self.provider,
            model=self.id,
        )
        kwargs: dict[str, Any] = {
            "modelId": self.id,
            "messages": [{"role": role, "content": blocks} for role, blocks in turns],
            "inferenceConfig": {"maxTokens": max_tokens},
        }
        if system:
            kwargs["system"] = [{"text": system}]
        if tools:
            kwargs["toolConfig"] = {"tools": [{"toolSpec": _tool_spec(t)} for t in tools]}
        return kwargs

    def parse(self, response: Mapping[str, Any]) -> ModelResponse:
        """A ``converse`` response → the neutral response. Blocks other than text and toolUse are left out."""
        message = (response.get("output") or {}).get("message") or {}
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.get("content") or ():
            if "text" in block:
                texts.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                arguments = use.get("input")
                raw = json.dumps(arguments, ensure_ascii=False, default=str)
                if isinstance(arguments, dict):
                    calls.append(ToolCall(use["toolUseId"], use["name"], dict(arguments), raw))
                else:
                    calls.append(ToolCall(use["toolUseId"], use["name"], None, raw,
                                          f"arguments must be a JSON object, got {type(arguments).__name__}"))
        usage = response.get("usage") or {}
        # cached prompt tokens are reported apart from inputTokens; all of them were sent and billed
        sent = sum(int(usage.get(k) or 0) for k in ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"))
        stop = response.get("stopReason") or ("tool_use" if calls else "end_turn")
        return ModelResponse("".join(texts), calls, Usage(sent, int(usage.get("outputTokens") or 0)), stop, self.id)

    # ----------------------------------------------------------------------------------- the call

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse:
        names = ToolNames(tools)  # Converse takes [A-Za-z0-9_-] names only: api.x goes out as api__x
        kwargs = self.request(system=system, messages=names.outbound(messages), tools=names.schemas(tools),
                              max_tokens=max_tokens)
        return names.inbound(self.parse(self.send(self.client.converse, kwargs)))


def _tool_spec(tool: ToolSchema) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:  # Converse refuses an empty description; it may be left out
        spec["description"] = tool.description
    return spec
