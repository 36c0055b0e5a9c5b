"""The official MCP Inspector CLI (npm ``@modelcontextprotocol/inspector``, ``--cli``) against
``corral mcp-proxy`` in front of the MCP reference server (npm ``@modelcontextprotocol/server-everything``).

Both come from npm (``.ci/run`` installs them); a missing one fails the test with the command that
installs it. Each Inspector run is a new client connection, so a new corral session: the traces of all
runs are read back from the store at the end, and ``corral audit verify`` checks their chains.
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

from corral.harness.config import load_agent
from corral.harness.runtime import governor_from_config

PROXY = [sys.executable, "-m", "corral.cli.mcp"]
CORRAL = [sys.executable, "-m", "corral.cli"]


def _needs(binary: str, package: str) -> str:
    found = shutil.which(binary)
    assert found, f"{binary} is not on PATH: npm install --global {package} (.ci/run does)"
    return found


def _setup(tmp_path: Path) -> tuple[Path, list[str], dict[str, str]]:
    inspector = _needs("mcp-inspector", "@modelcontextprotocol/inspector")
    everything = _needs("mcp-server-everything", "@modelcontextprotocol/server-everything")
    (tmp_path / "policy.rules").write_text(
        'BLOCK echo WHEN arg.message IS "forbidden" BECAUSE "not that word"\n'
        'REQUIRE APPROVAL FOR get-sum WHEN arg.a ABOVE 100 BECAUSE "big sums need a human"\n')
    agent = tmp_path / "agent.yaml"
    agent.write_text(yaml.safe_dump({
        "name": "inspected",
        "tools": [{"mcp": {"command": [everything]}, "effects": {"get-sum": "read"}}],
        "governance": {"rules": "policy.rules"},
        "store": f"sqlite:///{tmp_path / 'corral.db'}",
    }))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "MCP_CATALOG_PATH": str(home / "mcp.json")}
    proxy = [*PROXY, "--agent", str(agent), "--as", "alice", "--", everything]
    return agent, [inspector, "--cli", "--format", "json", "-q", *[], "{METHOD}", "--", *proxy], env


def _inspect(command: list[str], env: dict[str, str], *options: str) -> dict[str, Any]:
    i = command.index("{METHOD}")
    run = [*command[:i], *options, *command[i + 1:]]
    done = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env)
    out = done.stdout.strip() or done.stderr.strip()
    assert out, f"the Inspector printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(out.splitlines()[-1])


def test_the_inspector_lists_calls_is_refused_and_reads_resources_and_prompts_through_the_proxy(tmp_path):
    agent, command, env = _setup(tmp_path)

    listed = _inspect(command, env, "--method", "tools/list")["result"]["tools"]
    names = [t["name"] for t in listed]
    assert "echo" in names and names[-6:] == ["corral_begin_decide", "corral_propose_plan", "corral_begin_commit",
                                              "corral_finish_commit", "corral_abort_commit", "corral_back_to_explore"]
    finish = next(t for t in listed if t["name"] == "corral_finish_commit")
    assert finish["annotations"]["readOnlyHint"] is False and finish["annotations"]["destructiveHint"] is True

    echoed = _inspect(command, env, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hello")
    assert echoed["result"]["isError"] is False and echoed["result"]["content"][0]["text"] == "Echo: hello"

    refused = _inspect(command, env, "--method", "tools/call", "--tool-name", "echo",
                       "--tool-arg", "message=forbidden")
    text = json.loads(refused["result"]["content"][0]["text"]) if "result" in refused else None
    assert refused.get("result", {}).get("isError") is True, refused
    assert text["blocked"] is True and text["reason"].startswith("not that word")

    pending = _inspect(command, env, "--method", "tools/call", "--tool-name", "get-sum",
                       "--tool-args-json", '{"a": 500, "b": 1}')
    waiting = json.loads(pending["result"]["content"][0]["text"])
    assert pending["result"]["isError"] is True and waiting["pending"] is True and waiting["approval"]

    resources = _inspect(command, env, "--method", "resources/list")["result"]["resources"]
    assert resources
    read = _inspect(command, env, "--method", "resources/read", "--uri", resources[0]["uri"])
    assert read["result"]["contents"][0]["uri"] == resources[0]["uri"]

    prompts = [p["name"] for p in _inspect(command, env, "--method", "prompts/list")["result"]["prompts"]]
    assert "simple-prompt" in prompts
    got = _inspect(command, env, "--method", "prompts/get", "--prompt-name", "simple-prompt")
    assert got["result"]["messages"]

    # every run was a session of its own; the store holds each decision, and the chains verify
    gov = governor_from_config(load_agent(agent))
    try:
        decisions = sorted((r["tool"], r["decision"]) for s in gov.store.list_sessions()
                           for r in gov.store.records(s["id"]) if r.get("kind") == "call")
    finally:
        gov.close()
    assert decisions == [("echo", "allowed"), ("echo", "blocked"), ("get-sum", "pending")]
    verified = subprocess.run([*CORRAL, "audit", "verify", "--store", f"sqlite:///{tmp_path / 'corral.db'}"],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
