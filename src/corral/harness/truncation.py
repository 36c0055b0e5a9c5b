"""Short-term memory: which part of the transcript the model sees on each turn.

``memory: {truncation: sliding_window | summarization | none, window: 40, context_tokens: N}``

- ``sliding_window`` (the default) sends the last ``window`` messages.
- ``summarization`` sends a summary of everything older, then the last messages. When the messages not
  yet summarised pass ``window``, the older half of them is summarised — the previous summary included —
  by a call to the agent's own model. That call is a model call like any other: its cost is reserved
  before and settled after in the session's budget (a ``spend`` trace labelled ``summary:MODEL``) and it
  has its own ``chat`` span; a call the budget refuses leaves the transcript as a sliding window.
- ``none`` sends everything.

With ``context_tokens`` (the model's context limit), every mode also drops the oldest messages until
the prompt's estimate plus ``max_tokens`` fits — a long session never sends more than the model takes.

Nothing is lost: the stored transcript is whole; only what is sent shrinks. A window never starts with a
tool result whose call was cut off, nor between a call and its results.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from corral.harness.models.base import Message, ToolSchema, estimate_tokens

SUMMARY_PROMPT = (
    "You keep the running memory of an agent's conversation. Summarise the conversation below in at most "
    "200 words: the user's requests, facts found (ids, amounts, names), decisions made, tool calls that "
    "ran or were refused, and what is still open. Write plain sentences; do not address the user."
)
SUMMARY_MAX_TOKENS = 512
SUMMARY_HEADER = "Summary of the earlier conversation (older messages are not shown):"


def _clean_start(messages: list[Message]) -> list[Message]:
    """Drop leading tool results whose call is not in ``messages``."""
    start = 0
    while start < len(messages) and messages[start].role == "tool":
        start += 1
    return messages[start:]


def _cut_point(transcript: list[Message], keep: int) -> int:
    """An index that keeps about the last ``keep`` messages and splits no call from its results."""
    cut = max(0, len(transcript) - keep)
    while 0 < cut < len(transcript) and transcript[cut].role == "tool":
        cut += 1
    return cut


def sliding_window(transcript: list[Message], size: int) -> list[Message]:
    if len(transcript) <= size:
        return list(transcript)
    return _clean_start(transcript[-size:])


def fit(system: str, messages: list[Message], tools: list[ToolSchema], max_tokens: int,
        limit: int | None) -> list[Message]:
    """Drop the oldest messages (a leading summary stays) until the prompt fits in ``limit`` tokens."""
    if limit is None:
        return messages
    messages = list(messages)
    pinned = messages[:1] if messages and messages[0].content.startswith(SUMMARY_HEADER) else []
    rest = messages[len(pinned):]
    while rest and estimate_tokens(system, pinned + rest, tools) + max_tokens > limit:
        rest = _clean_start(rest[1:])
    if not rest and pinned and estimate_tokens(system, pinned, tools) + max_tokens > limit:
        pinned = []
    return pinned + rest


def render(messages: list[Message]) -> str:
    """The messages as plain text for the summariser."""
    lines = []
    for m in messages:
        if m.role == "tool":
            lines.append(f"[result of {m.name or 'a tool'}]: {m.content[:2000]}")
            continue
        if m.content:
            lines.append(f"{m.role}: {m.content[:4000]}")
        for call in m.tool_calls:
            args = call.arguments if call.arguments is not None else call.raw_arguments
            lines.append(f"[{m.role} called {call.name} with {args}]")
    return "\n".join(lines)


Summarise = Callable[[str], str | None]
"""``summarise(text)`` → the summary, or None when the call was refused (the budget); raises on failure."""


def context_window(state: dict[str, Any], transcript: list[Message], config: Any, summarise: Summarise,
                   system: str, tools: list[ToolSchema], max_tokens: int) -> list[Message]:
    """The messages to send this turn; ``state`` keeps ``summary`` and ``summarized`` (how many
    messages it covers) across turns and resumes."""
    mode = config.truncation
    if mode == "none":
        window = list(transcript)
    elif mode == "sliding_window":
        window = sliding_window(transcript, config.window)
    else:
        covered = int(state.get("summarized") or 0)
        if len(transcript) - covered > config.window:
            cut = _cut_point(transcript, max(1, config.window // 2))
            if cut > covered:
                previous = state.get("summary") or ""
                text = (f"Earlier summary: {previous}\n\n" if previous else "") + render(transcript[covered:cut])
                summary = summarise(text)
                if summary is not None:
                    state["summary"], state["summarized"] = summary.strip(), cut
                    covered = cut
        recent = _clean_start(transcript[covered:])
        if len(recent) > config.window:  # the summary call was refused: fall back to a sliding window
            recent = sliding_window(recent, config.window)
        window = ([Message("user", f"{SUMMARY_HEADER}\n{state['summary']}")] if state.get("summary") else []) + recent
    return fit(system, window, tools, max_tokens, config.context_tokens)


def summary_cost(prompt_tokens: int, max_tokens: int, price_in: Decimal, price_out: Decimal) -> Decimal:
    return (Decimal(prompt_tokens) * price_in + Decimal(max_tokens) * price_out) / Decimal(1_000_000)


def summarizer(harness: Any, ctx: Any, model: Any) -> Summarise:
    """``summarise`` for one turn: a budgeted, traced call to ``model`` (the loop's model this turn)."""

    def summarise(text: str) -> str | None:
        from corral.errors import Blocked
        from corral.harness.models.base import MODEL_CALL
        from corral.harness.telemetry import record_usage

        messages = [Message("user", text)]
        prompt_tokens = estimate_tokens(SUMMARY_PROMPT, messages, [])
        price_in, price_out = harness.model_price(model)
        label = f"summary:{model.id}"
        try:
            reservation, estimate = harness.governor.reserve_spend(
                ctx.session, label, summary_cost(prompt_tokens, SUMMARY_MAX_TOKENS, price_in, price_out))
        except Blocked:
            return None  # the budget said no: the window slides instead
        number = ctx.state.get("model_calls", 0)
        ctx.state["model_calls"] = number + 1
        with harness.telemetry.chat(model.provider, model.id, SUMMARY_MAX_TOKENS) as span:
            span.set_attribute("corral.purpose", "summary")
            turn = MODEL_CALL.set(number)
            try:
                response = model.complete(system=SUMMARY_PROMPT, messages=messages, tools=[],
                                          max_tokens=SUMMARY_MAX_TOKENS)
            except Exception as exc:
                harness.governor.settle_spend(ctx.session, label, reservation, estimate, 0, error=exc)
                span.record_exception(exc)
                raise
            finally:
                MODEL_CALL.reset(turn)
            record_usage(span, response.usage.input_tokens, response.usage.output_tokens, response.model,
                         response.stop_reason)
        actual = summary_cost(response.usage.input_tokens, response.usage.output_tokens, price_in, price_out)
        harness.governor.settle_spend(ctx.session, label, reservation, estimate, actual,
                                      {"model": response.model, "purpose": "summary",
                                       "input_tokens": response.usage.input_tokens,
                                       "output_tokens": response.usage.output_tokens})
        return response.text or None

    return summarise
