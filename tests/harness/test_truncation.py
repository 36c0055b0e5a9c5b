"""Short-term memory: sliding window, summarization (a budgeted, traced model call), none, and a context limit."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from corral.harness.config import load_agent
from corral.harness.loop import run
from corral.harness.models.base import Message, ModelResponse, ToolCall, Usage, estimate_tokens
from corral.harness.runtime import Harness
from corral.harness.truncation import SUMMARY_HEADER, SUMMARY_PROMPT, sliding_window

TOOLS = '''
def fetch_page(n: int) -> str:
    """Fetch page n of a long report."""
    return f"page {n}: " + "lorem ipsum dolor sit amet " * 40
'''


class Reader:
    """A model that reads ``pages`` pages one call at a time, then answers; it answers summary requests
    with a summary. It records what it is sent."""

    provider = "test"
    id = "reader-1"

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.sent: list[tuple[str, list[Message], list, int]] = []

    def complete(self, *, system, messages, tools, max_tokens):
        self.sent.append((system, list(messages), list(tools), max_tokens))
        usage = Usage(estimate_tokens(system, messages, tools), 20)
        if system == SUMMARY_PROMPT:
            return ModelResponse(f"summary #{sum(1 for s in self.sent if s[0] == SUMMARY_PROMPT)}: read pages so far",
                                 [], usage, "end_turn", self.id)
        calls = sum(1 for s in self.sent if s[0] != SUMMARY_PROMPT) - 1
        if calls >= self.pages:
            return ModelResponse(f"read {self.pages} pages", [], usage, "end_turn", self.id)
        return ModelResponse("", [ToolCall(f"c{calls}", "fetch_page", {"n": calls}, json.dumps({"n": calls}))],
                             usage, "tool_use", self.id)


def agent(tmp_path: Path, memory: dict, *, budget: float = 5.0) -> Path:
    (tmp_path / "report_tools.py").write_text(TOOLS)
    (tmp_path / "script.yaml").write_text("[]\n")
    doc = {"name": "reader", "model": {"provider": "scripted", "script": "script.yaml", "max_tokens": 200,
                                       "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
           "tools": [{"python": "report_tools:fetch_page", "effect": "read"}], "memory": memory,
           "limits": {"max_iterations": 60}, "governance": {"budget": {"session": budget}},
           "store": f"sqlite:///{tmp_path / 'corral.db'}", "workspace": str(tmp_path / "ws")}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def read(tmp_path: Path, memory: dict, pages: int = 25, budget: float = 5.0):
    model = Reader(pages)
    harness = Harness(load_agent(agent(tmp_path, memory, budget=budget)), principal="alice", model=model)
    try:
        result = run(harness, "Read the whole report.")
        transcript = harness.governor.store.get_session(result.session)["harness"]
    finally:
        harness.close()
    return model, result, transcript


def test_a_long_session_stays_within_a_small_context_limit(tmp_path):
    limit = 2500
    model, result, state = read(tmp_path, {"window": 40, "context_tokens": limit})
    assert result.stop_reason == "end_turn" and result.answer == "read 25 pages"
    sizes = [estimate_tokens(system, messages, tools) + max_tokens for system, messages, tools, max_tokens in model.sent]
    assert max(sizes) <= limit
    whole = estimate_tokens(model.sent[-1][0], [Message.from_dict(m) for m in state["transcript"]],
                            model.sent[-1][2]) + 200
    assert whole > 3 * limit  # the stored transcript is whole; only what is sent shrank
    for _, messages, _, _ in model.sent:
        assert messages and messages[0].role != "tool"  # never a result whose call was cut off


def test_summarization_is_a_budgeted_traced_model_call(tmp_path):
    model, result, state = read(tmp_path, {"window": 8, "truncation": "summarization"}, pages=12)
    assert result.stop_reason == "end_turn"
    summaries = [s for s in model.sent if s[0] == SUMMARY_PROMPT]
    assert len(summaries) >= 2
    assert "Earlier summary: summary #1" in summaries[1][1][0].content  # each summary carries the last one
    spends = [t for t in result.traces if t["kind"] == "spend" and t["tool"] == "summary:reader-1"]
    assert len(spends) == len(summaries)
    assert all(s["outcome"]["cost"] > 0 and s["decision"] == "allowed" for s in spends)
    assert result.budget["spent"] >= sum(s["outcome"]["cost"] for s in spends)
    last_turn = [s for s in model.sent if s[0] != SUMMARY_PROMPT][-1][1]
    assert last_turn[0].content.startswith(SUMMARY_HEADER) and "summary #" in last_turn[0].content
    assert len(last_turn) <= 1 + 8
    assert state["summarized"] > 0 and len(state["transcript"]) > state["summarized"]


def test_a_summary_the_budget_refuses_is_traced_and_leaves_a_sliding_window(tmp_path):
    # room for a few turns, not for a summary's reservation (its 512 output tokens dominate)
    model, result, _ = read(tmp_path, {"window": 6, "truncation": "summarization"}, pages=5, budget=0.004)
    assert not [s for s in model.sent if s[0] == SUMMARY_PROMPT]
    spends = [t for t in result.traces if t["kind"] == "spend"]
    refused = next(i for i, t in enumerate(spends) if t["tool"] == "summary:reader-1")
    assert spends[refused]["decision"] == "blocked"
    assert spends[refused + 1]["tool"] == "model:reader-1" and spends[refused + 1]["decision"] == "allowed"
    assert max(len(messages) for _, messages, _, _ in model.sent) <= 6


def test_none_sends_everything(tmp_path):
    model, result, _ = read(tmp_path, {"window": 4, "truncation": "none"}, pages=6)
    assert result.stop_reason == "end_turn"
    assert len(model.sent[-1][1]) == 1 + 2 * 6  # the prompt, then each call and its result


def test_sliding_window_never_starts_on_an_orphan_result():
    call = ToolCall("c1", "t", {}, "{}")
    transcript = [Message("user", "go"), Message("assistant", "", [call]), Message("tool", "r", tool_call_id="c1"),
                  Message("tool", "r2", tool_call_id="c2"), Message("assistant", "ok")]
    assert [m.role for m in sliding_window(transcript, 3)] == ["assistant"]
    assert [m.role for m in sliding_window(transcript, 4)] == ["assistant", "tool", "tool", "assistant"]
    assert len(sliding_window(transcript, 40)) == 5
