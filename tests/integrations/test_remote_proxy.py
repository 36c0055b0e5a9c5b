"""``corral mcp-proxy --server URL``: the official MCP SDK client through the proxy to ``mcp-server-time``,
every ``tools/call`` decided by a real ``corral serve`` — no store opened by the proxy."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from tests.server.serving import CORRAL, Team

TIME_SERVER = [sys.executable, "-m", "mcp_server_time"]


async def _through_proxy(server_url: str, token: str | None, work: Path, calls: list[tuple[str, dict[str, Any]]]
                         ) -> tuple[list[str], list[Any], str]:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_TOKEN"}
    if token is not None:
        env["CORRAL_TOKEN"] = token
    log = work / "proxy.log"
    params = StdioServerParameters(command=CORRAL, args=["mcp-proxy", "--server", server_url, "--agent", "gate",
                                                         "--", *TIME_SERVER], env=env)
    with log.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            names = [t.name for t in (await client.list_tools()).tools]
            results = [await client.call_tool(name, args) for name, args in calls]
    session = re.search(r"session (\S+)", log.read_text()).group(1)
    return names, results, session


async def test_each_call_is_decided_by_the_server_and_settled_there(serve: Any, sqlite_url: str, work: Path) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    token = team.add("alice", "user")
    names, results, session = await _through_proxy(server.url, token, work, [
        ("get_current_time", {"timezone": "Europe/Berlin"}),
        ("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Antarctica/Troll"}),
    ])
    assert "get_current_time" in names and "convert_time" in names
    now, troll = results
    assert not now.is_error and "Europe/Berlin" in now.content[0].text
    assert troll.is_error and "nobody lives there" in json.loads(troll.content[0].text)["reason"]
    with server.client(team.add("carol", "auditor")) as carol:
        traces = carol.get(f"/v1/sessions/{session}/traces").json()
    by_tool = {t["tool"]: t for t in traces}
    assert by_tool["get_current_time"]["decision"] == "allowed" and by_tool["get_current_time"]["effect"] == "read"
    assert by_tool["get_current_time"]["outcome"]["status"] == "ok" and by_tool["get_current_time"]["principal"] == "alice"
    assert by_tool["convert_time"]["decision"] == "blocked"


async def test_without_a_reachable_server_nothing_runs_upstream(work: Path) -> None:
    names, results, _ = await _through_proxy("http://127.0.0.1:9", "corral_x", work,
                                             [("get_current_time", {"timezone": "UTC"})])
    assert results[0].is_error
    payload = json.loads(results[0].content[0].text)
    assert payload["blocked"] and "cannot reach the corral server" in payload["reason"]
