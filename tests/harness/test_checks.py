"""What an agent needs from the machine is checked at `corral validate`: isolation for commands first.

Where bubblewrap cannot run, ``shell`` and ``python`` refuse to start (a located error naming both
fixes) instead of running commands that reach the whole host; ``sandbox: unisolated`` accepts that
knowingly. The machine has bubblewrap, so its absence is made by pointing the probe at a missing bwrap.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corral.errors import ConfigError
from corral.harness.config import AgentConfigError, load_agent
from corral.harness.loop import run
from corral.harness.runtime import Harness
from corral.harness.sandbox import BWRAP_ENV, SUBPROCESS, Sandbox, SandboxUnavailable, probe_bubblewrap

MISSING = "/nonexistent/bin/bwrap"


def agent(tmp_path: Path, builtin: str, *, sandbox: str | None = None, script: list | None = None) -> Path:
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script or [{"text": "hi"}]))
    doc = {"name": "ops", "model": {"provider": "scripted", "script": "script.yaml"},
           "tools": [{"builtin": "files"}, {"builtin": builtin}], "phases": False,
           "store": f"sqlite:///{tmp_path / 'corral.db'}", "workspace": str(tmp_path / "ws")}
    if sandbox:
        doc["sandbox"] = sandbox
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setenv(BWRAP_ENV, MISSING)
    assert not probe_bubblewrap(refresh=True).ok
    yield
    monkeypatch.delenv(BWRAP_ENV)
    assert probe_bubblewrap(refresh=True).ok


@pytest.mark.parametrize("builtin", ["shell", "python"])
def test_without_bubblewrap_commands_refuse_to_start(tmp_path, no_bwrap, builtin):
    path = agent(tmp_path, builtin)
    with pytest.raises(AgentConfigError) as caught:
        load_agent(path)
    [(where, what)] = caught.value.problems
    assert where == "tools[1].builtin"
    assert what.startswith(f"{builtin}: commands cannot run isolated here ({BWRAP_ENV}={MISSING} is not an "
                           "executable bwrap)")
    assert "install bubblewrap" in what and "`sandbox: unisolated`" in what
    with pytest.raises(ConfigError, match=r"tools\[1\]: builtin: .*sandbox: unisolated"):
        Harness(load_agent(path, check=False))
    out = subprocess.run([sys.executable, "-m", "corral.cli", "validate", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "tools[1].builtin" in out.stderr and "unisolated" in out.stderr


def test_sandbox_unisolated_accepts_the_risk_and_runs_unconfined(tmp_path, no_bwrap):
    script = [{"tool_calls": [{"name": "shell", "args": {"command": "echo $((6*7)) > answer.txt; cat answer.txt"}}]},
              {"text": "done"}]
    harness = Harness(load_agent(agent(tmp_path, "shell", sandbox="unisolated", script=script)), principal="a")
    try:
        result = run(harness, "go")
    finally:
        harness.close()
    assert result.stop_reason == "end_turn"
    [shell] = [t for t in result.traces if t["kind"] == "call"]
    assert shell["outcome"]["status"] == "ok"
    assert (tmp_path / "ws" / result.session / "answer.txt").read_text() == "42\n"


def test_a_sandbox_that_must_isolate_refuses_without_bubblewrap(tmp_path, no_bwrap):
    with pytest.raises(SandboxUnavailable, match="sandbox: unisolated"):
        Sandbox(tmp_path, isolation="bubblewrap")
    assert Sandbox(tmp_path).isolation == SUBPROCESS  # the Python API's auto still falls back, and says so


def test_with_bubblewrap_the_same_agent_is_valid_and_isolated(tmp_path):
    assert probe_bubblewrap().ok
    load_agent(agent(tmp_path, "shell"))


def test_doctor_says_which_applies(tmp_path):
    ok = json.loads(subprocess.run([sys.executable, "-m", "corral.cli", "doctor", "--json"], capture_output=True,
                                   text=True, timeout=60).stdout)
    assert ok["commands"] == {"runs": True, "isolation": "bubblewrap",
                              "detail": "shell and python run under bubblewrap"}
    assert ok["chromium"]["path"] and "Chromium" in ok["chromium"]["version"] and ok["chromium"]["problem"] is None
    missing = subprocess.run([sys.executable, "-m", "corral.cli", "doctor"], capture_output=True, text=True,
                             timeout=60, env={"PATH": "/usr/bin:/bin", BWRAP_ENV: MISSING,
                                              "CORRAL_CHROMIUM": "/nonexistent/chromium"})
    assert missing.returncode == 0
    assert "commands: shell and python refuse to start: commands cannot run isolated here" in missing.stdout
    assert "`sandbox: unisolated`" in missing.stdout
    assert "browser: CORRAL_CHROMIUM=/nonexistent/chromium is not an executable Chromium" in missing.stdout
