"""Client-side tools: decided and traced before the pause, finished with the caller's result — in the
same process, and from another one through `corral run --session ID --tool-result JSON`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corral.harness.config import AgentConfigError, load_agent
from corral.harness.loop import run
from corral.harness.runtime import Harness
from corral.harness.tools.client import ClientResultError

SCRIPT = [
    {"tool_calls": [{"name": "pick_file", "args": {"prompt": "Which report?"}},
                    {"name": "geolocate", "args": {}}]},
    {"text": "You picked the report; you are in Lyon."},
]


def agent(tmp_path: Path, *, rules: str = "", script: list | None = None) -> Path:
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script or SCRIPT))
    (tmp_path / "policy.rules").write_text(rules)
    doc = {"name": "desktop", "model": {"provider": "scripted", "script": "script.yaml"}, "phases": False,
           "tools": [{"client": {"name": "pick_file", "description": "Ask the user to pick a file.",
                                 "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}},
                                                "required": ["prompt"]}, "effect": "read"}},
                     {"client": {"name": "geolocate", "description": "Where the user is.", "cost": 0.25}}],
           "governance": {"rules": "policy.rules", "budget": {"session": 5.0}},
           "store": f"sqlite:///{tmp_path / 'corral.db'}", "workspace": str(tmp_path / "ws")}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def calls(result) -> list[dict]:
    return [t for t in result.traces if t["kind"] == "call"]


def test_decided_before_the_pause_and_finished_with_the_clients_result(tmp_path):
    harness = Harness(load_agent(agent(tmp_path)), principal="alice")
    try:
        paused = run(harness, "Summarise my report.")
        assert (paused.stop_reason, paused.exit_code) == ("awaiting_client", 4)
        ids = [c["id"] for c in paused.client_calls]
        assert [(c["name"], c["args"]) for c in paused.client_calls] == [("pick_file", {"prompt": "Which report?"}),
                                                                      ("geolocate", {})]
        assert paused.to_dict()["client_calls"] == paused.client_calls
        decided = calls(paused)
        assert [(t["tool"], t["decision"], t.get("outcome")) for t in decided] == [
            ("pick_file", "allowed", None), ("geolocate", "allowed", None)]  # decided and traced; not run yet
        assert paused.budget["reserved"] == pytest.approx(0.25)  # geolocate's cost is held

        again = run(harness, session_id=paused.session)  # no results: still waiting, nothing runs
        assert again.stop_reason == "awaiting_client" and again.client_calls == paused.client_calls

        done = run(harness, session_id=paused.session,
                   tool_results={ids[0]: {"path": "q3-report.pdf"}, ids[1]: {"city": "Lyon"}})
        transcript = harness.governor.store.get_session(done.session)["harness"]["transcript"]
    finally:
        harness.close()
    assert done.stop_reason == "end_turn" and done.answer == "You picked the report; you are in Lyon."
    finished = calls(done)
    assert [(t["tool"], t["outcome"]["status"]) for t in finished] == [("pick_file", "ok"), ("geolocate", "ok")]
    assert [t["id"] for t in finished] == [t["id"] for t in decided]  # the same decisions, finished
    assert done.budget["spent"] == pytest.approx(0.25) and done.budget["reserved"] == 0
    results = {m["tool_call_id"]: json.loads(m["content"]) for m in transcript if m["role"] == "tool"}
    assert results == {ids[0]: {"path": "q3-report.pdf"}, ids[1]: {"city": "Lyon"}}


def test_a_refused_client_call_goes_back_to_the_model_and_does_not_pause(tmp_path):
    rules = 'BLOCK geolocate BECAUSE "location stays private"\n'
    script = [{"tool_calls": [{"name": "geolocate", "args": {}}]}, {"text": "I cannot tell where you are."}]
    harness = Harness(load_agent(agent(tmp_path, rules=rules, script=script)), principal="alice")
    try:
        result = run(harness, "Where am I?")
    finally:
        harness.close()
    assert result.stop_reason == "end_turn" and result.client_calls == []
    [blocked] = calls(result)
    assert blocked["decision"] == "blocked" and "location stays private" in blocked["reason"]


def test_results_for_calls_never_asked_are_refused_and_change_nothing(tmp_path):
    harness = Harness(load_agent(agent(tmp_path)), principal="alice")
    try:
        paused = run(harness, "go")
        ids = [c["id"] for c in paused.client_calls]
        before = harness.governor.store.get_session(paused.session)
        with pytest.raises(ClientResultError, match=r"no client call 'forged' was asked for"):
            run(harness, session_id=paused.session, tool_results={ids[0]: 1, ids[1]: 2, "forged": 3})
        with pytest.raises(ClientResultError, match=rf"no result for {ids[1]}"):
            run(harness, session_id=paused.session, tool_results={ids[0]: 1})
        with pytest.raises(ClientResultError, match="one JSON object"):
            run(harness, session_id=paused.session, tool_results=[1, 2])  # type: ignore[arg-type]
        assert harness.governor.store.get_session(paused.session) == before
        done = run(harness, session_id=paused.session, tool_results={ids[0]: "a", ids[1]: {"error": "denied"}})
        assert done.stop_reason == "end_turn"
        assert [t["outcome"]["status"] for t in calls(done)] == ["ok", "error"]
        with pytest.raises(ClientResultError, match="waits for no client call"):
            run(harness, session_id=paused.session, tool_results={ids[0]: "again"})
    finally:
        harness.close()


def test_across_processes_with_the_cli(tmp_path):
    path = agent(tmp_path)
    cli = [sys.executable, "-m", "corral.cli", "run", str(path)]
    first = subprocess.run([*cli, "Summarise my report.", "--json", "--as", "alice"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert first.returncode == 4, first.stderr[-2000:]
    paused = json.loads(first.stdout)
    assert paused["stop_reason"] == "awaiting_client"
    ids = [c["id"] for c in paused["client_calls"]]
    forged = subprocess.run([*cli, "--session", paused["session"], "--tool-result", json.dumps({"x": 1}), "--json"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert forged.returncode == 1 and "no client call 'x' was asked for" in forged.stderr and forged.stdout == ""
    results = {ids[0]: {"path": "q3.pdf"}, ids[1]: {"city": "Lyon"}}
    second = subprocess.run([*cli, "--session", paused["session"], "--tool-result", json.dumps(results), "--json"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    done = json.loads(second.stdout)
    assert done["stop_reason"] == "end_turn" and "client_calls" not in done
    tools = [t for t in done["traces"] if t["kind"] == "call"]
    assert [(t["tool"], t["decision"], t["outcome"]["status"]) for t in tools] == [
        ("pick_file", "allowed", "ok"), ("geolocate", "allowed", "ok")]
    assert tools[1]["outcome"]["cost"] == 0.25
    assert done["budget"]["reserved"] == 0 and done["budget"]["spent"] == pytest.approx(0.25)
    verify = subprocess.run([sys.executable, "-m", "corral.cli", "audit", "verify", "--store",
                             f"sqlite:///{tmp_path / 'corral.db'}"], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_client_tool_entry_is_validated(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "tools": [
        {"client": {"name": "bad name!"}},
        {"client": {"name": "ok", "parameters": {"type": "array"}}},
        {"client": {"name": "undo", "effect": "reversible"}}]}))
    with pytest.raises(AgentConfigError) as caught:
        load_agent(path)
    where = [w for w, _ in caught.value.problems]
    assert "tools[0].client.name" in where and "tools[2].client.effect" in where
    path.write_text(yaml.safe_dump({"name": "x", "tools": [{"client": {"name": "ok", "parameters": {"type": "array"}}}]}))
    with pytest.raises(AgentConfigError) as caught:
        load_agent(path)
    assert caught.value.problems[0][0] == "tools[0].client.parameters"
