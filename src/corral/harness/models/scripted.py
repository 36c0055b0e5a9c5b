"""The scripted model: a YAML list of turns, one per model call — deterministic and offline.

Turn n is played on the session's n-th model call, counted from the assistant messages already in the
transcript, so a resumed session plays the right turn. After the last turn the model ends its turn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from corral.harness.models.base import Message, ModelResponse, ToolCall, ToolSchema, Usage, estimate_tokens

_TURN_KEYS = {"text", "tool_calls", "usage"}
_CALL_KEYS = {"name", "args"}


class ScriptedModel:
    provider = "scripted"

    def __init__(self, turns: Sequence[Mapping[str, Any]], id: str = "scripted", source: str = "<script>") -> None:
        self.id = id
        self.source = source
        self.turns = [self._check(i, t) for i, t in enumerate(turns, start=1)]

    @classmethod
    def from_file(cls, path: Path) -> ScriptedModel:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the script: {exc.strerror or exc}") from None
        try:
            turns = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None
        if turns is None:
            turns = []
        if not isinstance(turns, list):
            raise ValueError(f"{path}: a script is a list of turns, got {type(turns).__name__}")
        return cls(turns, source=str(path))

    def _check(self, number: int, turn: Any) -> dict[str, Any]:
        where = f"{self.source}: turn {number}"
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where}: a turn is a mapping with text and/or tool_calls, got {turn!r}")
        unknown = set(turn) - _TURN_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "text" in turn and not isinstance(turn["text"], str):
            raise ValueError(f"{where}: text must be a string, got {turn['text']!r}")
        calls = turn.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError(f"{where}: tool_calls must be a list, got {calls!r}")
        for i, call in enumerate(calls):
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str) or set(call) - _CALL_KEYS:
                raise ValueError(f"{where}: tool_calls[{i}] must be {{name, args}}, got {call!r}")
            if "args" in call and not isinstance(call["args"], Mapping | str) and call["args"] is not None:
                raise ValueError(f"{where}: tool_calls[{i}].args must be a mapping, got {call['args']!r}")
        usage = turn.get("usage")
        if usage is not None and (not isinstance(usage, Mapping) or set(usage) - {"input", "output"}):
            raise ValueError(f"{where}: usage must be {{input, output}}, got {usage!r}")
        return dict(turn)

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse:
        number = sum(1 for m in messages if m.role == "assistant") + getattr(self, "offset", 0)
        if number >= len(self.turns):
            return ModelResponse("", [], Usage(estimate_tokens(system, messages, tools), 0), "end_turn", self.id)
        turn = self.turns[number]
        calls = []
        for i, call in enumerate(turn.get("tool_calls") or []):
            args = call.get("args")
            call_id = f"call_{number + 1}_{i + 1}"
            if isinstance(args, str):  # the script simulates a model that sent malformed JSON
                try:
                    parsed = json.loads(args)
                except ValueError as exc:
                    calls.append(ToolCall(call_id, call["name"], None, args, f"arguments are not valid JSON: {exc}"))
                    continue
                if not isinstance(parsed, dict):
                    calls.append(ToolCall(call_id, call["name"], None, args, "arguments are not a JSON object"))
                    continue
                args = parsed
            calls.append(ToolCall(call_id, call["name"], dict(args or {}), json.dumps(args or {})))
        text = turn.get("text", "")
        usage = turn.get("usage") or {}
        prompt = estimate_tokens(system, messages, tools)
        output = max(1, (len(text) + sum(len(c.raw_arguments) for c in calls)) // 4)
        return ModelResponse(
            text,
            calls,
            Usage(int(usage.get("input", prompt)), int(usage.get("output", output))),
            "tool_use" if calls else "end_turn",
            self.id,
        )
