"""The shared conformance scenarios (conformance_scenarios.py) through ``corral mcp-proxy``.

The proxy runs as its own process in front of a small upstream MCP server (``MCPServer``, written into
the scenario's folder) that offers the conformance tools — the unknown ``delete_everything`` too — and
writes a line to a file for every tool that actually ran. The official MCP SDK client talks to the
proxy from a thread with its own event loop, because the scenario runner is synchronous.

The agent file declares the conformance policy through an ``mcp:`` entry whose command is the
upstream's: its ``effects``, ``cost`` and ``compensate`` maps say what ``write_agent``'s ``python:``
entries say, and ``allowed_tools`` names the declared tools only. Setup steps (phases, plans,
approvals) go through a kernel governor on the same SQLite store and session id; the proxy re-reads the
session from the store before each call.

The fault: the proxy is another process, so ``FaultyStore`` cannot be slipped into it. Instead the test
takes SQLite's write lock on the store (``BEGIN IMMEDIATE`` on its own connection) and holds it; the
agent file's store URL says ``?timeout=0.5``, so the proxy's next write — the budget reservation,
stored with the call's trace — waits half a second, fails, and the kernel refuses the call as a
governance fault. Reads still work (WAL), as they do when only the ledger is broken.

One difference from the reference, asserted as it is: the proxy refuses a tool outside
``allowed_tools`` before the kernel sees it, so the reason says ``not in allowed_tools`` rather than
``unknown tool`` (the decision, blocked and never run upstream, is the same).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import sqlite3
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from conformance_scenarios import (
    ALLOWED,
    BLOCKED,
    PENDING,
    PRINCIPAL,
    SCENARIOS,
    TOOLS,
    UNKNOWN_TOOL,
    Call,
    Outcome,
    Scenario,
    check_scenario,
    register_options,
    write_agent,
)
from mcp import ClientSession, StdioServerParameters, stdio_client

from corral.harness.config import load_agent
from corral.harness.runtime import governor_from_config

PROXY = [sys.executable, "-m", "corral.cli.mcp"]
STORE_TIMEOUT = 0.5  # seconds the proxy waits for the SQLite write lock before the store fails

UPSTREAM = textwrap.dedent('''\
    """The conformance tools as an MCP server; every tool that runs appends a line to the file in argv[1]."""

    import json
    import sys
    from typing import Any

    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations

    RAN = sys.argv[1]
    READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    REVERSIBLE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    IRREVERSIBLE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)
    server = MCPServer("conformance-upstream", version="1")


    def ran(tool: str, **args: Any) -> None:
        with open(RAN, "a", encoding="utf-8") as f:
            f.write(json.dumps([tool, args]) + "\\n")


    @server.tool(annotations=READ)
    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look up an order by id."""
        ran("lookup_order", order_id=order_id)
        return {"order_id": order_id, "status": "shipped"}


    @server.tool(annotations=READ)
    def search(query: str) -> dict[str, Any]:
        """Search the order archive (costs $0.50)."""
        ran("search", query=query)
        return {"hits": 3}


    @server.tool(annotations=REVERSIBLE)
    def update_note(order_id: str, text: str) -> dict[str, Any]:
        """Write a note on an order."""
        ran("update_note", order_id=order_id, text=text)
        return {"noted": True}


    @server.tool(annotations=REVERSIBLE)
    def issue_refund(order_id: str, amount: float) -> dict[str, Any]:
        """Refund an amount on an order."""
        ran("issue_refund", order_id=order_id, amount=amount)
        return {"refunded": amount}


    @server.tool(annotations=IRREVERSIBLE)
    def send_email(to: str, body: str) -> dict[str, Any]:
        """Send an email."""
        ran("send_email", to=to, body=body)
        return {"sent": True}


    @server.tool(annotations=IRREVERSIBLE)
    def delete_everything(confirm: bool = True) -> dict[str, Any]:
        """Delete every order."""
        ran("delete_everything", confirm=confirm)
        return {"deleted": "everything"}


    if __name__ == "__main__":
        server.run("stdio")
''')


def write_proxy_agent(directory: Path) -> tuple[Path, list[str]]:
    """``write_agent``'s policy, budget and tools, declared for the proxy: one ``mcp:`` entry for the
    upstream. Returns the agent file and the upstream command (the proxy finds the entry by it)."""
    write_agent(directory)  # the rules file and conformance_tools (its compensate) beside the agent file
    (directory / "upstream.py").write_text(UPSTREAM, encoding="utf-8")
    command = [sys.executable, str(directory / "upstream.py"), str(directory / "ran.jsonl")]
    entry: dict[str, Any] = {
        "mcp": {"command": command},
        "effects": {name: decl.effect for name, decl in TOOLS.items()},
        "cost": {name: decl.cost for name, decl in TOOLS.items()},
        "compensate": {name: "conformance_tools:compensate" for name, decl in TOOLS.items()
                       if decl.effect == "reversible"},
        "labels": {name: list(decl.labels) for name, decl in TOOLS.items() if decl.labels},
        "tags": {name: list(decl.tags) for name, decl in TOOLS.items() if decl.tags},
    }
    agent = yaml.safe_load((directory / "agent.yaml").read_text(encoding="utf-8"))
    agent["tools"] = [entry]
    agent["allowed_tools"] = list(TOOLS)
    agent["store"] = f"sqlite:///{directory / 'corral.db'}?timeout={STORE_TIMEOUT}"
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(agent, sort_keys=False), encoding="utf-8")
    return path, command


class ProxyClient:
    """The MCP SDK client, connected to a proxy process, usable from synchronous code.

    The client's context managers live in one task on a loop in a background thread (anyio's cancel
    scopes must be left in the task that entered them); ``run`` hands that task a coroutine and waits.
    """

    def __init__(self, params: StdioServerParameters, errlog: Any, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcp client", daemon=True)
        self.thread.start()
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.queue: asyncio.Queue[Any] | None = None
        self.main = asyncio.run_coroutine_threadsafe(self._serve(params, errlog), self.loop)
        try:
            self.ready.result(timeout)
        except BaseException:
            self.close()
            raise

    async def _serve(self, params: StdioServerParameters, errlog: Any) -> None:
        try:
            self.queue = asyncio.Queue()
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                self.ready.set_result(None)
                while (item := await self.queue.get()) is not None:
                    work, done = item
                    try:
                        done.set_result(await work(client))
                    except Exception as exc:
                        done.set_exception(exc)
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def run(self, work: Callable[[ClientSession], Awaitable[Any]]) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        assert self.queue is not None
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (work, done))
        return done.result(self.timeout)

    def close(self) -> None:
        if self.queue is not None and not self.main.done():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)
            try:
                self.main.result(self.timeout)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.timeout)
        self.loop.close()


_KINDS = {"blocked": BLOCKED, "denied": BLOCKED, "error": BLOCKED, "pending": PENDING}


class McpProxyPoint:
    """The conformance scenarios through ``corral mcp-proxy`` (stdio), as an MCP client sees them."""

    name = "mcp-proxy"

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, scenario: Scenario) -> None:
        self.dir = self.root / scenario.name
        self.agent, upstream = write_proxy_agent(self.dir)
        self.ran_file = self.dir / "ran.jsonl"
        self.ran_file.touch()
        self.lock: sqlite3.Connection | None = None
        self.governors: list[Any] = []
        self.log = self.dir / "proxy.log"
        self.errlog = self.log.open("w", encoding="utf-8")
        params = StdioServerParameters(
            command=PROXY[0], args=[*PROXY[1:], "--agent", str(self.agent), "--as", PRINCIPAL, "--", *upstream],
            cwd=str(self.dir),
        )
        self.client = ProxyClient(params, self.errlog)
        self.session_id = re.search(r"corral mcp-proxy: session (\S+)", self.log.read_text()).group(1)
        listed = self.client.run(lambda c: c.list_tools())
        self.listed = [t.name for t in listed.tools]

    def kernel_session(self) -> Any:
        """A kernel governor on the proxy's store, the tools declared as the agent file declares them
        (a plan may only name known tools); the bodies never run, the proxy's upstream does."""
        gov = governor_from_config(load_agent(self.agent))
        self.governors.append(gov)
        for name in TOOLS:
            gov.register(name, _never_here(name), **register_options(name))
        return gov.session(id=self.session_id)

    def call(self, tool: str, args: Mapping[str, Any]) -> Outcome:
        before = self._ran()
        result = self.client.run(lambda c: c.call_tool(tool, dict(args)))
        ran = self._ran() > before
        text = result.content[0].text if result.content else ""
        if not result.is_error:
            return Outcome(ALLOWED, text, ran)
        refusal = json.loads(text)
        kind = next((k for k in _KINDS if refusal.get(k)), "error")
        return Outcome(_KINDS[kind], str(refusal.get("reason") or refusal.get("error") or text), ran)

    def inject_fault(self) -> None:
        """Hold SQLite's write lock: the proxy's next write (the reservation) times out and fails."""
        self.lock = sqlite3.connect(self.dir / "corral.db", isolation_level=None, timeout=10)
        self.lock.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
        self.client.close()
        self.errlog.close()
        for gov in self.governors:
            gov.close()

    def _ran(self) -> int:
        return len(self.ran_file.read_text(encoding="utf-8").splitlines())


def _never_here(name: str) -> Callable[..., Any]:
    def body(**kwargs: Any) -> Any:
        raise AssertionError(f"{name} ran in the test process; only the proxy's upstream runs tools")

    body.__name__ = name
    return body


def through_the_proxy(scenario: Scenario) -> Scenario:
    """The scenario as the proxy words it: a tool outside ``allowed_tools`` is refused by the proxy
    itself, "not in allowed_tools", before the kernel would call it an unknown tool."""
    steps = tuple(
        replace(step, reason="not in allowed_tools")
        if isinstance(step, Call) and step.tool == UNKNOWN_TOOL else step
        for step in scenario.steps
    )
    return replace(scenario, steps=steps)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_proxy_gives_the_same_decisions(scenario: Scenario, tmp_path: Path) -> None:
    point = McpProxyPoint(tmp_path)
    played = check_scenario(point, through_the_proxy(scenario))
    assert all(p.outcome.ran is not None for p in played)  # the upstream's file says what ran
    assert UNKNOWN_TOOL not in point.listed and set(TOOLS) <= set(point.listed)
    ran = [json.loads(line)[0] for line in (tmp_path / scenario.name / "ran.jsonl").read_text().splitlines()]
    assert ran == [p.step.tool for p in played if p.outcome.decision == ALLOWED]


def test_the_fault_is_refused_as_a_governance_fault_and_traced_as_blocked(tmp_path: Path) -> None:
    """After the lock is released, the store holds the refusal the proxy could not write at the time
    or nothing at all — never an allowed call."""
    scenario = next(s for s in SCENARIOS if s.name == "internal_fault")
    point = McpProxyPoint(tmp_path)
    played = check_scenario(point, scenario)
    assert "governance fault" in played[-1].outcome.text and "locked" in played[-1].outcome.text
    gov = governor_from_config(load_agent(tmp_path / scenario.name / "agent.yaml"))
    try:
        calls = [(t.tool, t.decision) for t in gov.session(id=point.session_id).traces if t.kind == "call"]
        budget = gov.session(id=point.session_id).budget
    finally:
        gov.close()
    assert calls[0] == ("lookup_order", "allowed") and ("search", "allowed") not in calls
    assert (budget.spent, budget.reserved) == (0.0, 0.0)
