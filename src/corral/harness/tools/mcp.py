"""MCP servers as governed tools: connect, list the tools, give each an effect, call them synchronously.

An MCP server is reached over stdio (``mcp: {command: [...]}``) or streamable HTTP (``mcp: {url: …}``)
with the official ``mcp`` SDK. The SDK is async and the kernel calls tools synchronously, so each
``McpClient`` owns one event loop in a background thread and every call crosses into it with
``asyncio.run_coroutine_threadsafe`` and a deadline: a server that dies, hangs or answers with something
that is not JSON-RPC gives ``McpUpstreamError`` naming the server, never a hang.

Effects come from the tools' annotations (DESIGN §2) — ``readOnlyHint: true`` is ``read``;
``destructiveHint: false`` or ``idempotentHint: true`` is ``reversible`` only when a compensation is
configured; anything else is ``irreversible`` — and the agent file overrides any of them. Annotations are
hints from a server we do not control, so nothing they say makes a tool *more* permissive than the
configuration allows: an unannotated tool is irreversible.

``register_mcp_tools(harness, tool_config)`` is the harness's entry point; ``corral mcp-proxy`` uses
``McpClient`` and ``plan_tools`` directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from corral.errors import ConfigError
from corral.harness.imports import resolve_import

T = TypeVar("T")

READ, REVERSIBLE, IRREVERSIBLE = "read", "reversible", "irreversible"
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_CALL_TIMEOUT = 60.0
_BRIDGE_GRACE = 5.0  # the SDK's own read timeout fires first; this only catches a wedged loop


class McpUpstreamError(ConnectionError):
    """The MCP server could not be reached, died, hung past the deadline, or broke the protocol."""


class McpToolError(RuntimeError):
    """The tool ran and reported failure (``isError: true``); ``.result`` is the server's result as JSON."""

    def __init__(self, message: str, result: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = dict(result or {})


# ------------------------------------------------------------------------------------------ effects


def effect_from_annotations(annotations: Any, *, compensated: bool) -> str:
    """The effect DESIGN §2 gives a tool for its MCP annotations (an object, a dict, or None)."""

    def hint(name: str, wire: str) -> Any:
        if annotations is None:
            return None
        if isinstance(annotations, Mapping):
            return annotations.get(wire, annotations.get(name))
        return getattr(annotations, name, None)

    if hint("read_only_hint", "readOnlyHint") is True:
        return READ
    if hint("destructive_hint", "destructiveHint") is False or hint("idempotent_hint", "idempotentHint") is True:
        return REVERSIBLE if compensated else IRREVERSIBLE
    return IRREVERSIBLE


@dataclass(frozen=True)
class McpToolPlan:
    """One upstream tool as corral will register it."""

    name: str  # as the kernel and the model know it (prefix + upstream name)
    upstream: str  # as the server knows it
    effect: str
    description: str
    parameters: dict[str, Any]
    annotations: dict[str, Any] | None
    compensate: Callable[..., Any] | None = None
    cost: float | None = None
    labels: tuple[str, ...] = ()  # §15: what its results add to the session
    tags: tuple[str, ...] = ()
    untrusted: bool = False

    def flow_options(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "tags": list(self.tags), "untrusted": self.untrusted}


def plan_tools(
    tools: Iterable[Any],
    *,
    prefix: str | None = None,
    effects: Mapping[str, str] | None = None,
    compensate: Mapping[str, str] | None = None,
    cost: Mapping[str, float] | None = None,
    base_dir: Path | None = None,
    labels: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    tags: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    untrusted: bool = False,
) -> list[McpToolPlan]:
    """Decide name, effect, compensation, cost and labels for each listed tool; override keys may use
    either name. ``labels`` and ``tags`` are lists for every tool, or mappings per tool; ``untrusted``
    makes every result add the label untrusted (DESIGN §15).

    Raises ``ConfigError`` for an override that names no listed tool (a typo must not silently leave a
    tool with its annotated effect, or its results unlabelled) or a compensation that cannot be imported.
    """
    effects, compensate, cost = dict(effects or {}), dict(compensate or {}), dict(cost or {})
    per_tool_labels = dict(labels) if isinstance(labels, Mapping) else {}
    per_tool_tags = dict(tags) if isinstance(tags, Mapping) else {}
    listed = list(tools)
    prefix = prefix or ""
    known = {t.name for t in listed} | {prefix + t.name for t in listed}
    for key, table in (("effects", effects), ("compensate", compensate), ("cost", cost),
                       ("labels", per_tool_labels), ("tags", per_tool_tags)):
        unknown = sorted(set(table) - known)
        if unknown:
            offered = ", ".join(sorted(t.name for t in listed)) or "none"
            raise ConfigError(f"{key} names {', '.join(unknown)}, which the MCP server does not offer "
                              f"(it offers: {offered})")

    def pick(table: Mapping[str, Any], tool: Any) -> Any:
        return table.get(prefix + tool.name, table.get(tool.name))

    plans = []
    for tool in listed:
        ref = pick(compensate, tool)
        fn = resolve_import(ref, base_dir or Path(".")) if ref else None
        effect = pick(effects, tool) or effect_from_annotations(tool.annotations, compensated=fn is not None)
        annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None
        title = tool.title or (tool.annotations.title if tool.annotations else None)
        plans.append(
            McpToolPlan(
                name=prefix + tool.name,
                upstream=tool.name,
                effect=effect,
                description=(tool.description or title or tool.name).strip(),
                parameters=dict(tool.input_schema or {"type": "object", "properties": {}}),
                annotations=annotations,
                compensate=fn,
                cost=pick(cost, tool),
                labels=tuple(pick(per_tool_labels, tool) or () if isinstance(labels, Mapping) else labels or ()),
                tags=tuple(pick(per_tool_tags, tool) or () if isinstance(tags, Mapping) else tags or ()),
                untrusted=untrusted,
            )
        )
    return plans


# ------------------------------------------------------------------------------------------ results


def result_text(result: Any) -> str:
    """What a tool result says, as text: text blocks joined; other blocks named; else structured content."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}]".replace(" ]", "]"))
        elif kind == "resource":
            inner = block.resource
            parts.append(getattr(inner, "text", None) or f"[resource {inner.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        else:
            parts.append(f"[{kind}]")
    if not parts and getattr(result, "structured_content", None) is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return "\n".join(parts)


def _garbage(exc: Exception) -> str:
    """What a transport's parse error says about the line it choked on."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            found = errors()
            if found and "input" in found[0]:
                return f"got {str(found[0]['input'])[:120]!r}"
        except Exception:
            pass
    return describe_error(exc).splitlines()[0][:160]


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaf_errors(inner)]
    return [exc]


def describe_error(exc: BaseException) -> str:
    """One line for an exception, looking inside the exception groups anyio wraps errors in."""
    leaves = [e for e in _leaf_errors(exc) if not isinstance(e, asyncio.CancelledError)] or [exc]
    return "; ".join(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__ for e in leaves)


# ------------------------------------------------------------------------------------------- client


class McpClient:
    """One connection to one MCP server, usable from any thread (and from another event loop).

    ``McpClient.connect(server)`` starts the server (stdio) or opens the session (HTTP), completes the
    handshake and lists every tool, or raises ``McpUpstreamError``. ``call_tool`` returns the server's
    ``CallToolResult``; ``call`` returns its text and raises ``McpToolError`` when it is an error.
    ``close()`` ends the session and stops a stdio server (bounded waits).
    """

    def __init__(
        self,
        *,
        command: list[str] | None = None,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        errlog: TextIO | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if (command is None) == (url is None):
            raise ConfigError("an MCP server has exactly one of command=[...] or url=...")
        if command is not None and (not command or not all(isinstance(c, str) and c for c in command)):
            raise ConfigError(f"an MCP server command is a non-empty list of strings, got {command!r}")
        self.command = list(command) if command is not None else None
        self.url = url
        self.env = dict(env or {})
        self.cwd = cwd
        self.connect_timeout = float(connect_timeout)
        self.call_timeout = float(call_timeout)
        self.errlog = errlog
        self.headers = dict(headers or {})  # sent with every HTTP request (a credential); never shown
        self.label = " ".join(self.command) if self.command is not None else str(url)
        self.tools: list[Any] = []
        self.initialize_result: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._main: concurrent.futures.Future[None] | None = None
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._closing: asyncio.Event | None = None
        self._session: Any = None
        self._gone: str | None = None  # why the connection ended, once it has
        self._inflight: dict[asyncio.Task[Any], str | None] = {}
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------- lifecycle

    @classmethod
    def connect(cls, server: Any = None, **options: Any) -> McpClient:
        """Connect to ``server`` (an ``McpServer`` from the agent file, or a mapping) or to ``options``."""
        if server is not None:
            data = server.model_dump() if hasattr(server, "model_dump") else dict(server)
            options = {"command": data.get("command"), "url": data.get("url"), "env": data.get("env"), **options}
        client = cls(**options)
        client.start()
        return client

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, name=f"corral-mcp {self.label}"[:60], daemon=True)
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._serve(), loop)
        try:
            self._ready.result(timeout=self.connect_timeout)
        except concurrent.futures.TimeoutError:
            self.close()
            raise McpUpstreamError(
                f"MCP server {self.label!r} did not complete the handshake within {self.connect_timeout:g}s"
            ) from None
        except McpUpstreamError:
            self.close()
            raise

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _transport(self) -> Any:
        if self.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=self.command[0], args=self.command[1:], env=self.env or None, cwd=self.cwd
            )
            return stdio_client(params, errlog=self.errlog or sys.stderr)
        from mcp.client.streamable_http import streamable_http_client

        if self.headers:
            return _http_with_headers(str(self.url), self.headers)
        return streamable_http_client(self.url)  # type: ignore[arg-type]

    async def _serve(self) -> None:
        """Own the transport and the session for the client's whole life (anyio scopes stay in one task)."""
        import anyio
        from mcp import ClientSession
        from mcp.shared.message import SessionMessage
        from mcp_types import Implementation

        self._closing = asyncio.Event()
        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                pumps = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(pumps.cancel_scope.cancel)
                pumps.start_soon(self._pump, read, send)
                session = await stack.enter_async_context(
                    ClientSession(receive, write, read_timeout_seconds=self.call_timeout,
                                  client_info=Implementation(name="corral", version=_version()))
                )
                self.initialize_result = await session.initialize()
                self.tools = await self._list_tools(session)
                self._session = session
                self._ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:
            why = describe_error(exc)
            if self._gone is None:
                self._gone = f"the connection failed: {why}"
            if not self._ready.done():
                self._ready.set_exception(McpUpstreamError(f"cannot connect to MCP server {self.label!r}: {why}"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._session = None
            if self._gone is None:
                self._gone = "the client was closed"

    async def _pump(self, source: Any, sink: Any) -> None:
        """Between the transport and the session: a line that is not JSON-RPC fails the calls in flight at
        once (their answers are not coming), and the end of the stream marks the server as gone."""
        import anyio

        try:
            async with sink:
                async for item in source:
                    if isinstance(item, Exception):
                        detail = _garbage(item)
                        self._fail_inflight(f"MCP server {self.label!r} sent a message that is not valid "
                                            f"JSON-RPC ({detail})")
                        continue
                    await sink.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass
        finally:
            if self._gone is None:
                self._gone = "it closed the connection (the server exited or crashed)"

    def _fail_inflight(self, reason: str) -> None:
        for task in list(self._inflight):
            if self._inflight.get(task) is None:
                self._inflight[task] = reason
                task.cancel()

    async def _list_tools(self, session: Any) -> list[Any]:
        from mcp_types import PaginatedRequestParams

        tools: list[Any] = []
        cursor = None
        for _ in range(1000):  # a server that pages forever is a broken server
            result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(result.tools)
            cursor = result.next_cursor
            if not cursor:
                return tools
        raise McpUpstreamError(f"MCP server {self.label!r} kept paging tools/list past 1000 pages")

    def close(self, timeout: float = 10.0) -> None:
        """End the session and stop a stdio server. Safe to call twice and from any thread but the loop's."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop, main = self._loop, self._main
        if loop is None or main is None:
            return
        if not loop.is_closed():
            closing = self._closing
            connected = self._ready.done() and self._ready.exception() is None
            if connected and closing is not None:
                loop.call_soon_threadsafe(closing.set)  # a clean goodbye: the session ends, the server stops
            else:
                main.cancel()  # still connecting: cancel, and the transport's shielded shutdown stops the server
            try:
                main.result(timeout=timeout)
            except BaseException:
                main.cancel()
                try:
                    main.result(timeout=timeout)
                except BaseException:
                    pass
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> McpClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._session is not None and self._gone is None and not self._closed

    @property
    def server_info(self) -> Any:
        return getattr(self.initialize_result, "server_info", None)

    @property
    def capabilities(self) -> Any:
        return getattr(self.initialize_result, "capabilities", None)

    @property
    def instructions(self) -> str | None:
        return getattr(self.initialize_result, "instructions", None)

    # ----------------------------------------------------------------------------------- calls

    async def _guarded(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(session)`` on the client's loop, turning transport failures into ``McpUpstreamError``."""
        from mcp.shared.exceptions import MCPError

        session = self._session
        if session is None or self._gone is not None:
            raise McpUpstreamError(f"MCP server {self.label!r} is not available for {what}: "
                                   f"{self._gone or 'not connected'}")
        task = asyncio.current_task()
        assert task is not None
        self._inflight[task] = None
        try:
            return await fn(session)
        except asyncio.CancelledError:
            reason = self._inflight.get(task)
            if reason is None:
                raise
            task.uncancel()
            raise McpUpstreamError(f"{reason}; {what} failed") from None
        except MCPError as exc:
            if self._gone is not None:
                raise McpUpstreamError(f"MCP server {self.label!r} is gone during {what}: {self._gone}") from None
            if "timed out" in str(exc):
                raise McpUpstreamError(f"MCP server {self.label!r} did not answer {what} in time ({exc})") from None
            raise
        finally:
            self._inflight.pop(task, None)

    def _submit(self, what: str, fn: Callable[[Any], Awaitable[T]], timeout: float) -> concurrent.futures.Future[T]:
        loop = self._loop
        if self._closed or loop is None or loop.is_closed():
            raise McpUpstreamError(f"MCP server {self.label!r} is closed; cannot run {what}")
        if threading.current_thread() is self._thread:
            raise RuntimeError("McpClient's blocking calls cannot run on its own event loop thread")
        return asyncio.run_coroutine_threadsafe(self._guarded(what, fn), loop)

    def run(self, what: str, fn: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``fn(session)`` on the client's loop and wait for it (blocking, bounded)."""
        limit = self.call_timeout if timeout is None else float(timeout)
        future = self._submit(what, fn, limit)
        try:
            return future.result(timeout=limit + _BRIDGE_GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise McpUpstreamError(f"MCP server {self.label!r} did not answer {what} within {limit:g}s") from None
        except concurrent.futures.CancelledError:
            raise McpUpstreamError(f"MCP server {self.label!r}: {what} was cancelled ({self._gone or 'closing'})"
                                   ) from None

    async def arun(self, what: str, fn: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
        """``run`` for a caller on another event loop (the proxy's server loop)."""
        limit = self.call_timeout if timeout is None else float(timeout)
        future = self._submit(what, fn, limit)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit + _BRIDGE_GRACE)
        except TimeoutError:
            future.cancel()
            raise McpUpstreamError(f"MCP server {self.label!r} did not answer {what} within {limit:g}s") from None

    def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None, timeout: float | None = None) -> Any:
        """``tools/call``: the server's ``CallToolResult`` (an error result is returned, not raised)."""
        limit = self.call_timeout if timeout is None else float(timeout)
        args = dict(arguments or {})
        return self.run(f"tools/call {name}",
                        lambda s: s.call_tool(name, args, read_timeout_seconds=limit), limit)

    def call(self, name: str, arguments: Mapping[str, Any] | None = None, timeout: float | None = None) -> str:
        """``tools/call`` as text; an ``isError`` result raises ``McpToolError`` with the server's text."""
        result = self.call_tool(name, arguments, timeout)
        text = result_text(result)
        if result.is_error:
            raise McpToolError(text or f"{name} failed", result.model_dump(by_alias=True, mode="json",
                                                                           exclude_none=True))
        return text

    def call_json(self, name: str, arguments: Mapping[str, Any] | None = None, timeout: float | None = None
                  ) -> dict[str, Any]:
        """``tools/call`` as the result's JSON (what the proxy relays and a transaction log can keep)."""
        result = self.call_tool(name, arguments, timeout)
        data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        if result.is_error:
            raise McpToolError(result_text(result) or f"{name} failed", data)
        return data

    def tool_function(self, upstream: str, *, as_json: bool = False) -> Callable[..., Any]:
        """A plain function the kernel can register: keyword arguments in, the tool's result out."""
        call = self.call_json if as_json else self.call

        def mcp_tool(**arguments: Any) -> Any:
            return call(upstream, arguments)

        mcp_tool.__name__ = upstream
        mcp_tool.__qualname__ = upstream
        mcp_tool.__doc__ = f"MCP tool {upstream} on {self.label}"
        return mcp_tool


@asynccontextmanager
async def _http_with_headers(url: str, headers: Mapping[str, str]) -> AsyncIterator[Any]:
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    async with create_mcp_http_client(headers=dict(headers)) as client, \
            streamable_http_client(url, http_client=client) as streams:
        yield streams


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("corral")
    except Exception:
        return "0"


# ----------------------------------------------------------------------------------------- harness


def _scrubbed(fn: Callable[..., Any], vault: Any) -> Callable[..., Any]:
    """``fn`` whose results and errors never carry a credential's value (a server may echo a header)."""
    if vault is None or not vault.names:
        return fn

    def mcp_tool(**arguments: Any) -> Any:
        try:
            return vault.scrub(fn(**arguments))
        except McpToolError as exc:
            raise McpToolError(vault.scrub(str(exc)), vault.scrub(exc.result)) from None
        except McpUpstreamError as exc:
            raise McpUpstreamError(vault.scrub(str(exc))) from None

    mcp_tool.__name__ = fn.__name__
    mcp_tool.__doc__ = fn.__doc__
    return mcp_tool


def register_mcp_tools(harness: Any, tool_config: Any, *, call_timeout: float | None = None) -> McpClient:
    """Connect to the server an agent file's ``mcp:`` entry names and register every tool it lists.

    Returns the client; the harness keeps it and calls ``close()`` at shutdown. On any error the
    server is stopped before the error propagates.
    """
    server = tool_config.mcp
    vault = getattr(harness, "vault", None)
    options: dict[str, Any] = {"call_timeout": call_timeout} if call_timeout is not None else {}
    if server.credential is not None:
        if vault is None:
            raise ConfigError(f"mcp.credential: unknown credential {server.credential!r}")
        secret = vault.value(server.credential)
        header = server.credential_header or "Authorization"
        options["headers"] = {header: f"Bearer {secret}" if header.lower() == "authorization" else secret}
    client = McpClient.connect(server, **options)
    try:
        plans = plan_tools(
            client.tools,
            prefix=tool_config.prefix,
            effects=tool_config.effects,
            compensate=tool_config.compensate,
            cost=tool_config.cost,
            base_dir=harness.config.base_dir,
            labels=tool_config.labels,
            tags=tool_config.tags,
            untrusted=tool_config.untrusted,
        )
        for plan in plans:
            harness.expose(
                plan.name,
                _scrubbed(client.tool_function(plan.upstream), vault),
                plan.effect,
                description=plan.description,
                parameters=plan.parameters,
                compensate=plan.compensate,
                cost=plan.cost,
                **plan.flow_options(),
            )
    except BaseException:
        client.close()
        raise
    return client
