"""MCP servers as harness tools: real servers over stdio (mcp-server-time, and a deliberately broken one)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import mcp_types as types
import pytest
import yaml

from corral.errors import Blocked, ConfigError
from corral.harness.config import load_agent
from corral.harness.runtime import Harness
from corral.harness.tools.mcp import (
    McpClient,
    McpToolError,
    McpUpstreamError,
    effect_from_annotations,
    plan_tools,
)

TIME_SERVER = [sys.executable, "-m", "mcp_server_time"]

BROKEN_SERVER = (Path(__file__).resolve().parents[1] / "fixtures" / "broken_mcp_server.py").read_text()


def _agent(tmp_path: Path, tool: dict, rules: str = "") -> Path:
    (tmp_path / "policy.rules").write_text(rules or "DEFAULT ALLOW\n")
    agent = {
        "name": "mcp-desk",
        "model": {"provider": "openai", "id": "unused"},  # the harness is given a model object below
        "tools": [tool],
        "governance": {"rules": "policy.rules"},
        "store": f"sqlite:///{tmp_path / 'corral.db'}",
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


def _harness(agent_file: Path) -> Harness:
    return Harness(load_agent(agent_file), model=object(), principal="alice")


# ------------------------------------------------------------------------------------------ effects


@pytest.mark.parametrize(
    ("annotations", "compensated", "effect"),
    [
        (None, False, "irreversible"),
        (types.ToolAnnotations(), True, "irreversible"),
        (types.ToolAnnotations(read_only_hint=True, destructive_hint=True), False, "read"),
        (types.ToolAnnotations(destructive_hint=False), False, "irreversible"),
        (types.ToolAnnotations(destructive_hint=False), True, "reversible"),
        (types.ToolAnnotations(idempotent_hint=True, destructive_hint=True), True, "reversible"),
        (types.ToolAnnotations(idempotent_hint=True), False, "irreversible"),
        (types.ToolAnnotations(read_only_hint=False, destructive_hint=True), True, "irreversible"),
        ({"readOnlyHint": True}, False, "read"),
        ({"destructiveHint": False}, True, "reversible"),
    ],
)
def test_annotations_map_to_effects(annotations, compensated, effect):
    assert effect_from_annotations(annotations, compensated=compensated) == effect


def test_plan_tools_applies_overrides_and_refuses_unknown_names(tmp_path):
    (tmp_path / "undo_mod.py").write_text("def undo(call):\n    return None\n")
    tools = [
        types.Tool(name="lookup", input_schema={"type": "object"},
                   annotations=types.ToolAnnotations(read_only_hint=True)),
        types.Tool(name="add", input_schema={"type": "object"},
                   annotations=types.ToolAnnotations(read_only_hint=False, idempotent_hint=True)),
        types.Tool(name="wipe", input_schema={"type": "object"}),
    ]
    plans = {p.name: p for p in plan_tools(tools, prefix="db.", effects={"db.lookup": "irreversible"},
                                           compensate={"add": "undo_mod:undo"}, cost={"wipe": 0.5},
                                           base_dir=tmp_path)}
    assert {n: p.effect for n, p in plans.items()} == {"db.lookup": "irreversible", "db.add": "reversible",
                                                         "db.wipe": "irreversible"}
    assert plans["db.add"].compensate is not None and plans["db.add"].upstream == "add"
    assert plans["db.wipe"].cost == 0.5
    with pytest.raises(ConfigError, match="effects names lokup, which the MCP server does not offer"):
        plan_tools(tools, effects={"lokup": "read"})


def test_plan_tools_labels_a_servers_tools_all_or_one_by_one() -> None:
    tools = [types.Tool(name="lookup", input_schema={"type": "object"}),
             types.Tool(name="send", input_schema={"type": "object"})]
    plans = {p.name: p for p in plan_tools(tools, prefix="crm.", labels={"crm.lookup": ["pii"]},
                                           tags={"send": ["egress"]})}
    assert plans["crm.lookup"].flow_options() == {"labels": ["pii"], "tags": [], "untrusted": False}
    assert plans["crm.send"].flow_options() == {"labels": [], "tags": ["egress"], "untrusted": False}
    everything = plan_tools(tools, labels=["web"], untrusted=True)
    assert all(p.flow_options() == {"labels": ["web"], "tags": [], "untrusted": True} for p in everything)
    with pytest.raises(ConfigError, match="labels names lokup, which the MCP server does not offer"):
        plan_tools(tools, labels={"lokup": ["pii"]})


# ------------------------------------------------------------------------------------------ harness


def test_time_server_tools_are_registered_governed_and_traced(tmp_path):
    agent = _agent(
        tmp_path,
        {"mcp": {"command": TIME_SERVER}, "prefix": "time.", "effects": {"convert_time": "irreversible"}},
        rules='BLOCK time.get_current_time WHEN arg.timezone IS "Antarctica/Troll" BECAUSE "not there"\n',
    )
    harness = _harness(agent)
    try:
        gov = harness.governor
        assert {"time.get_current_time", "time.convert_time"} <= set(harness.tools)
        # annotations (readOnlyHint) give read; the agent file overrides convert_time
        assert gov.tools["time.get_current_time"].effect == "read"
        assert gov.tools["time.convert_time"].effect == "irreversible"
        schema = harness.tools["time.get_current_time"].parameters
        assert schema["required"] == ["timezone"] and "timezone" in schema["properties"]

        s = gov.session(principal="alice")
        text = s.call("time.get_current_time", timezone="UTC")
        assert '"timezone": "UTC"' in text

        with pytest.raises(Blocked, match="not there"):
            s.call("time.get_current_time", timezone="Antarctica/Troll")
        with pytest.raises(Blocked, match="not allowed in explore"):
            s.call("time.convert_time", source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo")
        # the server's own isError result is the tool's exception, traced with outcome error
        with pytest.raises(McpToolError, match="Invalid timezone"):
            s.call("time.get_current_time", timezone="Nowhere/Special")

        traces = gov.session(id=s.id).traces  # as stored
        calls = [(t.tool, t.decision, (t.outcome or {}).get("status")) for t in traces if t.kind == "call"]
        assert calls == [
            ("time.get_current_time", "allowed", "ok"),
            ("time.get_current_time", "blocked", None),
            ("time.convert_time", "blocked", None),
            ("time.get_current_time", "allowed", "error"),
        ]
    finally:
        harness.close()


def test_a_killed_server_gives_a_clear_error_not_a_hang(tmp_path):
    pidfile = tmp_path / "server.pid"
    launcher = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); sys.argv = sys.argv[:1]; "
                "from mcp_server_time import main; main()")
    agent = _agent(tmp_path, {"mcp": {"command": [sys.executable, "-c", launcher, str(pidfile)]}})
    harness = _harness(agent)
    try:
        s = harness.governor.session(principal="alice")
        assert "UTC" in s.call("get_current_time", timezone="UTC")
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(McpUpstreamError, match="closed the connection"):
            for _ in range(50):  # the first call may race the kill; the error must come within a moment
                s.call("get_current_time", timezone="UTC")
                time.sleep(0.05)
        assert time.monotonic() - started < 5
        assert s.traces[-1].outcome["status"] == "error"
    finally:
        harness.close()


def test_a_server_that_dies_hangs_or_sends_garbage_mid_call(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(BROKEN_SERVER)
    client = McpClient.connect(command=[sys.executable, str(script)], call_timeout=1.0)
    try:
        assert [t.name for t in client.tools] == ["work"]
        assert client.call("work", {"how": "fine"}) == "worked fine"

        started = time.monotonic()
        with pytest.raises(McpUpstreamError, match="not valid JSON-RPC"):
            client.call("work", {"how": "garbage"})
        assert time.monotonic() - started < 0.9  # failed at once, not at the deadline
        assert client.call("work", {"how": "again"}) == "worked again"  # a protocol slip is not fatal

        started = time.monotonic()
        with pytest.raises(McpUpstreamError, match="did not answer tools/call work"):
            client.call("work", {"how": "hang"})
        assert time.monotonic() - started < 4
    finally:
        client.close()

    client = McpClient.connect(command=[sys.executable, str(script)], call_timeout=5.0)
    try:
        started = time.monotonic()
        with pytest.raises(McpUpstreamError, match="is gone during tools/call work"):
            client.call("work", {"how": "die"})
        with pytest.raises(McpUpstreamError, match="not available"):
            client.call("work", {"how": "fine"})
        assert time.monotonic() - started < 2
        assert not client.alive
    finally:
        client.close()


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path):
    with pytest.raises(McpUpstreamError, match="cannot connect to MCP server"):
        McpClient.connect(command=[str(tmp_path / "no-such-server")])
    started = time.monotonic()
    with pytest.raises(McpUpstreamError, match="did not complete the handshake within 1s"):
        McpClient.connect(command=[sys.executable, "-c", "import time; time.sleep(30)"], connect_timeout=1)
    assert time.monotonic() - started < 8
    agent = _agent(tmp_path, {"mcp": {"command": TIME_SERVER}, "effects": {"convert_tme": "read"}})
    with pytest.raises(ConfigError, match=r"tools\[0\].*convert_tme"):
        _harness(agent)
