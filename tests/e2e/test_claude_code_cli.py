"""The real Claude Code CLI (npm ``@anthropic-ai/claude-code``), headless, governed by corral's hook.

Claude Code runs ``claude -p … --output-format json`` in a project of the test's own, with corral's
hook installed there by ``corral hook install claude-code`` (``.claude/settings.json``). Its model is
``ScriptedMessages``: a local server that speaks the Anthropic Messages wire protocol with streaming and
asks for the tool calls the test scripts. Everything that reaches out is switched off (a HOME of the
test's own, no telemetry, no auto-update, no nonessential traffic). ``.ci/run`` installs the CLI; a
missing one fails the test with the command that installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from anthropic_wire import ScriptedMessages

CORRAL = [sys.executable, "-m", "corral.cli"]
RULES = """\
BLOCK Bash WHEN arg.command MATCHES "*rm -rf*" BECAUSE "no recursive deletes"
REQUIRE APPROVAL FOR Bash WHEN arg.command MATCHES "*deploy*" BECAUSE "deploys need a second person"
"""


def _claude() -> str:
    found = shutil.which("claude")
    assert found, "claude is not on PATH: npm install --global @anthropic-ai/claude-code (.ci/run does)"
    return found


def _project(tmp_path: Path) -> tuple[Path, Path, str]:
    project = tmp_path / "project"
    (project / "important").mkdir(parents=True)
    (project / "important" / "keep.txt").write_text("keep")
    (project / "policy.rules").write_text(RULES)
    store = f"sqlite:///{tmp_path / 'corral.db'}"
    agent = project / "agent.yaml"
    agent.write_text(yaml.safe_dump({"name": "claude-desk", "phases": False, "governance": {"rules": "policy.rules"},
                                     "store": store}))
    installed = _corral("hook", "install", "claude-code", "--agent", str(agent), cwd=project)
    assert installed.returncode == 0, installed.stderr
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    assert "hook claude-code" in settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    return project, agent, store


def _corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _run_claude(project: Path, api: ScriptedMessages, prompt: str, *extra: str) -> dict[str, Any]:
    home = project.parent / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update({
        "HOME": str(home), "USER": "alice", "ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "sk-ant-test-dummy",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1", "DISABLE_BUG_COMMAND": "1", "CLAUDE_CODE_ENABLE_TELEMETRY": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    done = subprocess.run([_claude(), "-p", prompt, "--output-format", "json", *extra], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"claude exited {done.returncode}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return json.loads(done.stdout)


def _bash(command: str) -> dict[str, Any]:
    return {"tool_use": {"name": "Bash", "input": {"command": command, "description": "scripted"}}}


def test_a_denied_tool_does_not_run_an_allowed_one_does_and_an_approval_waits_for_another_person(tmp_path):
    project, agent, store = _project(tmp_path)
    deploy = "echo deployed >> deployed.txt"
    turns = [_bash("rm -rf important"), _bash("echo allowed > allowed.txt"), _bash(deploy),
             {"text": "waiting for approval"}]
    with ScriptedMessages(turns) as api:
        answer = _run_claude(project, api, "tidy up and deploy")
        results = api.tool_results()
    assert answer["is_error"] is False and answer["result"] == "waiting for approval"
    session = answer["session_id"]

    # denied: a rule blocks it, Claude Code is told why, and nothing ran
    assert (project / "important" / "keep.txt").exists()
    assert results[0].get("is_error") is True and "no recursive deletes" in json.dumps(results[0])
    # allowed: it ran
    assert (project / "allowed.txt").read_text().strip() == "allowed"
    # approval: the call waits — it did not run, and a pending request names it
    assert not (project / "deployed.txt").exists()
    assert results[2].get("is_error") is True
    listed = _corral("approvals", "list", "--store", store, "--json", cwd=project)
    pending = [p for p in json.loads(listed.stdout) if p["tool"] == "Bash"]
    assert len(pending) == 1 and pending[0]["session"] == session and pending[0]["args"]["command"] == deploy
    # … and Claude Code was told which request waits and how a person decides it
    assert f"corral approvals approve {pending[0]['id']}" in json.dumps(results[2])

    # the session's own principal cannot approve it; another person can
    own = _corral("approvals", "approve", pending[0]["id"], "--as", "alice", "--store", store, cwd=project)
    assert own.returncode != 0
    bob = _corral("approvals", "approve", pending[0]["id"], "--as", "bob", "--store", store, cwd=project)
    assert bob.returncode == 0, bob.stderr

    # the same call, retried in the same session, runs — once
    with ScriptedMessages([_bash(deploy), _bash(deploy), {"text": "deployed"}]) as api:
        again = _run_claude(project, api, "deploy now", "--resume", session)
        retried = api.tool_results()
    assert again["result"] == "deployed"
    assert (project / "deployed.txt").read_text().splitlines() == ["deployed"]
    assert retried[-1].get("is_error") is True  # the approval was used up: the second try waits again

    # the store's audit holds all of it, and its chain verifies
    traces = _corral("audit", "export", "--store", store, "--session", session, cwd=project)
    assert traces.returncode == 0, traces.stderr
    records = [json.loads(line) for line in traces.stdout.splitlines() if line.strip()]
    decisions = [(r.get("args", {}).get("command"), r.get("decision")) for r in records if r.get("kind") == "call"]
    assert ("rm -rf important", "blocked") in decisions
    assert ("echo allowed > allowed.txt", "allowed") in decisions
    assert (deploy, "pending") in decisions and (deploy, "approved") in decisions
    verified = _corral("audit", "verify", "--store", store, "--session", session, cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr
