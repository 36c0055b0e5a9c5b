"""The shared conformance scenarios (tests/integrations/conformance_scenarios.py) through the harness:
the model asks for each call, the agent loop governs it, and the model is shown the refusal."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from conformance_scenarios import (
    ALLOWED,
    BLOCKED,
    PENDING,
    PRINCIPAL,
    SCENARIOS,
    FaultyStore,
    Outcome,
    Scenario,
    check_scenario,
    write_agent,
)

from corral.harness.config import load_agent
from corral.harness.loop import run
from corral.harness.models.base import ModelResponse, ToolCall, Usage
from corral.harness.runtime import Harness


class Puppet:
    """A model that asks for exactly the call the scenario wants next, then answers."""

    provider = "test"
    id = "puppet"

    def __init__(self) -> None:
        self.next: tuple[str, dict[str, Any]] | None = None
        self.count = 0

    def complete(self, *, system, messages, tools, max_tokens):
        self.count += 1
        if self.next is None:
            return ModelResponse("ok", [], Usage(10, 1), "end_turn", self.id)
        tool, args = self.next
        self.next = None
        return ModelResponse("", [ToolCall(f"c{self.count}", tool, dict(args))], Usage(10, 1), "tool_use", self.id)


_DECISIONS = {"allowed": ALLOWED, "flagged": ALLOWED, "approved": ALLOWED, "deferred": ALLOWED}


class HarnessPoint:
    name = "harness"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self, scenario: Scenario) -> None:
        folder = self.directory / scenario.name
        path = write_agent(folder)
        sys.path.insert(0, str(folder))
        self.model = Puppet()
        self.harness = Harness(load_agent(path), principal=PRINCIPAL, model=self.model)
        self.session_id = run(self.harness, "start").session

    def kernel_session(self) -> Any:
        return self.harness.governor.session(id=self.session_id)

    def call(self, tool: str, args: Mapping[str, Any]) -> Outcome:
        seen: list[dict[str, Any]] = []
        record = self.harness.governor.store.get_session(self.session_id) or {}
        resuming = bool((record.get("harness") or {}).get("paused"))
        self.model.next = None if resuming else (tool, dict(args))
        result = run(self.harness, None if resuming else "next", session_id=self.session_id,
                     events=lambda kind, data: seen.append(data) if kind == "call" else None)
        if result.stop_reason == "awaiting_approval":
            return Outcome(PENDING, result.answer)
        calls = [d for d in seen if d["tool"] == tool]
        if not calls:  # the loop stopped before the model could ask (the stop gate, a governance fault)
            return Outcome(BLOCKED, result.answer)
        data = calls[-1]
        outcome = data.get("result")
        if isinstance(outcome, dict) and (outcome.get("blocked") or outcome.get("denied") or
                                          (outcome.get("error") and data.get("decision") in (None, "refused"))):
            return Outcome(BLOCKED, str(outcome.get("reason") or outcome.get("error")))
        return Outcome(_DECISIONS.get(data.get("decision") or "", BLOCKED), str(data.get("reason") or outcome))

    def inject_fault(self) -> None:
        self.harness.governor.store = FaultyStore(self.harness.governor.store)

    def close(self) -> None:
        self.harness.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_harness_gives_the_same_decisions(scenario, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_scenario(HarnessPoint(tmp_path), scenario)
