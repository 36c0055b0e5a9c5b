"""``corral mcp-proxy``: put corral's governance in front of any MCP server.

    MCP client ──stdio or HTTP──▶ corral mcp-proxy ──stdio or HTTP──▶ upstream MCP server
                                  (governor_from_config)

The proxy is an MCP server itself. It lists the upstream's tools (with their annotations, unchanged)
plus six phase tools, and runs every ``tools/call`` through the kernel the agent file declares — phase,
budget, rules, approvals, plan binding — through the kernel's seam (``begin_call`` … ``finish``). A
refusal is an ``isError`` result whose text is JSON with the reason and a hint, never a protocol error a
client might retry blindly. In commit, an irreversible call is checked at once (a refusal comes back at
once) and deferred: it answers ``{"deferred": true, "runs_at": "corral_finish_commit"}``, and
``corral_finish_commit`` checks it again and runs it — exactly as the harness does (DESIGN §11).

Each client connection is its own corral session with its own upstream connection (over stdio there is
one; over HTTP one per ``Mcp-Session-Id``), so everything else passes through both ways, to the client
it concerns: resources, prompts, completions, logging levels and pings; the upstream's notifications
(progress, logging, ``list_changed``, resource updates) and its requests (sampling, elicitation, roots),
which it may make only where the client declared it can answer them. The proxy advertises every
capability the upstream offers.

``--session ID`` resumes a session over stdio (``corral phase ID …`` and ``corral approvals approve …``
act on it from a shell); ``--as NAME`` names the principal of new sessions. Each session id is logged
to stderr and named in every refusal.

Fail closed: malformed JSON-RPC, oversized messages (``MAX_MESSAGE_BYTES``), unknown methods and tools,
an upstream that dies, hangs or sends garbage — each gets a clear error, and none of them lets a call
through that governance did not allow.

Concurrency: everything runs on one event loop — the downstream server, each connection's upstream
link, and governed reads (a decision in memory; its trace is group-committed). Writes and phase tools
run the kernel on a worker thread (they wait for the store's commits); a deferred call run at
``corral_finish_commit`` reaches its upstream back on the loop. The kernel is thread-safe.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
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
from corral.governance.effects import IRREVERSIBLE, READ
from corral.harness.tools.mcp import (
    DEFAULT_CALL_TIMEOUT,
    McpToolError,
    McpToolPlan,
    McpUpstreamError,
    describe_error,
    plan_tools,
    result_text,
)
from corral.integrations.mcp_stdio import MAX_MESSAGE_BYTES, guarded_stdio
from corral.integrations.mcp_upstream import UpstreamLink

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
    "Writes run inside a transaction that rolls back if one fails; irreversible calls are checked when you "
    "make them and run at corral_finish_commit.",
    "corral_finish_commit": "corral: run the deferred irreversible calls, commit the transaction and end the "
    "commit phase (back to explore). If a deferred call waits for approval, call it again once approved: "
    "calls that already ran are not repeated.",
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
    """The governance half of the proxy, shared by every client connection: the governor the agent file
    declares, the upstream's tools registered under their governed names, the phase tools, recovery.

    ``plan(tools)`` turns an upstream's tool list into governed tools (registering the new ones), so a
    connection whose upstream lists more (a server that offers sampling tools only to clients that can
    sample) or changes its list (``tools/list_changed``) is governed the same way.
    """

    def __init__(
        self,
        config: Any,
        tools: Sequence[Any],
        *,
        store: Any = None,
        entry: Any = None,
        principal: str | None = None,
        log: Callable[[str], None] = _log_stderr,
    ) -> None:
        from corral.harness.runtime import governor_from_config

        self.config = config
        self.entry = entry
        self.log = log
        self.principal = principal or os.environ.get("USER") or _user()
        self.governor = governor_from_config(config, store=store)
        self._lock = threading.Lock()
        self._plans: dict[str, McpToolPlan] = {}  # governed name -> plan
        self._effects: dict[str, str] = {}  # governed name -> declared effect (the hot path reads it)
        try:
            self.plans = self.plan(tools, strict=True)
            self._register_phase_tools()
            self.recovery = self.governor.recover()
        except BaseException:
            self.governor.close()
            raise

    # --------------------------------------------------------------------------------- registration

    def plan(self, tools: Sequence[Any], *, strict: bool = False) -> list[McpToolPlan]:
        """Name, effect, compensation and cost for each upstream tool, registering those not yet known.

        ``strict`` (at start): an override in the agent file that names no listed tool is an error."""
        entry = self.entry
        effects = dict(entry.effects) if entry else {}
        compensate = dict(entry.compensate) if entry else {}
        cost = dict(entry.cost) if entry else {}
        labels = entry.labels if entry else None
        tags = entry.tags if entry else None
        if not strict:  # a connection may list fewer tools than the proxy saw at start
            prefix = (entry.prefix if entry else None) or ""
            known = {t.name for t in tools} | {prefix + t.name for t in tools}
            effects, compensate, cost = ({k: v for k, v in table.items() if k in known}
                                         for table in (effects, compensate, cost))
            labels, tags = ({k: v for k, v in table.items() if k in known} if isinstance(table, dict) else table
                            for table in (labels, tags))
        plans = plan_tools(tools, prefix=entry.prefix if entry else None, effects=effects, compensate=compensate,
                           cost=cost, base_dir=self.config.base_dir, labels=labels, tags=tags,
                           untrusted=bool(entry and entry.untrusted))
        clash = sorted({p.name for p in plans} & set(PHASE_TOOLS))
        if clash:
            raise ConfigError(f"the upstream offers {', '.join(clash)}, a name corral's phase tools use; "
                              "give the agent file's mcp: entry for it a prefix")
        with self._lock:
            for plan in plans:
                if plan.name in self._plans:
                    continue
                self.governor.register(plan.name, _run_upstream(plan.upstream), effect=plan.effect,
                                       compensate=plan.compensate, cost=plan.cost, description=plan.description,
                                       **plan.flow_options())
                self._plans[plan.name] = plan
                self._effects[plan.name] = plan.effect
        return plans

    def _register_phase_tools(self) -> None:
        from corral.governance.effects import READ
        from corral.harness import phase_tools

        for name, harness_name in PHASE_TOOLS.items():
            fn = phase_tools.PHASE_TOOLS[harness_name]
            self.governor.register(name, fn, effect=READ, description=_PHASE_DESCRIPTIONS[name])
            self._effects[name] = READ

    def allowed(self, name: str) -> bool:
        """``allowed_tools`` from the agent file; the phase tools are always allowed."""
        return name in PHASE_TOOLS or any(fnmatchcase(name, p) for p in self.config.allowed_tools)

    def listed(self, tools: Sequence[Any]) -> list[Any]:
        """What ``tools/list`` answers: the upstream's tools under their governed names, then the phase tools."""
        plans = self.plan(tools)
        by_upstream = {t.name: t for t in tools}
        listed = [by_upstream[p.upstream].model_copy(update={"name": p.name}) for p in plans if self.allowed(p.name)]
        return listed + _phase_tool_list()

    def effect(self, name: str, args: dict[str, Any]) -> str | None:
        """The call's effect (``effect_fn`` refines it per call); None for a tool the governor does not know."""
        return self._effects.get(name)  # upstream tools have one declared effect (no effect_fn)

    def upstream_name(self, name: str) -> str:
        return self._plans[name].upstream

    # ------------------------------------------------------------------------------------- sessions

    def open_session(self, session_id: str | None = None) -> Any:
        """A new corral session for a client connection (``session_id``: resume it, or start it under that id)."""
        if session_id:
            return self.governor.session(self.principal, id=session_id, create=True)
        return self.governor.session(self.principal)

    def close(self) -> None:
        self.governor.close()


def _run_upstream(upstream: str) -> Callable[..., Any]:
    """The registered body of an upstream tool. The proxy runs calls itself (``begin_call`` … ``finish``);
    the kernel runs this one only for a deferred call at ``corral_finish_commit``, in a worker thread of the
    connection that made it, which it reaches through ``CONNECTION``."""

    def mcp_tool(**arguments: Any) -> Any:
        import anyio.from_thread

        connection = CONNECTION.get(None)
        if connection is None:
            raise McpUpstreamError(f"{upstream} runs only through a client connection of corral mcp-proxy")
        return anyio.from_thread.run(connection.run_deferred, upstream, arguments)

    mcp_tool.__name__ = mcp_tool.__qualname__ = upstream
    mcp_tool.__doc__ = f"MCP tool {upstream}, run on the upstream of the connection that called it"
    return mcp_tool


CONNECTION: contextvars.ContextVar[Connection] = contextvars.ContextVar("corral_mcp_proxy_connection")


# ----------------------------------------------------------------------------------- the seam (kernel)


def begin_call(session: Any, tool: str, args: dict[str, Any]) -> Any:
    """The kernel's public seam: decide, reserve, trace, log INTENT — or raise the refusal."""
    return session.begin_call(tool, args)


# ------------------------------------------------------------------------------------ one connection


class Connection:
    """One downstream client connection: its own corral session and its own upstream connection.

    Everything the upstream says on this connection — notifications, progress, sampling, elicitation and
    roots requests — goes to this client and no other. Governed calls run on the event loop when they
    are reads (a decision in memory, its trace group-committed) and on a worker thread otherwise (a
    write waits for the store's commits; ``corral_finish_commit`` runs deferred calls, which reach the
    upstream back through this loop).
    """

    def __init__(self, proxy: GovernedProxy, upstream: Upstream, *, key: str | None, session_id: str | None = None,
                 timeout: float = DEFAULT_CALL_TIMEOUT, env: Mapping[str, str] | None = None) -> None:
        import anyio

        self.proxy = proxy
        self.upstream = upstream
        self.key = key
        self.session_id = session_id
        self.timeout = timeout
        self.env = env
        self.session: Any = None
        self.link: UpstreamLink | None = None
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.failure: str | None = None
        self.last_seen = 0.0
        self._downstream: Any = None  # the newest ServerSession of this connection: its standalone channel
        self._inflight: dict[Any, Any] = {}  # downstream request id -> its ServerSession, for related sends
        self._phase_lock = anyio.Lock()  # phase tools one at a time (they read and move the session)
        self._accepted: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self, client_capabilities: Any, *, task_status: Any) -> None:
        """Connect upstream with the client's capabilities, open the session, serve until closed."""
        import anyio

        link = UpstreamLink(command=list(self.upstream.command) if self.upstream.command else None,
                            url=self.upstream.url, env=self.env, label=self.upstream.label, forward=self,
                            client_capabilities=client_capabilities, call_timeout=self.timeout)
        link.on_tools_changed = self._tools_changed
        self.link = link
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(link.run)
                if link.failure is not None:
                    self.failure = link.failure
                else:
                    try:
                        self.session = await anyio.to_thread.run_sync(self.proxy.open_session, self.session_id)
                        if self.key is not None:
                            self.proxy.log(f"session {self.session.id} for client {self.key}")
                    except Exception as exc:
                        self.failure = f"cannot open a corral session: {describe_error(exc)}"
                        link.close()
                self.ready.set()
                task_status.started()
        finally:
            self.ready.set()
            self.done.set()

    def close(self) -> None:
        if self.link is not None:
            self.link.close()

    async def _tools_changed(self, tools: list[Any]) -> None:
        import anyio

        await anyio.to_thread.run_sync(self.proxy.plan, tools)

    # ------------------------------------------------------------------------------------ forwarding

    def seen(self, ctx: Any) -> None:
        import time

        self._downstream = ctx.session
        self.last_seen = time.monotonic()

    def _channel(self) -> tuple[Any, Any]:
        """Where to send something the upstream started: beside a request in flight (so it rides that
        request's stream over HTTP), else on the connection's own channel."""
        if self._inflight:
            request_id, session = next(reversed(self._inflight.items()))
            return session, request_id
        return self._downstream, None

    async def notify(self, notification: Any) -> None:
        session, related = self._channel()
        if session is None:
            return
        try:
            await session.send_notification(notification, related_request_id=related)
        except Exception as exc:  # a client that went away: nothing to tell
            self.proxy.log(f"could not forward {getattr(notification, 'method', 'a notification')}: "
                           f"{describe_error(exc)}")

    async def ask(self, request: Any, result_type: type) -> Any:
        from mcp.shared.message import ServerMessageMetadata

        session, related = self._channel()
        if session is None:
            raise McpUpstreamError("no client is connected to answer the upstream's request")
        metadata = ServerMessageMetadata(related_request_id=related) if related is not None else None
        return await session.send_request(request, result_type, metadata=metadata)

    # ----------------------------------------------------------------------------------------- calls

    async def relay(self, ctx: Any, what: str, request: Any, result_type: type) -> Any:
        """A request the upstream answers unchanged (resources, prompts, completions, logging level)."""
        link = self._link()
        self._inflight[ctx.request_id] = ctx.session
        try:
            return await link.request(what, lambda s: s.send_request(request, result_type))
        finally:
            self._inflight.pop(ctx.request_id, None)

    def _link(self) -> UpstreamLink:
        if self.failure is not None or self.link is None:
            raise McpUpstreamError(self.failure or "the upstream is not connected")
        return self.link

    async def call(self, ctx: Any, name: str, args: dict[str, Any]) -> Any:
        """Govern and run one ``tools/call``. Always a ``CallToolResult``; refusals are errors."""
        import anyio
        import mcp_types as types

        proxy = self.proxy
        self._inflight[ctx.request_id] = ctx.session
        try:
            if not proxy.allowed(name):
                return _error_result({"blocked": True, "reason": f"unknown tool {name!r}: not in allowed_tools",
                                      "hint": "use one of the tools tools/list shows"})
            if name in PHASE_TOOLS:
                async with self._phase_lock:
                    value = await anyio.to_thread.run_sync(self._phase_tool, name, args)
                if isinstance(value, _Refusal):
                    return value.result
                return types.CallToolResult(content=[types.TextContent(text=_json(value))],
                                            structured_content=value if isinstance(value, dict) else None)
            effect = proxy.effect(name, args)
            if effect is None or effect == READ:  # an unknown tool is refused by the kernel, traced
                return await self._read(ctx, name, args)
            return await self._write(ctx, name, args, effect)
        except GovernanceError as refused:
            return await anyio.to_thread.run_sync(self._refusal, name, refused)
        except McpUpstreamError as gone:
            return _error_result({"error": str(gone), "hint": "the upstream MCP server is not answering; "
                                  "check it (the call may or may not have run there)"})
        except Exception as exc:  # a fault: an error, never an allow
            return _error_result({"error": describe_error(exc)})
        finally:
            self._inflight.pop(ctx.request_id, None)

    async def _upstream_call(self, ctx: Any, name: str, args: dict[str, Any]) -> Any:
        import mcp_types as types

        link = self._link()
        upstream = self.proxy.upstream_name(name)
        request = types.CallToolRequest(params=types.CallToolRequestParams(name=upstream, arguments=args))
        progress = ctx.session.report_progress
        return await link.request(f"tools/call {upstream}",
                                  lambda s: s.send_request(request, types.CallToolResult, progress_callback=progress))

    async def _read(self, ctx: Any, name: str, args: dict[str, Any]) -> Any:
        """A read: decided on the loop (nothing waits for a disk), run upstream, settled on the loop."""
        handle = begin_call(self.session, name, args)
        try:
            result = await self._upstream_call(ctx, name, args)
        except BaseException as exc:
            handle.finish(error=exc, rollback=False)
            raise
        if result.is_error:
            handle.finish(error=McpToolError(result_text(result) or f"{name} failed"), rollback=False)
        else:
            handle.finish(result=result)
        return result

    async def _write(self, ctx: Any, name: str, args: dict[str, Any], effect: str) -> Any:
        """A write: inside a commit an irreversible call is checked now and deferred to
        ``corral_finish_commit`` (as the harness does); anything else is decided, run and settled."""
        import anyio

        session = await anyio.to_thread.run_sync(self.current_session)
        tx = session.open_transaction
        if tx is not None and effect == IRREVERSIBLE:
            await anyio.to_thread.run_sync(lambda: tx.defer(name, **args))
            return _ok_result(DEFERRED)
        handle = await anyio.to_thread.run_sync(begin_call, session, name, args)
        try:
            result = await self._upstream_call(ctx, name, args)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):  # settled even when the client cancelled the request
                await anyio.to_thread.run_sync(partial(handle.finish, error=exc))
            raise
        if result.is_error:
            data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            error = McpToolError(result_text(result) or f"{name} failed", data)
            try:
                await anyio.to_thread.run_sync(lambda: handle.finish(error=error))
            except TransactionFailed as failed:
                return await anyio.to_thread.run_sync(self._rolled_back, failed)
            return result
        data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        await anyio.to_thread.run_sync(lambda: handle.finish(result=data))
        return result

    async def run_deferred(self, upstream: str, args: dict[str, Any]) -> Any:
        """A deferred call, run by the kernel at ``corral_finish_commit``: its result as JSON, or
        ``McpToolError`` for an error result (the transaction then fails as for any step)."""
        import mcp_types as types

        link = self._link()
        request = types.CallToolRequest(params=types.CallToolRequestParams(name=upstream, arguments=args))
        result = await link.request(f"tools/call {upstream}", lambda s: s.send_request(request, types.CallToolResult))
        data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if result.is_error:
            raise McpToolError(result_text(result) or f"{upstream} failed", data)
        return data

    # ------------------------------------------------------------------------- worker-thread halves

    def _phase_tool(self, name: str, args: dict[str, Any]) -> Any:
        """A phase tool, through the kernel like any governed call; refusals and rollbacks become
        results here (this runs on a worker thread, where the session may be touched)."""
        from corral.harness.context import CURRENT, RunContext

        session = self.current_session()
        token = CURRENT.set(RunContext(harness=None, session=session, workspace=Path.cwd()))  # type: ignore[arg-type]
        mine = CONNECTION.set(self)
        try:
            return session.submit(name, args, outside_transaction=True).result
        except ApprovalPending as pending:
            return _Refusal(self._pending(name, pending))
        except TransactionFailed as failed:
            return _Refusal(self._rolled_back(failed))
        finally:
            CONNECTION.reset(mine)
            CURRENT.reset(token)

    def _refusal(self, name: str, refused: GovernanceError) -> Any:
        if isinstance(refused, ApprovalPending):
            return self._pending(name, refused)
        if isinstance(refused, ApprovalDenied):
            return _error_result({"denied": True, "reason": refused.reason, "trace": _trace_id(refused),
                                  "hint": "do not retry this call as it is"})
        if isinstance(refused, TransactionFailed):
            return self._rolled_back(refused)
        return _error_result({"blocked": True, "reason": refused.reason, "hint": _hint(self.session, refused),
                              "trace": _trace_id(refused), "session": self.session.id})

    def current_session(self) -> Any:
        """The session, reloaded when another process (``corral phase``) moved it since we last looked."""
        session = self.session
        gov = self.proxy.governor
        try:
            record = gov.store.get_session(session.id)
        except Exception:
            return session  # the governed call meets the same store and fails closed there
        if record is None:
            return session
        stored = (record.get("phase"), record.get("plan"), record.get("tx"))
        if stored == _signature(session) or stored == self._accepted:
            return session
        fresh = gov.session(id=session.id)
        self.session = fresh
        if _signature(fresh) != stored:
            self._accepted = stored
            self.proxy.log(f"session {session.id}: the store says {stored[0]} (transaction {stored[2]}), which "
                           f"cannot be restored here; continuing in {fresh.phase}")
        else:
            self.proxy.log(f"session {session.id} was moved to {fresh.phase} by another process")
        return fresh

    def _pending(self, name: str, pending: ApprovalPending) -> Any:
        approval = pending.approval_id
        store = self.proxy.governor.store.url
        self.proxy.log(f"{name} waits for approval {approval}: corral approvals approve {approval} --as NAME "
                       f"--store {store}")
        return _error_result({
            "pending": True, "approval": approval, "reason": pending.reason, "trace": _trace_id(pending),
            "session": self.session.id,
            "hint": f"a person approves it with: corral approvals approve {approval} --as NAME --store {store}; "
                    f"then call {name} again with the same arguments and it runs once",
        })

    def _rolled_back(self, failed: TransactionFailed) -> Any:
        """A step failed in commit: the kernel rolled back; leave the finished commit so the session is
        usable again, and say what happened."""
        tx = failed.tx
        session = self.session
        if session.phase == "commit" and session.open_transaction is None:
            with contextlib.suppress(Exception):
                session.end_commit(failed)
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


class _Refusal:
    """A phase tool's refusal, already shaped as an error result."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result


DEFERRED = {"deferred": True, "runs_at": "corral_finish_commit"}


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


#: What each phase tool does to the world, as MCP annotations say it (a client may auto-approve a
#: read-only tool). Moving the session between phases and recording a plan change corral's own state,
#: not the environment; finishing a commit runs the deferred writes upstream, and aborting one runs
#: compensations upstream — neither is read-only, both reach the upstream's world.
PHASE_ANNOTATIONS: dict[str, dict[str, Any]] = {
    "corral_begin_decide": {"title": "corral: decide", "read_only_hint": True, "destructive_hint": False,
                            "idempotent_hint": True, "open_world_hint": False},
    "corral_propose_plan": {"title": "corral: propose a plan", "read_only_hint": True, "destructive_hint": False,
                            "idempotent_hint": False, "open_world_hint": False},
    "corral_begin_commit": {"title": "corral: begin the commit", "read_only_hint": True, "destructive_hint": False,
                            "idempotent_hint": False, "open_world_hint": False},
    "corral_finish_commit": {"title": "corral: finish the commit (runs deferred writes)", "read_only_hint": False,
                             "destructive_hint": True, "idempotent_hint": False, "open_world_hint": True},
    "corral_abort_commit": {"title": "corral: abort the commit (compensates writes)", "read_only_hint": False,
                            "destructive_hint": True, "idempotent_hint": False, "open_world_hint": True},
    "corral_back_to_explore": {"title": "corral: back to explore", "read_only_hint": True,
                               "destructive_hint": False, "idempotent_hint": True, "open_world_hint": False},
}


def _phase_tool_list() -> list[Any]:
    import mcp_types as types

    return [types.Tool(name=name, title=PHASE_ANNOTATIONS[name]["title"], description=_PHASE_DESCRIPTIONS[name],
                       input_schema=_phase_schema(name), annotations=types.ToolAnnotations(**PHASE_ANNOTATIONS[name]))
            for name in PHASE_TOOLS]


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


def _ok_result(payload: dict[str, Any]) -> Any:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(text=_json(payload))], structured_content=payload)


def _error_result(payload: dict[str, Any]) -> Any:
    import mcp_types as types

    payload = {k: v for k, v in payload.items() if v is not None}
    return types.CallToolResult(content=[types.TextContent(text=_json(payload))], is_error=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "user"


# --------------------------------------------------------------------------------- the connections


class Connections:
    """The proxy's client connections, by key (the ``Mcp-Session-Id`` over HTTP; one for stdio).

    A connection is made at its client's first request after the handshake (its capabilities are known
    by then), in the proxy's task group; ``drop(key)`` ends one (its upstream closes) and ``close_idle``
    ends those quiet for longer than ``idle`` seconds.
    """

    def __init__(self, proxy: GovernedProxy, upstream: Upstream, *, session_id: str | None = None,
                 timeout: float = DEFAULT_CALL_TIMEOUT, env: Mapping[str, str] | None = None,
                 idle: float = 30 * 60) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.session_id = session_id
        self.timeout = timeout
        self.env = env
        self.idle = idle
        self.task_group: Any = None
        self._by_key: dict[str | None, Connection] = {}

    async def get(self, ctx: Any) -> Connection:
        key = _connection_key(ctx)
        connection = self._by_key.get(key)
        if connection is None:
            connection = Connection(self.proxy, self.upstream, key=key, session_id=self.session_id,
                                    timeout=self.timeout, env=self.env)
            self._by_key[key] = connection
            assert self.task_group is not None, "the proxy serves inside its task group"
            await self.task_group.start(connection.run, ctx.session.client_capabilities)
        else:
            await connection.ready.wait()
        connection.seen(ctx)
        return connection

    def drop(self, key: str | None) -> None:
        connection = self._by_key.pop(key, None)
        if connection is not None:
            connection.close()

    def close_idle(self, now: float) -> None:
        for key, connection in list(self._by_key.items()):
            if connection.last_seen and now - connection.last_seen > self.idle:
                self.proxy.log(f"client {key} was idle for {self.idle:g}s: its upstream connection is closed")
                self.drop(key)

    async def aclose(self, timeout: float = 10.0) -> None:
        """End every connection and wait (bounded) for their upstreams to stop."""
        import anyio

        connections = list(self._by_key.values())
        self._by_key.clear()
        for connection in connections:
            connection.close()
        with anyio.move_on_after(timeout, shield=True):
            for connection in connections:
                await connection.done.wait()

    def __len__(self) -> int:
        return len(self._by_key)


def _connection_key(ctx: Any) -> str | None:
    request = getattr(ctx, "request", None)
    if request is None:
        return None  # stdio: one connection
    return request.headers.get(SESSION_HEADER)


SESSION_HEADER = "mcp-session-id"


# ---------------------------------------------------------------------------------- the MCP server


def offered_capabilities(capabilities: Any) -> Any:
    """What the proxy says at ``initialize``: every capability of the upstream's that it relays — tools
    (always), prompts, resources (``subscribe`` too), completions and logging, each with its
    ``listChanged`` as the upstream says it. What it does not relay (tasks, experimental methods) it
    does not claim."""
    import mcp_types as types

    if capabilities is None:
        return types.ServerCapabilities(tools=types.ToolsCapability(list_changed=False))
    tools = capabilities.tools.model_copy() if capabilities.tools is not None else types.ToolsCapability(
        list_changed=False)
    return types.ServerCapabilities(
        tools=tools,
        prompts=capabilities.prompts.model_copy() if capabilities.prompts is not None else None,
        resources=capabilities.resources.model_copy() if capabilities.resources is not None else None,
        completions=capabilities.completions.model_copy() if capabilities.completions is not None else None,
        logging=capabilities.logging.model_copy() if capabilities.logging is not None else None,
    )


def build_server(proxy: GovernedProxy, connections: Connections, capabilities: Any, server_info: Any = None,
                 instructions: str | None = None) -> Any:
    """The downstream MCP server: governed ``tools/*``; everything the upstream offers besides, relayed
    on the calling client's own upstream connection."""
    import warnings

    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    def relay(what: str, request: type, result: type) -> Callable[..., Any]:
        async def handler(ctx: Any, params: Any) -> Any:
            try:
                connection = await connections.get(ctx)
                return await connection.relay(ctx, what, request(params=params), result)
            except McpUpstreamError as exc:
                raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None

        return handler

    async def list_tools(ctx: Any, params: Any) -> Any:
        connection = await connections.get(ctx)
        link = connection.link
        if connection.failure is not None or link is None:
            raise MCPError(code=types.INTERNAL_ERROR, message=connection.failure or "the upstream is not connected")
        return types.ListToolsResult(tools=proxy.listed(link.tools))

    async def call_tool(ctx: Any, params: Any) -> Any:
        try:
            connection = await connections.get(ctx)
        except McpUpstreamError as exc:
            return _error_result({"error": str(exc)})
        return await connection.call(ctx, params.name, params.arguments or {})

    async def ping(ctx: Any, params: Any) -> Any:
        try:
            connection = await connections.get(ctx)
            await connection._link().request("ping", lambda s: s.send_ping(), timeout=10)
        except McpUpstreamError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None
        return types.EmptyResult()

    async def roots_changed(ctx: Any, params: Any) -> None:
        connection = await connections.get(ctx)
        with contextlib.suppress(McpUpstreamError):
            await connection._link().request("roots list_changed", lambda s: s.send_roots_list_changed())

    handlers: dict[str, Any] = {"on_list_tools": list_tools, "on_call_tool": call_tool, "on_ping": ping,
                                "on_roots_list_changed": roots_changed}
    caps = capabilities
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
    offered = offered_capabilities(capabilities)

    class ProxyServer(Server):
        def create_initialization_options(self, *args: Any, **kwargs: Any) -> Any:
            options = super().create_initialization_options(*args, **kwargs)
            options.capabilities = offered.model_copy(deep=True)
            return options

    name = server_info.name if server_info is not None else "mcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # relaying a deprecated capability is not using it
        server = ProxyServer(
            name,
            version=getattr(server_info, "version", "") or "",
            title=getattr(server_info, "title", None),
            description=f"{name}, governed by corral",
            instructions=instructions,
            **handlers,
        )
    server.middleware = []  # no per-message tracing span: the kernel traces every governed call
    return server


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


async def serve_stdio(server: Any, connections: Connections, *, max_bytes: int = MAX_MESSAGE_BYTES,
                      stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    import anyio

    async with guarded_stdio(stdin, stdout, max_bytes=max_bytes) as (read, write), \
            anyio.create_task_group() as tg:
        connections.task_group = tg
        tg.start_soon(_stop_on_signal, tg.cancel_scope.cancel)
        try:
            await server.run(read, write, server.create_initialization_options())
        finally:
            await connections.aclose()
            tg.cancel_scope.cancel()


async def serve_http(server: Any, connections: Connections, host: str, port: int, *,
                     max_bytes: int = MAX_MESSAGE_BYTES, log: Callable[[str], None] = _log_stderr) -> None:
    import contextlib
    import time

    import anyio
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # the proxy handles signals itself (see _stop_on_signal)
            yield

    mcp_app = server.streamable_http_app(host=host, max_request_body_size=max_bytes)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """A client that ends its MCP session (DELETE) ends its upstream connection too."""
        if scope.get("type") == "http" and scope.get("method") == "DELETE":
            key = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == SESSION_HEADER.encode()),
                       None)
            try:
                await mcp_app(scope, receive, send)
            finally:
                if key is not None:
                    connections.drop(key)
            return
        await mcp_app(scope, receive, send)

    http = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))

    def stop() -> None:
        http.should_exit = True

    async def reap() -> None:
        while True:
            await anyio.sleep(60)
            connections.close_idle(time.monotonic())

    async with anyio.create_task_group() as tg:
        connections.task_group = tg
        tg.start_soon(_stop_on_signal, stop)
        tg.start_soon(reap)

        async def run() -> None:
            try:
                await http.serve()
            finally:
                await connections.aclose()
                tg.cancel_scope.cancel()

        tg.start_soon(run)
        while not http.started:
            await anyio.sleep(0.02)
        sockets = [s for srv in http.servers for s in srv.sockets]
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        log(f"serving MCP on http://{shown}:{bound}/mcp (each client connection is its own session)")


def _interrupt_on_sigterm() -> None:
    """Before and after serving, SIGTERM ends the proxy like Ctrl-C (``KeyboardInterrupt``), so what was
    started is still closed; while serving, ``_stop_on_signal`` stops it from inside the event loop."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


async def probe(upstream: Upstream, *, env: Mapping[str, str] | None = None,
                timeout: float = DEFAULT_CALL_TIMEOUT) -> UpstreamLink:
    """Connect to the upstream once at start, as a client that can answer everything (so a server that
    offers some tools only to such clients lists them all), list its tools and capabilities, and close.
    ``link.failure`` says why it could not connect."""
    import anyio
    import mcp_types as types

    class Nobody:
        async def notify(self, notification: Any) -> None:
            return None

        async def ask(self, request: Any, result_type: type) -> Any:
            from mcp.shared.exceptions import MCPError

            raise MCPError(code=types.INTERNAL_ERROR, message="corral mcp-proxy is starting: no client yet")

    everything = types.ClientCapabilities(sampling=types.SamplingCapability(),
                                          elicitation=types.ElicitationCapability(),
                                          roots=types.RootsCapability(list_changed=True))
    link = UpstreamLink(command=list(upstream.command) if upstream.command else None, url=upstream.url, env=env,
                        label=upstream.label, forward=Nobody(), client_capabilities=everything,
                        call_timeout=timeout)
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        link.close()
    return link


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
        if address is not None and session:
            raise ConfigError("--session resumes the one session of a stdio proxy; over HTTP (--listen) each "
                              "client connection starts its own session")
        config = load_agent(agent)
    except AgentConfigError as exc:
        log(str(exc))
        return 1
    except ConfigError as exc:
        log(f"error: {exc}")
        return 1
    entry = agent_entry_for(config, upstream)
    env = entry.mcp.env if entry is not None else None
    try:
        with ExitStack() as stack:
            link = anyio.run(lambda: probe(upstream, env=env, timeout=timeout))
            if link.failure is not None:
                log(f"error: {link.failure}")
                return 1
            try:
                proxy = GovernedProxy(config, link.tools, store=store, entry=entry, principal=principal, log=log)
            except GovernanceError as exc:
                log(f"error: {agent}: {exc}")
                return 1
            stack.callback(proxy.close)
            connections = Connections(proxy, upstream, timeout=timeout, env=env)
            info = link.initialize_result.server_info if link.initialize_result is not None else None
            log(f"agent {config.name} · principal {proxy.principal} · store {proxy.governor.store.url} · upstream "
                f"{getattr(info, 'name', '?')} {getattr(info, 'version', '')} ({len(proxy.plans)} tools) via "
                f"{upstream.label}")
            report = proxy.recovery
            if report is not None and getattr(report, "transactions", None):
                log(f"recovered {len(report.transactions)} transaction(s) a crashed process left open")
            server = build_server(proxy, connections, link.capabilities, info, link.initialize_result.instructions)
            if address is None:
                try:
                    connections.session_id = proxy.open_session(session).id  # known before the client connects
                except GovernanceError as exc:
                    log(f"error: {agent}: {exc}")
                    return 1
                log(f"session {connections.session_id}")
                log(f"move the session with: corral phase {connections.session_id} decide --agent {agent}")
                anyio.run(lambda: serve_stdio(server, connections, max_bytes=max_message_bytes))
            else:
                anyio.run(lambda: serve_http(server, connections, *address, max_bytes=max_message_bytes, log=log))
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
