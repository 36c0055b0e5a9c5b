"""``corral recover --agent`` for an agent file with no ``model:`` (one made for the hook or the proxy):
recovery needs the tools and the store, nothing more."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from corral.integrations.claude_code.facts import ClaudeCodeAgent, load_facts

CORRAL = [sys.executable, "-m", "corral.cli"]


def _project(tmp_path: Path) -> Path:
    (tmp_path / "desk_tools.py").write_text(textwrap.dedent("""
        import json, os, signal
        from pathlib import Path

        WORLD = Path(__file__).with_name("world.jsonl")

        def _log(entry):
            with WORLD.open("a") as f:
                f.write(json.dumps(entry) + "\\n")

        def hold(room):
            _log({"do": "hold", "room": room})
            return room

        def release(call):
            _log({"undo": "hold", "room": call.args["room"], "key": call.idempotency_key})

        def crash():
            os.kill(os.getpid(), signal.SIGKILL)
    """), encoding="utf-8")
    (tmp_path / "agent.yaml").write_text(textwrap.dedent(f"""
        name: desk
        tools:
          - python: desk_tools:hold
            effect: reversible
            compensate: desk_tools:release
          - python: desk_tools:crash
            effect: irreversible
        store: sqlite:///{tmp_path / 'corral.db'}
    """), encoding="utf-8")
    return tmp_path


def test_recover_an_agent_file_without_a_model(tmp_path: Path) -> None:
    project = _project(tmp_path)
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(project)!r})
        from corral.harness.config import load_agent
        from corral.harness.runtime import Harness
        harness = Harness(load_agent({str(project / 'agent.yaml')!r}), require_model=False)
        s = harness.governor.session("alice")
        s.back_to("decide")
        tx = s.begin_commit()
        tx.call("hold", room="12")
        os.kill(os.getpid(), signal.SIGKILL)   # dies inside the commit, the step done
    """)
    died = subprocess.run([sys.executable, "-c", child], cwd=project, capture_output=True, text=True)
    assert died.returncode == -9, died.stderr
    out = subprocess.run([*CORRAL, "recover", "--agent", str(project / "agent.yaml"), "--json"], cwd=project,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    [tx] = report["transactions"]
    assert tx["state"] == "rolled_back" and [c["tool"] for c in tx["compensated"]] == ["hold"]
    world = [json.loads(line) for line in (project / "world.jsonl").read_text().splitlines()]
    assert world == [{"do": "hold", "room": "12"}, {"undo": "hold", "room": "12", "key": f"{tx['id']}:1"}]
    again = subprocess.run([*CORRAL, "recover", "--agent", str(project / "agent.yaml"), "--json"], cwd=project,
                           capture_output=True, text=True)
    assert again.returncode == 0 and json.loads(again.stdout)["transactions"] == []


def test_recover_undoes_a_claude_code_edit_whose_session_lease_lapsed(tmp_path: Path) -> None:
    """A Claude Code session's commit (leased to the session) is rolled back once its lease lapsed: the
    Write is undone from the snapshot the hook took, by ``corral recover --agent`` on the same file."""
    project = _project(tmp_path)
    target = project / "notes.txt"
    target.write_text("before", encoding="utf-8")
    state = project / ".corral" / "claude-code"
    agent = ClaudeCodeAgent(load_facts(project / "agent.yaml"), state=state)
    s = agent.session("cc-1", "alice")
    s.back_to("decide")
    tx = s.begin_commit()
    agent.governor.store.update_transaction(tx.id, {"lease_until": "2000-01-01T00:00:00.000Z",
                                                    "owner": {"kind": "claude-code-session", "session": "cc-1"}})
    from corral.governance.calls import begin_call

    handle = begin_call(s, "Write", {"file_path": str(target), "content": "after"}, tx=tx, durable=True,
                        before_step=lambda pc, key: agent.snapshots.take(key, target))
    target.write_text("after", encoding="utf-8")
    handle.finish(result={"type": "update"}, rollback=False)
    agent.close()
    out = subprocess.run([*CORRAL, "recover", "--agent", str(project / "agent.yaml"), "--json"], cwd=project,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    [report] = json.loads(out.stdout)["transactions"]
    assert report["state"] == "rolled_back" and [c["tool"] for c in report["compensated"]] == ["Write"]
    assert target.read_text(encoding="utf-8") == "before"
