"""``corral mcp-proxy``: put corral's governance in front of any MCP server.

    MCP client ──stdio or HTTP──▶ corral mcp-proxy ──stdio or HTTP──▶ upstream MCP server
                                  (governor_from_config)

The proxy is an MCP server itself. It lists the upstream's tools (with their annotations, unchanged)
plus six phase tools, and runs every ``tools/call`` through the kernel the agent file declares — phase,
budget, rules, approvals, plan binding — in one corral session per proxy run (``--session ID`` resumes
one, so ``corral phase ID …`` and ``corral approvals approve …`` act on it from a shell). A refusal is
an ``isError`` result whose text is JSON with the reason and a hint, never a protocol error a client
might retry blindly. Resources, prompts, completions, logging levels and pings pass through unchanged.

Fail closed: malformed JSON-RPC, oversized messages (``MAX_MESSAGE_BYTES``), unknown methods and tools,
an upstream that dies, hangs or sends garbage — each gets a clear error, and none of them lets a call
through that governance did not allow.

One proxy, one session: over HTTP every connected client shares it (run one proxy per agent run).
``--as NAME`` names the principal of a new session; a resumed session keeps its own.

Concurrency: the downstream server runs on the main event loop; each governed call runs in a worker
thread (the kernel and its store are synchronous); the upstream connection has its own loop thread
(``McpClient``). The kernel is thread-safe, so concurrent calls from one client are fine.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO

from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    ConfigError,
    GovernanceError,
    TransactionFailed,
)
from corral.governance import refusals
from corral.harness.tools.mcp import (
    DEFAULT_CALL_TIMEOUT,
    McpClient,
    McpToolError,
    McpToolPlan,
    McpUpstreamError,
    describe_error,
    plan_tools,
)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest JSON-RPC message the proxy reads (one stdio line, or one HTTP body)."""

PHASE_TOOLS: dict[str, str] = {
    "corral_begin_decide": "begin_decide",
    "corral_propose_plan": "propose_plan",
    "corral_begin_commit": "begin_commit",
    "corral_finish_commit": "finish_commit",
    "corral_abort_commit": "abort_commit",
    "corral_back_to_explore": "back_to_explore",
}

_PHASE_DESCRIPTIONS = {
    "corral_begin_decide": "corral: move to the decide phase to evaluate what you found and propose a plan. "
    "Reads stay allowed; writes wait for commit.",
    "corral_propose_plan": "corral: in decide, propose the writes you intend to make, as "
    '[{"tool": name, "args": {...}}]; "*" matches any value. Returns plan_id.',
    "corral_begin_commit": "corral: enter the commit phase to carry out a plan (default: the latest proposed). "
    "Writes run inside a transaction that rolls back if one fails.",
    "corral_finish_commit": "corral: commit the transaction and end the commit phase (back to explore).",
    "corral_abort_commit": "corral: abandon the transaction; every completed reversible step is compensated.",
    "corral_back_to_explore": "corral: return to the explore phase (outside an open commit).",
}


def _log_stderr(message: str) -> None:
    print(f"corral mcp-proxy: {message}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------- governance


@dataclass(frozen=True)
class Upstream:
    """Where the upstream MCP server is: a command (stdio) or a URL (streamable HTTP)."""

    command: tuple[str, ...] | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ConfigError("give the upstream MCP server as a command (-- CMD …) or as --upstream URL, not both")
        if self.command is not None and not self.command:
            raise ConfigError("the upstream command is empty: put it after --, e.g. -- python -m mcp_server_time")

    @property
    def label(self) -> str:
        return " ".join(self.command) if self.command is not None else str(self.url)


def agent_entry_for(config: Any, upstream: Upstream) -> Any:
    """The agent file's ``mcp:`` entry for this upstream (same command or URL), whose ``effects``,
    ``compensate``, ``cost``, ``prefix`` and ``env`` then apply; None when the file has none."""
    from corral.harness.config import McpTool

    for tool in config.tools:
        if not isinstance(tool, McpTool):
            continue
        if upstream.command is not None and tool.mcp.command == list(upstream.command):
            return tool
        if upstream.url is not None and tool.mcp.url == upstream.url:
            return tool
    return None


class GovernedProxy:
    """The governance half of the proxy: a governor with the upstream's tools registered, one session,
    and ``call(name, arguments) -> CallToolResult`` that never lets an ungoverned call through.

    Synchronous and thread-safe; the MCP server half (``build_server``) calls it from worker threads.
    """

    def __init__(
        self,
        config: Any,
        client: McpClient,
        *,
        session_id: str | None = None,
        principal: str | None = None,
        store: Any = None,
        entry: Any = None,
        log: Callable[[str], None] = _log_stderr,
    ) -> None:
        from corral.governance.effects import READ
        from corral.harness.runtime import governor_from_config

        self.config = config
        self.client = client
        self.log = log
        self.governor = governor_from_config(config, store=store)
        try:
            self.plans: list[McpToolPlan] = plan_tools(
                client.tools,
                prefix=entry.prefix if entry else None,
                effects=entry.effects if entry else None,
                compensate=entry.compensate if entry else None,
                cost=entry.cost if entry else None,
                base_dir=config.base_dir,
            )
            clash = sorted({p.name for p in self.plans} & set(PHASE_TOOLS))
            if clash:
                raise ConfigError(f"the upstream offers {', '.join(clash)}, a name corral's phase tools use; "
                                  "give the agent file's mcp: entry for it a prefix")
            for plan in self.plans:
                self.governor.register(
                    plan.name, client.tool_function(plan.upstream, as_json=True), effect=plan.effect,
                    compensate=plan.compensate, cost=plan.cost, description=plan.description,
                )
            self._register_phase_tools(READ)
            self.recovery = self.governor.recover()
            who = principal or os.environ.get("USER") or _user()
            if session_id:
                self.session = self.governor.session(who, id=session_id, create=True)
            else:
                self.session = self.governor.session(who)
        except BaseException:
            self.governor.close()
            raise
        self._lock = threading.RLock()
        self._accepted: tuple[Any, ...] | None = None

    def _register_phase_tools(self, read: str) -> None:
        from corral.harness import runtime

        for name, harness_name in PHASE_TOOLS.items():
            fn = getattr(runtime, harness_name)
            self.governor.register(name, fn, effect=read, description=_PHASE_DESCRIPTIONS[name])

    # ------------------------------------------------------------------------------------ listing

    def tools(self) -> list[Any]:
        """What ``tools/list`` answers: the upstream's tools as registered, then the phase tools."""
        import mcp_types as types

        listed = []
        by_upstream = {t.name: t for t in self.client.tools}
        for plan in self.plans:
            if not self.allowed(plan.name):
                continue
            listed.append(by_upstream[plan.upstream].model_copy(update={"name": plan.name}))
        for name in PHASE_TOOLS:
            listed.append(types.Tool(name=name, description=_PHASE_DESCRIPTIONS[name],
                                     input_schema=_phase_schema(name),
                                     annotations=types.ToolAnnotations(
                                         read_only_hint=name != "corral_abort_commit",
                                         destructive_hint=name == "corral_abort_commit",
                                         open_world_hint=False)))
        return listed

    def allowed(self, name: str) -> bool:
        """``allowed_tools`` from the agent file; the phase tools are always allowed."""
        return name in PHASE_TOOLS or any(fnmatchcase(name, p) for p in self.config.allowed_tools)

    # -------------------------------------------------------------------------------------- calls

    def call(self, name: str, arguments: dict[str, Any] | None) -> Any:
        """Govern and run one ``tools/call``. Always returns a ``CallToolResult``; refusals are errors."""
        import mcp_types as types

        args = dict(arguments or {})
        try:
            if not self.allowed(name):
                return _error_result({"blocked": True, "reason": f"unknown tool {name!r}: not in allowed_tools",
                                      "hint": "use one of the tools tools/list shows"})
            if name in PHASE_TOOLS:
                with self._lock:  # a phase change and the session sync must not interleave
                    session = self._current_session()
                    value = self._run_phase_tool(session, name, args)
                return types.CallToolResult(content=[types.TextContent(text=_json(value))],
                                            structured_content=value if isinstance(value, dict) else None)
            session = self._current_session()
            data = self._run_tool(session, name, args)
            return types.CallToolResult.model_validate(data)
        except ApprovalPending as pending:
            return self._pending(name, pending)
        except ApprovalDenied as denied:
            return _error_result({"denied": True, "reason": denied.reason, "trace": _trace_id(denied),
                                  "hint": "do not retry this call as it is"})
        except TransactionFailed as failed:
            return self._rolled_back(failed)
        except GovernanceError as refused:  # Blocked, PhaseError, ConfigError, …
            with self._lock:
                hint = _hint(self.session, refused)
            return _error_result({"blocked": True, "reason": refused.reason, "hint": hint,
                                  "trace": _trace_id(refused)})
        except McpToolError as failed:
            if failed.result.get("content"):
                return types.CallToolResult.model_validate({**failed.result, "isError": True})
            return _error_result({"error": str(failed)})
        except McpUpstreamError as gone:
            return _error_result({"error": str(gone), "hint": "the upstream MCP server is not answering; "
                                  "check it (the call may or may not have run there)"})
        except Exception as exc:  # a tool's own failure, or a fault: either way an error, never an allow
            return _error_result({"error": describe_error(exc)})

    def _run_tool(self, session: Any, name: str, args: dict[str, Any]) -> Any:
        """Reads run outside any transaction (a failing read never rolls back writes); writes go through
        the session, so a commit makes them transaction steps and explore or decide refuses them."""
        return session.submit(name, args).result

    def _run_phase_tool(self, session: Any, name: str, args: dict[str, Any]) -> Any:
        from corral.harness.runtime import CURRENT, RunContext

        token = CURRENT.set(RunContext(harness=None, session=session, workspace=Path.cwd()))  # type: ignore[arg-type]
        try:
            return session.submit(name, args, outside_transaction=True).result
        finally:
            CURRENT.reset(token)

    def _current_session(self) -> Any:
        """The session, reloaded when another process (``corral phase``) moved it since we last looked."""
        with self._lock:
            session = self.session
            try:
                record = self.governor.store.get_session(session.id)
            except Exception:
                return session  # the governed call meets the same store and fails closed there
            if record is None:
                return session
            stored = (record.get("phase"), record.get("plan"), record.get("tx"))
            if stored == _signature(session) or stored == self._accepted:
                return session
            fresh = self.governor.session(id=session.id)
            self.session = fresh
            if _signature(fresh) != stored:
                self._accepted = stored
                self.log(f"session {session.id}: the store says {stored[0]} (transaction {stored[2]}), which "
                         f"cannot be restored here; continuing in {fresh.phase}")
            else:
                self.log(f"session {session.id} was moved to {fresh.phase} by another process")
            return fresh

    def _pending(self, name: str, pending: ApprovalPending) -> Any:
        approval = pending.approval_id
        store = self.governor.store.url
        self.log(f"{name} waits for approval {approval}: corral approvals approve {approval} --as NAME "
                 f"--store {store}")
        return _error_result({
            "pending": True, "approval": approval, "reason": pending.reason, "trace": _trace_id(pending),
            "hint": f"a person approves it with: corral approvals approve {approval} --as NAME --store {store}; "
                    f"then call {name} again with the same arguments and it runs once",
        })

    def _rolled_back(self, failed: TransactionFailed) -> Any:
        """A step failed in commit: the kernel rolled back; leave the finished commit so the session is
        usable again, and say what happened."""
        tx = failed.tx
        with self._lock:
            if self.session.phase == "commit" and self.session.open_transaction is None:
                try:
                    self.session.end_commit(failed)
                except Exception:
                    pass
        payload: dict[str, Any] = {
            "error": str(failed), "transaction": tx.state if tx is not None else None,
            "hint": "the transaction ended; the session is back in explore: re-plan (corral_begin_decide)",
            "trace": _trace_id(failed),
        }
        if tx is not None:
            payload["compensated"] = [s.call.tool for s in reversed(tx.steps) if s.compensated]
        cause = failed.__cause__
        if isinstance(cause, McpToolError) and cause.result.get("content"):
            payload["tool_error"] = str(cause)
        elif isinstance(cause, McpUpstreamError):
            payload["hint"] = ("the upstream MCP server did not answer, so whether that step ran there is unknown: "
                               "check it before re-planning (the session is back in explore)")
        return _error_result(payload)

    def close(self) -> None:
        try:
            self.governor.close()
        finally:
            self.client.close()


def _signature(session: Any) -> tuple[Any, ...]:
    tx = session.open_transaction
    return (session.phase, session.plan.id if session.plan is not None else None, tx.id if tx is not None else None)


def _phase_schema(name: str) -> dict[str, Any]:
    empty: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    if name == "corral_propose_plan":
        step = {"type": "object", "properties": {"tool": {"type": "string"}, "args": {"type": "object"}},
                "required": ["tool"]}
        return {"type": "object", "properties": {"steps": {"type": "array", "items": step},
                                                  "rationale": {"type": "string"}},
                "required": ["steps"], "additionalProperties": False}
    if name == "corral_begin_commit":
        return {**empty, "properties": {"plan_id": {"type": "string"}}}
    if name == "corral_abort_commit":
        return {**empty, "properties": {"reason": {"type": "string"}}}
    return empty


#: The proxy's phase tools, as refusal hints name them.
PROXY_PHASE_TOOLS = refusals.PhaseTools(decide="corral_begin_decide", propose="corral_propose_plan",
                                        commit="corral_begin_commit", explore="corral_back_to_explore",
                                        finish="corral_finish_commit")


def _hint(session: Any, refused: GovernanceError) -> str:
    """What a client can do about a refusal, from the check that refused it (the trace says which)."""
    return refusals.hint(refused, phase=session.phase, phases=session.governor.phases, tools=PROXY_PHASE_TOOLS)


def _trace_id(exc: GovernanceError) -> str | None:
    return getattr(exc.trace, "id", None) if exc.trace is not None else None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _error_result(payload: dict[str, Any]) -> Any:
    import mcp_types as types

    payload = {k: v for k, v in payload.items() if v is not None}
    return types.CallToolResult(content=[types.TextContent(text=_json(payload))], is_error=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "user"


# ---------------------------------------------------------------------------------- the MCP server


def build_server(proxy: GovernedProxy) -> Any:
    """The downstream MCP server: governed ``tools/*``; everything the upstream offers besides, relayed."""
    import warnings

    import anyio
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    client = proxy.client

    def relay(what: str, request: type, result: type) -> Callable[..., Any]:
        async def handler(ctx: Any, params: Any) -> Any:
            try:
                return await client.arun(what, lambda s: s.send_request(request(params=params), result))
            except McpUpstreamError as exc:
                raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None

        return handler

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=proxy.tools())

    async def call_tool(ctx: Any, params: Any) -> Any:
        return await anyio.to_thread.run_sync(proxy.call, params.name, params.arguments or {})

    async def ping(ctx: Any, params: Any) -> Any:
        try:
            await client.arun("ping", lambda s: s.send_ping(), timeout=10)
        except McpUpstreamError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None
        return types.EmptyResult()

    handlers: dict[str, Any] = {"on_list_tools": list_tools, "on_call_tool": call_tool, "on_ping": ping}
    caps = client.capabilities
    if caps is not None and caps.resources is not None:
        handlers["on_list_resources"] = relay("resources/list", types.ListResourcesRequest,
                                              types.ListResourcesResult)
        handlers["on_list_resource_templates"] = relay("resources/templates/list",
                                                       types.ListResourceTemplatesRequest,
                                                       types.ListResourceTemplatesResult)
        handlers["on_read_resource"] = relay("resources/read", types.ReadResourceRequest, types.ReadResourceResult)
        if caps.resources.subscribe:
            handlers["on_subscribe_resource"] = relay("resources/subscribe", types.SubscribeRequest,
                                                      types.EmptyResult)
            handlers["on_unsubscribe_resource"] = relay("resources/unsubscribe", types.UnsubscribeRequest,
                                                        types.EmptyResult)
    if caps is not None and caps.prompts is not None:
        handlers["on_list_prompts"] = relay("prompts/list", types.ListPromptsRequest, types.ListPromptsResult)
        handlers["on_get_prompt"] = relay("prompts/get", types.GetPromptRequest, types.GetPromptResult)
    if caps is not None and caps.completions is not None:
        handlers["on_completion"] = relay("completion/complete", types.CompleteRequest, types.CompleteResult)
    if caps is not None and caps.logging is not None:
        handlers["on_set_logging_level"] = relay("logging/setLevel", types.SetLevelRequest, types.EmptyResult)
    info = client.server_info
    name = info.name if info is not None else "mcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # relaying a deprecated capability is not using it
        return Server(
            name,
            version=getattr(info, "version", "") or "",
            title=getattr(info, "title", None),
            description=f"{name}, governed by corral",
            instructions=client.instructions,
            **handlers,
        )


# ------------------------------------------------------------------------------------ stdio transport


def _error_line(request_id: Any, code: int, message: str) -> bytes:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8")


def _request_id(obj: Any) -> Any:
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
    return None


def _claim_stdio() -> tuple[BinaryIO, BinaryIO, Callable[[], None]]:
    """Take fd 0 and 1 for the wire; point them at /dev/null and stderr meanwhile, so a stray ``print``
    in a compensation or a child that reads stdin cannot corrupt the protocol."""
    sys.stdout.flush()
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)

    def restore() -> None:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        os.dup2(wire_out, 1)
        os.dup2(wire_in, 0)

    return os.fdopen(wire_in, "rb", closefd=False), os.fdopen(wire_out, "wb", buffering=0, closefd=False), restore


@asynccontextmanager
async def guarded_stdio(
    stdin: BinaryIO | None = None, stdout: BinaryIO | None = None, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Any:
    """Newline-delimited JSON-RPC over stdin/stdout, answering what the SDK's transport would drop:
    a line that is not JSON gets ``-32700``, one that is not a JSON-RPC message or is larger than
    ``max_bytes`` gets ``-32600`` — and the proxy reads on.

    The pipes are read and written by two daemon threads, so a client that stops reading or never
    closes stdin cannot keep the process alive after it was told to stop.
    """
    import asyncio
    import queue

    import anyio
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    restore: Callable[[], None] | None = None
    if stdin is None or stdout is None:
        stdin, stdout, restore = _claim_stdio()
    wire_in, wire_out = stdin, stdout
    loop = asyncio.get_running_loop()
    lines_send, lines_recv = anyio.create_memory_object_stream[tuple[bytes, bool]](1)
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def read_message() -> tuple[bytes, bool]:
        line = wire_in.readline(max_bytes + 1)
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # skip the rest of the oversized line
                rest = wire_in.readline(1 << 16)
                if not rest or rest.endswith(b"\n"):
                    break
            return line, True
        return line, False

    def read_pipe() -> None:
        while True:
            try:
                item = read_message()
            except (OSError, ValueError):
                item = (b"", False)
            try:
                asyncio.run_coroutine_threadsafe(lines_send.send(item), loop).result()
            except Exception:
                return  # the server is shutting down
            if not item[0]:
                return

    def write_pipe() -> None:
        while True:
            data = outbox.get()
            if data is None:
                return
            try:
                wire_out.write(data)
                wire_out.flush()
            except (OSError, ValueError):
                return  # the client is gone

    async def emit(data: bytes) -> None:
        outbox.put(data)

    async def reader() -> None:
        async with read_send, lines_recv:
            async for line, oversized in lines_recv:
                if not line:
                    return  # EOF: the client is gone
                if oversized:
                    await emit(_error_line(None, types.INVALID_REQUEST,
                                           f"Invalid Request: message larger than {max_bytes} bytes"))
                    continue
                text = line.strip()
                if not text:
                    continue
                try:
                    obj = json.loads(text)
                except (ValueError, UnicodeDecodeError) as exc:
                    await emit(_error_line(None, types.PARSE_ERROR, f"Parse error: not valid JSON ({exc})"))
                    continue
                if not isinstance(obj, dict):
                    kind = "a batch (array)" if isinstance(obj, list) else type(obj).__name__
                    await emit(_error_line(None, types.INVALID_REQUEST,
                                           f"Invalid Request: expected one JSON-RPC object, got {kind}"))
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_python(obj, by_name=False)
                except Exception as exc:
                    first = str(exc).splitlines()[0][:200]
                    await emit(_error_line(_request_id(obj), types.INVALID_REQUEST,
                                           f"Invalid Request: not a JSON-RPC 2.0 message ({first})"))
                    continue
                await read_send.send(SessionMessage(message))

    async def writer() -> None:
        async with write_recv:
            async for item in write_recv:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await emit(data.encode("utf-8"))

    threading.Thread(target=read_pipe, name="corral-mcp-proxy stdin", daemon=True).start()
    out_thread = threading.Thread(target=write_pipe, name="corral-mcp-proxy stdout", daemon=True)
    out_thread.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_recv, write_send
            finally:
                tg.cancel_scope.cancel()
    finally:
        outbox.put(None)
        await anyio.to_thread.run_sync(out_thread.join, 5.0, abandon_on_cancel=True)  # flush what was answered
        if restore is not None:
            restore()


# ------------------------------------------------------------------------------------------ running


def parse_listen(value: str) -> tuple[str, int]:
    """``127.0.0.1:8765`` → (host, port); port 0 picks a free one (printed at start)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen takes HOST:PORT, e.g. 127.0.0.1:8765, got {value!r}")
    return host.strip("[]"), int(port)


async def _stop_on_signal(stop: Callable[[], None]) -> None:
    """SIGTERM or SIGINT while serving: stop serving cleanly (the session closes, the upstream stops)."""
    import signal

    import anyio

    if threading.current_thread() is not threading.main_thread():
        return
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop()
            return


async def serve_stdio(server: Any, *, max_bytes: int = MAX_MESSAGE_BYTES,
                      stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    import anyio

    async with guarded_stdio(stdin, stdout, max_bytes=max_bytes) as (read, write), \
            anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope.cancel)
        await server.run(read, write, server.create_initialization_options())
        tg.cancel_scope.cancel()


async def serve_http(server: Any, host: str, port: int, *, max_bytes: int = MAX_MESSAGE_BYTES,
                     log: Callable[[str], None] = _log_stderr) -> None:
    import contextlib

    import anyio
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # the proxy handles signals itself (see _stop_on_signal)
            yield

    app = server.streamable_http_app(host=host, max_request_body_size=max_bytes)
    http = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))

    def stop() -> None:
        http.should_exit = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, stop)

        async def run() -> None:
            try:
                await http.serve()
            finally:
                tg.cancel_scope.cancel()

        tg.start_soon(run)
        while not http.started:
            await anyio.sleep(0.02)
        sockets = [s for srv in http.servers for s in srv.sockets]
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        log(f"serving MCP on http://{shown}:{bound}/mcp")


def _interrupt_on_sigterm() -> None:
    """Before and after serving, SIGTERM ends the proxy like Ctrl-C (``KeyboardInterrupt``), so what was
    started is still closed; while serving, ``_stop_on_signal`` stops it from inside the event loop."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def run_proxy(
    agent: str | Path,
    *,
    command: Sequence[str] | None = None,
    upstream_url: str | None = None,
    session: str | None = None,
    principal: str | None = None,
    store: str | None = None,
    listen: str | None = None,
    timeout: float = DEFAULT_CALL_TIMEOUT,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    log: Callable[[str], None] = _log_stderr,
) -> int:
    """Run the proxy until its client goes away (stdio), or SIGTERM / Ctrl-C. Returns an exit status:
    0 after a clean run or a stop by signal, 1 when it could not start (the reason is logged)."""
    import anyio

    from corral.harness.config import AgentConfigError, load_agent

    _interrupt_on_sigterm()
    try:
        upstream = Upstream(tuple(command) if command else None, upstream_url)
        address = parse_listen(listen) if listen else None
        config = load_agent(agent)
    except AgentConfigError as exc:
        log(str(exc))
        return 1
    except ConfigError as exc:
        log(f"error: {exc}")
        return 1
    entry = agent_entry_for(config, upstream)
    try:
        with ExitStack() as stack:
            try:
                client = McpClient(
                    command=list(upstream.command) if upstream.command else None, url=upstream.url,
                    env=entry.mcp.env if entry is not None else None, call_timeout=timeout,
                )
                stack.callback(client.close)
                client.start()
                proxy = GovernedProxy(config, client, session_id=session, principal=principal, store=store,
                                      entry=entry, log=log)
            except (McpUpstreamError, GovernanceError) as exc:
                log(f"error: {agent}: {exc}" if isinstance(exc, GovernanceError) else f"error: {exc}")
                return 1
            stack.callback(proxy.governor.close)  # runs before the client closes
            info = client.server_info
            s = proxy.session
            log(f"session {s.id}")
            log(f"agent {config.name} · principal {s.principal} · phase {s.phase} · store "
                f"{proxy.governor.store.url} · upstream {getattr(info, 'name', '?')} {getattr(info, 'version', '')} "
                f"({len(proxy.plans)} tools) via {upstream.label}")
            log(f"move the session with: corral phase {s.id} decide --agent {agent}")
            report = proxy.recovery
            if report is not None and getattr(report, "transactions", None):
                log(f"recovered {len(report.transactions)} transaction(s) a crashed process left open")
            server = build_server(proxy)
            if address is None:
                anyio.run(lambda: serve_stdio(server, max_bytes=max_message_bytes))
            else:
                anyio.run(lambda: serve_http(server, *address, max_bytes=max_message_bytes, log=log))
    except BaseException as exc:
        if _interrupted(exc):
            return 0
        if isinstance(exc, SystemExit) and exc.code not in (0, None):  # uvicorn exits when it cannot bind
            log(f"error: cannot serve on {listen}")
            return 1
        raise
    return 0


def _interrupted(exc: BaseException) -> bool:
    """A KeyboardInterrupt, alone or inside the exception groups a task group wraps it in."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_interrupted(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)
