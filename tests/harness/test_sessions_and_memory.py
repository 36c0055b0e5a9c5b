"""Sessions across runs and processes: long-term memory, the fallback model, switching models,
timeouts, harness faults, `corral chat` and `corral session exec`."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from corral.cli import main
from corral.harness.config import Fallback, load_agent
from corral.harness.loop import run
from corral.harness.models.base import ModelResponse, Usage
from corral.harness.models.scripted import ScriptedModel
from corral.harness.runtime import Harness
from tests.harness.test_loop import call, make_agent


def test_long_term_memory_persists_across_sessions_per_principal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_agent(tmp_path, [], extra="memory: {window: 40, long_term: true}\n")
    keep = ScriptedModel([{"tool_calls": [call("remember", text="Ada prefers refunds to store credit")]},
                          {"text": "noted"}])
    first = run(Harness(load_agent(path), principal="ada", model=keep), "remember this")
    assert first.stop_reason == "end_turn"
    seen = []
    ask = ScriptedModel([{"tool_calls": [call("recall", query="refunds credit")]}, {"text": "ok"}])
    second = run(Harness(load_agent(path), principal="ada", model=ask), "what do I prefer?",
                 events=lambda kind, data: seen.append(data) if kind == "call" else None)
    assert second.session != first.session
    (memories,) = [d["result"]["memories"] for d in seen]
    assert [m["text"] for m in memories] == ["Ada prefers refunds to store credit"]
    other = []
    run(Harness(load_agent(path), principal="bob", model=ScriptedModel(
        [{"tool_calls": [call("recall", query="refunds credit")]}, {"text": "ok"}])), "and me?",
        events=lambda kind, data: other.append(data) if kind == "call" else None)
    assert other[0]["result"]["memories"] == []  # namespaced per principal


class Recorder:
    """A model that records what it was sent and answers from a script."""

    provider = "test"

    def __init__(self, model_id: str, answers: list[ModelResponse]) -> None:
        self.id = model_id
        self.answers = answers
        self.seen: list[list[str]] = []

    def complete(self, *, system, messages, tools, max_tokens):
        self.seen.append([m.content for m in messages])
        return self.answers.pop(0) if self.answers else ModelResponse("bye", [], Usage(10, 1), "end_turn", self.id)


def test_degrade_gate_switches_to_the_fallback_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = [{"tool_calls": [call("lookup", order_id=str(i))], "usage": {"input": 2000, "output": 10}}
              for i in range(6)] + [{"text": "done"}]
    path = make_agent(tmp_path, script, budget="{session: 12.0}")
    config = load_agent(path)
    config.model.fallback = Fallback(id="cheap", price={"input_per_mtok": 100, "output_per_mtok": 100})
    harness = Harness(config, principal="ada")
    assert harness.fallback_model.id == "cheap"
    result = run(harness, "go")
    models = [t["tool"] for t in result.traces if t["kind"] == "spend"]
    assert models[0] == "model:scripted" and "model:cheap" in models
    first_cheap = models.index("model:cheap")
    assert all(m == "model:cheap" for m in models[first_cheap:])


def test_switching_models_mid_session_keeps_the_context(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_agent(tmp_path, [{"text": "Hello Ada."}])
    first = run(Harness(load_agent(path), principal="ada"), "My name is Ada.")
    other = Recorder("other-model", [ModelResponse("You are Ada.", [], Usage(5, 2), "end_turn", "other-model")])
    second = run(Harness(load_agent(path), principal="ada", model=other), "Who am I?", session_id=first.session)
    assert second.answer == "You are Ada."
    assert other.seen[0] == ["My name is Ada.", "Hello Ada.", "Who am I?"]


def test_timeout_and_harness_errors_end_cleanly_with_the_transcript_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_agent(tmp_path, [{"tool_calls": [call("lookup", order_id="A1")]}] * 5,
                      extra="limits: {max_iterations: 30, timeout_seconds: 0.000001}\n")
    timed = run(Harness(load_agent(path), principal="ada"), "go")
    assert timed.stop_reason == "timeout" and timed.exit_code == 2

    class Broken:
        provider, id = "test", "broken"

        def complete(self, **kwargs):
            raise RuntimeError("the provider fell over")

    path = make_agent(tmp_path, [])
    broken = run(Harness(load_agent(path), principal="ada", model=Broken()), "go")
    assert broken.stop_reason == "error" and broken.exit_code == 1
    assert "the provider fell over" in broken.answer
    record = Harness(load_agent(path), principal="ada").governor.store.get_session(broken.session)
    assert record["harness"]["transcript"][0]["content"] == "go"  # nothing lost
    assert broken.budget["reserved"] == 0  # the failed model call settled at zero


def test_corral_chat_keeps_one_session(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_agent(tmp_path, [{"text": "first answer"}, {"text": "second answer"}])
    out = CliRunner().invoke(main, ["chat", str(path), "--as", "ada"], input="hello\nagain\n\n")
    assert out.exit_code == 0, out.output
    assert "first answer" in out.output and "second answer" in out.output
    sessions = Harness(load_agent(path), principal="ada").governor.store.list_sessions()
    assert len(sessions) == 1


def test_session_exec_runs_in_the_session_sandbox(tmp_path):
    path = make_agent(tmp_path, [{"text": "hi"}])
    proc = subprocess.run([sys.executable, "-m", "corral.cli", "run", str(path), "hi", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    session = json.loads(proc.stdout)["session"]
    out = subprocess.run([sys.executable, "-m", "corral.cli", "session", "exec", session, "--agent", str(path),
                          "--", "sh", "-c", "echo made > inside.txt; basename $PWD"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == session
    assert (tmp_path / ".corral" / "workspaces" / session / "inside.txt").read_text() == "made\n"
    missing = subprocess.run([sys.executable, "-m", "corral.cli", "session", "exec", "nope", "--agent", str(path),
                              "--", "true"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no session" in missing.stderr
