"""``corral mcp-proxy --server URL``: the MCP proxy whose decisions a running ``corral serve`` makes.

The proxy still speaks MCP both ways (the official SDK) and runs each allowed call on its upstream;
what it does not do is open a store. Each ``tools/call`` is ``POST /v1/check`` — with the effect the
upstream's annotations imply, which the server uses only for a tool the agent file does not describe —
then the upstream call, then ``POST /v1/calls/{id}/finish`` with its result or error (``thin_client``).
A refusal, a pending approval, or a server that cannot be reached is an ``isError`` result that says
why and what to do; nothing runs upstream without an allowed decision.

Phases are the session's on the server (``POST /v1/sessions/{id}/phase`` and ``/plans`` move them);
this proxy offers no phase tools of its own. It serves one client over stdio, with the upstream's tools.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from corral.harness.tools.mcp import McpClient, McpToolError, McpUpstreamError, plan_tools
from corral.integrations.mcp_stdio import guarded_stdio
from corral.integrations.thin_client import TOKEN_ENV, Client, ServerError

ALLOWED = ("allowed", "flagged", "approved")


def _log_stderr(message: str) -> None:
    print(f"corral mcp-proxy: {message}", file=sys.stderr, flush=True)


def _error(payload: dict[str, Any]) -> Any:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(text=json.dumps(payload, ensure_ascii=False))],
                                is_error=True, structured_content=payload)


class RemoteGovernedProxy:
    """The proxy's governance half, asked of a server: ``tools()``, ``allowed(name)``, ``call(name, args)``."""

    def __init__(self, client: McpClient, server: Client, agent: str, session: str, *,
                 log: Callable[[str], None] = _log_stderr) -> None:
        self.client = client
        self.server = server
        self.agent = agent
        self.session = session
        self.log = log
        self.plans = {plan.name: plan for plan in plan_tools(client.tools)}

    def tools(self) -> list[Any]:
        by_upstream = {t.name: t for t in self.client.tools}
        return [by_upstream[p.upstream].model_copy(update={"name": p.name}) for p in self.plans.values()]

    def allowed(self, name: str) -> bool:
        return name in self.plans

    def call(self, name: str, arguments: dict[str, Any] | None) -> Any:
        import mcp_types as types

        plan = self.plans.get(name)
        if plan is None:
            return _error({"blocked": True, "reason": f"unknown tool {name!r}", "hint": "use a tool tools/list shows"})
        args = dict(arguments or {})
        try:
            answer = self.server.check(self.agent, self.session, name, args, effect=plan.effect)
        except ServerError as exc:
            return _error({"blocked": True, "reason": str(exc), "hint": "the call did not run"})
        decision, call_id = answer.get("decision"), answer.get("call_id")
        if decision == "pending":
            return _error({"pending": True, "approval": answer.get("approval"), "reason": answer.get("reason"),
                           "trace": call_id, "hint": f"another person approves it (corral approvals approve "
                           f"{answer.get('approval')} or the console); then call {name} again and it runs once"})
        if decision not in ALLOWED:
            return _error({"blocked": decision == "blocked", "denied": decision == "denied",
                           "reason": answer.get("reason"), "trace": call_id})
        try:
            data = self.client.call_json(plan.upstream, args)
        except McpToolError as failed:
            self._finish(call_id, error=str(failed))
            if failed.result.get("content"):
                return types.CallToolResult.model_validate({**failed.result, "isError": True})
            return _error({"error": str(failed)})
        except McpUpstreamError as gone:
            self._finish(call_id, error=f"the upstream did not answer: {gone}")
            return _error({"error": str(gone), "hint": "the upstream MCP server is not answering; check it "
                           "(the call may or may not have run there)"})
        self._finish(call_id, result=data)
        return types.CallToolResult.model_validate(data)

    def _finish(self, call_id: str, **outcome: Any) -> None:
        try:
            self.server.finish(call_id, **outcome)
        except ServerError as exc:  # the call ran: say so, the server records it as never finished
            self.log(f"could not record the outcome of call {call_id}: {exc}")


def build_remote_server(proxy: RemoteGovernedProxy) -> Any:
    """The downstream MCP server: the upstream's tools, each call decided by the corral server."""
    import anyio
    import mcp_types as types
    from mcp.server.lowlevel import Server

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=proxy.tools())

    async def call_tool(ctx: Any, params: Any) -> Any:
        return await anyio.to_thread.run_sync(proxy.call, params.name, params.arguments or {})

    info = proxy.client.server_info
    name = info.name if info is not None else "mcp"
    server = Server(name, version=getattr(info, "version", "") or "", description=f"{name}, governed by corral",
                    on_list_tools=list_tools, on_call_tool=call_tool)
    server.middleware = []
    return server


async def _serve_stdio(server: Any) -> None:
    async with guarded_stdio(None, None) as (read, write):
        await server.run(read, write, server.create_initialization_options())


def run_remote_proxy(
    server_url: str,
    agent: str,
    *,
    command: Sequence[str] | None = None,
    upstream_url: str | None = None,
    session: str | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] = _log_stderr,
) -> int:
    """Run the proxy until its client goes away; 1 when it could not start (the reason is logged)."""
    import anyio

    try:
        server = Client(server_url, os.environ.get(TOKEN_ENV), timeout=min(timeout, 30.0))
    except ServerError as exc:
        log(f"error: {exc}")
        return 1
    session = session or f"mcp-{secrets.token_hex(8)}"
    with ExitStack() as stack:
        try:
            client = McpClient(command=list(command) if command else None, url=upstream_url, call_timeout=timeout)
            stack.callback(client.close)
            client.start()
        except McpUpstreamError as exc:
            log(f"error: {exc}")
            return 1
        proxy = RemoteGovernedProxy(client, server, agent, session, log=log)
        log(f"session {session} · agent {agent} · decisions by {server.url} · {len(proxy.plans)} tools")
        try:
            anyio.run(_serve_stdio, build_remote_server(proxy))
        except KeyboardInterrupt:
            return 0
    return 0
