"""What the proxy's upstream link relays, with the official MCP SDK client against the MCP reference server.

``@modelcontextprotocol/server-everything`` (npm, installed by ``.ci/run``) stands upstream of
``corral mcp-proxy``; the client declares sampling, elicitation and roots. Everything the server says
must reach this client: progress of a call, log messages, its own requests (sampling, roots) — and the
proxy must offer every capability the server offers.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import yaml
from mcp import ClientSession, StdioServerParameters, stdio_client

PROXY = [sys.executable, "-m", "corral.cli.mcp"]


def _everything() -> list[str]:
    found = shutil.which("mcp-server-everything")
    assert found, ("mcp-server-everything is not on PATH: npm install --global "
                   "@modelcontextprotocol/server-everything (.ci/run does)")
    return [found]


def _agent(tmp_path: Path, upstream: list[str]) -> Path:
    (tmp_path / "policy.rules").write_text('BLOCK echo WHEN arg.message IS "forbidden" BECAUSE "not that word"\n')
    agent = {
        "name": "everything-desk",
        "tools": [{"mcp": {"command": upstream},
                   "effects": {"echo": "read", "trigger-long-running-operation": "read",
                               "toggle-simulated-logging": "read", "trigger-sampling-request": "read",
                               "get-roots-list": "read", "get-sum": "irreversible"}}],
        "governance": {"rules": "policy.rules"},
        "store": f"sqlite:///{tmp_path / 'corral.db'}",
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


@asynccontextmanager
async def _client(tmp_path: Path, **callbacks: Any):
    upstream = _everything()
    agent = _agent(tmp_path, upstream)
    params = StdioServerParameters(command=PROXY[0],
                                   args=[*PROXY[1:], "--agent", str(agent), "--as", "alice", "--", *upstream])
    with (tmp_path / "proxy.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write, **callbacks) as client:
            yield client


async def test_capabilities_progress_logging_and_sampling_reach_the_client(tmp_path):
    messages: list[Any] = []
    asked: list[Any] = []

    async def on_message(message: Any) -> None:
        messages.append(message)

    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(text="a sampled answer"),
                                         model="client-model")

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/project", name="project")])

    async with _client(tmp_path, message_handler=on_message, sampling_callback=sampling,
                       list_roots_callback=roots) as client:
        init = await client.initialize()
        caps = init.capabilities
        # every capability the server offers, with its listChanged / subscribe, not fewer
        assert caps.tools.list_changed is True and caps.prompts.list_changed is True
        assert caps.resources.list_changed is True and caps.resources.subscribe is True
        assert caps.logging is not None and caps.completions is not None

        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "trigger-sampling-request" in tools  # offered because this client can sample
        finish = tools["corral_finish_commit"].annotations
        assert finish.read_only_hint is False and finish.destructive_hint is True
        assert tools["corral_begin_decide"].annotations.read_only_hint is True

        # progress of a call reaches the call
        progress: list[tuple[float, float | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total))

        long = await client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3},
                                      progress_callback=on_progress)
        assert not long.is_error, long.content
        assert [p[0] for p in progress] == [1, 2, 3] and progress[-1][1] == 3

        # the server's log messages reach the client
        assert not (await client.call_tool("toggle-simulated-logging", {})).is_error
        with anyio.fail_after(15):
            while not any(isinstance(m, types.LoggingMessageNotification) for m in messages):
                await anyio.sleep(0.05)

        # the server's sampling request is put to this client, and its answer goes back
        sampled = await client.call_tool("trigger-sampling-request", {"prompt": "say hi", "maxTokens": 20})
        assert not sampled.is_error, sampled.content
        assert asked and "say hi" in json.dumps(asked[0].model_dump(mode="json"))
        assert "a sampled answer" in sampled.content[0].text

        # resources and prompts pass through
        resources = (await client.list_resources()).resources
        assert resources
        read = await client.read_resource(resources[0].uri)
        assert read.contents
        prompts = (await client.list_prompts()).prompts
        assert prompts

        # and governance still decides: a rule refuses, nothing runs upstream
        refused = await client.call_tool("echo", {"message": "forbidden"})
        assert refused.is_error and re.match(r"not that word", json.loads(refused.content[0].text)["reason"])


async def test_a_client_without_sampling_is_not_offered_it(tmp_path):
    async with _client(tmp_path) as client:
        await client.initialize()
        names = [t.name for t in (await client.list_tools()).tools]
        assert "echo" in names and "trigger-sampling-request" not in names
