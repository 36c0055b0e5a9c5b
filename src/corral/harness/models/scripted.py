"""The scripted model: a YAML list of turns, one per model call — deterministic and offline.

Turn n is played on the session's n-th model call, counted from the assistant messages already in the
transcript it is sent, so a resumed session plays the right turn. After the last turn the model ends its
turn with no text and no tool calls. A turn::

    - text: "Let me look the order up."          # optional
      tool_calls:                                # optional; a turn has text, tool_calls or both
        - {name: lookup_order, args: {order_id: A1}}
        - {name: issue_refund, args: '{"order_id": "A1", '}   # a string: the model's raw JSON, here malformed
      usage: {input: 120, output: 30}            # optional; else estimated
      stop_reason: max_tokens                    # optional; else tool_use or end_turn
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from corral.harness.models.base import (
    MODEL_CALL,
    Message,
    ModelResponse,
    ToolCall,
    ToolSchema,
    Usage,
    estimate_tokens,
    parse_arguments,
)

_TURN_KEYS = ("text", "tool_calls", "usage", "stop_reason")
_CALL_KEYS = ("name", "args")
_USAGE_KEYS = ("input", "output")


class ScriptedModel:
    """Plays a script of turns; ``ScriptedModel.from_file(path)`` reads one from YAML.

    The script is validated when the model is built, so a bad script fails before any session starts,
    with the file, the turn number (1-based) and the bad key or value in the message.
    """

    provider = "scripted"

    def __init__(self, turns: Sequence[Any], id: str = "scripted", *, source: str = "<script>") -> None:
        self.id = id
        self.source = source
        if isinstance(turns, str | bytes | Mapping) or not isinstance(turns, Sequence):
            raise ValueError(f"{source}: a script is a list of turns, got {type(turns).__name__}")
        self.turns = [self._check(number, turn) for number, turn in enumerate(turns, start=1)]

    @classmethod
    def from_file(cls, path: Path | str) -> ScriptedModel:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the script: {exc.strerror or exc}") from None
        try:
            turns = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None
        return cls([] if turns is None else turns, source=str(path))

    # ------------------------------------------------------------------------------ validation

    def _check(self, number: int, turn: Any) -> dict[str, Any]:
        where = f"{self.source}: turn {number}"
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where}: a turn is a mapping with text and/or tool_calls, got {turn!r}")
        for key in turn:
            if key not in _TURN_KEYS:
                raise ValueError(f"{where}: unknown key {key!r} (expected {', '.join(_TURN_KEYS)})")
        if "text" not in turn and "tool_calls" not in turn:
            raise ValueError(f"{where}: a turn needs text, tool_calls or both")
        text = turn.get("text", "")
        if not isinstance(text, str):
            raise ValueError(f"{where}: text must be a string, got {text!r}")
        calls = turn.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError(f"{where}: tool_calls must be a list of {{name, args}}, got {calls!r}")
        checked = [self._check_call(f"{where}: tool_calls[{i}]", call) for i, call in enumerate(calls)]
        usage = turn.get("usage")
        if usage is not None:
            if not isinstance(usage, Mapping):
                raise ValueError(f"{where}: usage must be a mapping {{input, output}}, got {usage!r}")
            for key, value in usage.items():
                if key not in _USAGE_KEYS:
                    raise ValueError(f"{where}: usage: unknown key {key!r} (expected input, output)")
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{where}: usage.{key} must be a whole number ≥ 0, got {value!r}")
        stop = turn.get("stop_reason")
        if stop is not None and (not isinstance(stop, str) or not stop):
            raise ValueError(f"{where}: stop_reason must be a non-empty string, got {stop!r}")
        return {"text": text, "tool_calls": checked, "usage": dict(usage or {}), "stop_reason": stop}

    @staticmethod
    def _check_call(where: str, call: Any) -> dict[str, Any]:
        if not isinstance(call, Mapping):
            raise ValueError(f"{where}: a tool call is a mapping {{name, args}}, got {call!r}")
        for key in call:
            if key not in _CALL_KEYS:
                raise ValueError(f"{where}: unknown key {key!r} (expected name, args)")
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: name must be a tool's name, got {name!r}")
        args = call.get("args")
        if args is None:
            return {"name": name, "args": {}}
        if isinstance(args, str):  # the model's raw argument text, possibly malformed on purpose
            return {"name": name, "args": args}
        if not isinstance(args, Mapping):
            raise ValueError(f"{where}: args must be a mapping (or a string of raw JSON), got {args!r}")
        try:
            json.dumps(args, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: args must be JSON data ({exc}); quote dates and other YAML-only "
                             f"values, got {args!r}") from None
        return {"name": name, "args": dict(args)}

    # ------------------------------------------------------------------------------------ play

    def complete(self, *, system: str, messages: list[Message], tools: list[ToolSchema],
                 max_tokens: int) -> ModelResponse:
        index = MODEL_CALL.get()
        if index is None:
            index = sum(1 for m in messages if m.role == "assistant")
        prompt = estimate_tokens(system, messages, tools)
        if index >= len(self.turns):
            return ModelResponse("", [], Usage(prompt, 0), "end_turn", self.id)
        turn = self.turns[index]
        calls = [self._call(index + 1, i, c) for i, c in enumerate(turn["tool_calls"], start=1)]
        text = turn["text"]
        written = len(text.encode("utf-8")) + sum(len(c.raw_arguments.encode("utf-8")) for c in calls)
        usage = Usage(turn["usage"].get("input", prompt), turn["usage"].get("output", math.ceil(written / 4)))
        stop = turn["stop_reason"] or ("tool_use" if calls else "end_turn")
        return ModelResponse(text, calls, usage, stop, self.id)

    @staticmethod
    def _call(turn: int, i: int, call: Mapping[str, Any]) -> ToolCall:
        call_id = f"call_{turn}_{i}"
        args = call["args"]
        if isinstance(args, str):
            parsed, error = parse_arguments(args)
            return ToolCall(call_id, call["name"], parsed, args, error)
        return ToolCall(call_id, call["name"], json.loads(json.dumps(args)), json.dumps(args))
