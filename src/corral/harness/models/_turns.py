"""Shaping a neutral transcript for the block-based APIs (Anthropic Messages, Bedrock Converse).

Both want strictly alternating user/assistant turns that start with the user, made of non-empty content
blocks, with tool results as blocks of a *user* turn that come before any text in it. The neutral
transcript has one message per tool result and may start mid-conversation (the harness sends a window),
so consecutive same-role entries are merged here and a placeholder user turn is put first when needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from corral.harness.models.base import Message, ModelError, ToolCall

OMITTED = "(earlier messages are omitted)"

Block = dict[str, Any]


def safe_id(call_id: str) -> str:
    """Both providers accept tool-call ids of ``[A-Za-z0-9_-]`` only; another provider's may not be."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", call_id) or "call"


def call_input(call: ToolCall) -> dict[str, Any]:
    """The arguments object to replay; a call whose arguments were malformed is replayed as ``{}`` (its
    tool result already tells the model what went wrong)."""
    return dict(call.arguments) if call.arguments is not None else {}


def call_as_text(call: ToolCall) -> str:
    args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments is not None else call.raw_arguments
    return f"[called {call.name} with {args}]"


def result_as_text(message: Message) -> str:
    return f"[result of {message.name or 'a tool'} ({message.tool_call_id})]: {message.content}"


def alternating(
    messages: list[Message],
    *,
    text: Callable[[str], Block],
    tool_use: Callable[[ToolCall], Block],
    tool_result: Callable[[Message], Block],
    is_tool_result: Callable[[Block], bool],
    with_tools: bool,
    provider: str,
    model: str,
) -> list[tuple[str, list[Block]]]:
    """The transcript as ``[(role, blocks)]``: merged, alternating, user first, no empty turn.

    Without tools on the request, both APIs refuse tool blocks in the history, so tool calls and results
    are rendered as text instead (the model still sees what happened).
    """
    turns: list[tuple[str, list[Block]]] = []
    for m in messages:
        blocks: list[Block] = []
        if m.role in ("user", "system"):
            role = "user"
            if m.content:
                blocks.append(text(m.content))
        elif m.role == "assistant":
            role = "assistant"
            if m.content:
                blocks.append(text(m.content))
            for call in m.tool_calls:
                blocks.append(tool_use(call) if with_tools else text(call_as_text(call)))
        elif m.role == "tool":
            role = "user"
            blocks.append(tool_result(m) if with_tools and m.tool_call_id else text(result_as_text(m)))
        else:
            raise ModelError.of(provider, model, f"cannot send a message with role {m.role!r} "
                                                 "(expected user, assistant or tool)")
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    for role, blocks in turns:
        if role == "user":  # tool results first, text after (stable)
            blocks.sort(key=lambda b: not is_tool_result(b))
    if turns and turns[0][0] != "user":
        turns.insert(0, ("user", [text(OMITTED)]))
    return turns
