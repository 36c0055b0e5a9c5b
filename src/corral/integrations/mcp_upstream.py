"""One downstream client's connection to the upstream MCP server, as ``corral mcp-proxy`` holds it.

Each client connection of the proxy gets its own upstream connection, opened on the proxy's event loop
once the client has said what it supports, so that everything the upstream says can go to the one
client it concerns:

- the upstream's notifications (logging, ``tools/list_changed``, resources and prompts ``list_changed``,
  ``resources/updated``, …) are handed to ``Forward.notify``; progress of a call goes to that call's
  ``progress`` callback;
- the upstream's requests (sampling, elicitation, roots) are advertised to the upstream only when the
  client declared them, and are put to the client through ``Forward.ask``.

Fail closed: a server that dies, hangs past the deadline or writes something that is not JSON-RPC fails
the requests in flight at once with ``McpUpstreamError`` naming the server — never a hang.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Protocol, TypeVar

from corral.harness.tools.mcp import McpUpstreamError, describe_error

T = TypeVar("T")

_GRACE = 5.0  # the SDK's own read timeout fires first; this only catches a wedged transport
_GONE = "gone"  # why the calls in flight failed: the connection ended (``gone`` says how)


class Forward(Protocol):
    """Where the upstream's messages go: the downstream client connection."""

    async def notify(self, notification: Any) -> None: ...

    async def ask(self, request: Any, result_type: type) -> Any: ...


def _garbage(item: Exception) -> str:
    errors = getattr(item, "errors", None)
    if callable(errors):
        try:
            found = errors()
            if found and "input" in found[0]:
                return f"got {str(found[0]['input'])[:120]!r}"
        except Exception:
            pass
    return describe_error(item).splitlines()[0][:160]


class UpstreamLink:
    """The upstream MCP server for one client connection, on the caller's event loop.

    ``await tg.start(link.run)`` connects, completes the handshake and lists the tools (``link.tools``);
    a failure is kept in ``link.failure`` (the task still reports started, so the caller decides).
    ``request(what, fn)`` runs ``fn(client_session)`` under the deadline; ``close()`` ends it.
    """

    def __init__(
        self,
        *,
        command: list[str] | None,
        url: str | None,
        env: Mapping[str, str] | None,
        label: str,
        forward: Forward,
        client_capabilities: Any = None,
        call_timeout: float = 60.0,
        connect_timeout: float = 30.0,
        errlog: Any = None,
    ) -> None:
        self.command = command
        self.url = url
        self.env = dict(env or {})
        self.label = label
        self.forward = forward
        self.client_capabilities = client_capabilities
        self.call_timeout = float(call_timeout)
        self.connect_timeout = float(connect_timeout)
        self.errlog = errlog
        self.session: Any = None
        self.initialize_result: Any = None
        self.tools: list[Any] = []
        self.failure: str | None = None  # why it could not connect
        self.gone: str | None = None  # why the connection ended, once it has
        self._inflight: dict[Any, str | None] = {}
        self._closing: Any = None
        self.on_tools_changed: Callable[[list[Any]], Awaitable[None]] | None = None
        self.list_error: str | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    def _transport(self) -> Any:
        if self.command is not None:
            import sys

            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=self.command[0], args=self.command[1:], env=self.env or None)
            return stdio_client(params, errlog=self.errlog or sys.stderr)
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(self.url)  # type: ignore[arg-type]

    def _callbacks(self) -> dict[str, Any]:
        """The client's own capabilities, mirrored: the upstream may ask only what the client can answer."""
        import mcp_types as types

        caps = self.client_capabilities
        found: dict[str, Any] = {}
        if caps is None:
            return found
        if caps.sampling is not None:
            async def sampling(context: Any, params: Any) -> Any:
                return await self._ask(types.CreateMessageRequest(params=params), types.CreateMessageResult)

            found["sampling_callback"] = sampling
            found["sampling_capabilities"] = caps.sampling
        if caps.elicitation is not None:
            async def elicitation(context: Any, params: Any) -> Any:
                return await self._ask(types.ElicitRequest(params=params), types.ElicitResult)

            found["elicitation_callback"] = elicitation
        if caps.roots is not None:
            async def roots(context: Any) -> Any:
                return await self._ask(types.ListRootsRequest(), types.ListRootsResult)

            found["list_roots_callback"] = roots
        return found

    async def _ask(self, request: Any, result_type: type) -> Any:
        import mcp_types as types
        from mcp.shared.exceptions import MCPError

        try:
            return await self.forward.ask(request, result_type)
        except MCPError as exc:
            return exc.error
        except Exception as exc:
            return types.ErrorData(code=types.INTERNAL_ERROR,
                                   message=f"the client connected to corral mcp-proxy did not answer: "
                                           f"{describe_error(exc)}")

    async def _on_message(self, message: Any) -> None:
        import mcp_types as types

        if isinstance(message, Exception):
            return  # the pump has already failed the calls in flight
        if isinstance(message, types.ProgressNotification):
            return  # progress reaches the call it belongs to through its callback
        if isinstance(message, types.ToolListChangedNotification) and self.session is not None:
            try:
                self.tools = await self._list_tools(self.session)
                if self.on_tools_changed is not None:
                    await self.on_tools_changed(self.tools)
            except Exception as exc:  # the client still hears of the change (and the error when it lists)
                self.list_error = describe_error(exc)
        await self.forward.notify(message)

    async def run(self, *, task_status: Any = None) -> None:
        """Own the transport and the session for the link's whole life (anyio scopes stay in one task)."""
        import anyio
        from mcp import ClientSession
        from mcp.shared.message import SessionMessage
        from mcp_types import Implementation

        self._closing = anyio.Event()
        started = False
        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                pumps = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(pumps.cancel_scope.cancel)
                pumps.start_soon(self._pump, read, send)
                session = await stack.enter_async_context(ClientSession(
                    receive, write, read_timeout_seconds=self.call_timeout,
                    client_info=Implementation(name="corral-mcp-proxy", version=_corral_version()),
                    message_handler=self._on_message, **self._callbacks(),
                ))
                with anyio.fail_after(self.connect_timeout):
                    self.initialize_result = await session.initialize()
                    self.tools = await self._list_tools(session)
                self.session = session
                started = True
                if task_status is not None:
                    task_status.started()
                await self._closing.wait()
        except BaseException as exc:
            why = describe_error(exc)
            if isinstance(exc, TimeoutError):
                why = f"no answer to the handshake within {self.connect_timeout:g}s"
            if not started:
                self.failure = f"cannot connect to MCP server {self.label!r}: {why}"
            if self.gone is None:
                self.gone = f"the connection failed: {why}"
            self._fail_inflight(_GONE)
            if not isinstance(exc, Exception):
                if not started and task_status is not None:
                    task_status.started()
                raise
        finally:
            self.session = None
            if self.gone is None:
                self.gone = "the connection was closed"
            if not started and task_status is not None:
                task_status.started()

    async def _pump(self, source: Any, sink: Any) -> None:
        """Between the transport and the session: a line that is not JSON-RPC fails the calls in flight at
        once (their answers are not coming), and the end of the stream marks the server as gone."""
        import anyio

        try:
            async with sink:
                async for item in source:
                    if isinstance(item, Exception):
                        self._fail_inflight(f"MCP server {self.label!r} sent a message that is not valid "
                                            f"JSON-RPC ({_garbage(item)})")
                        continue
                    await sink.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass
        finally:
            if self.gone is None:
                self.gone = "it closed the connection (the server exited or crashed)"
            self._fail_inflight(_GONE)

    def _fail_inflight(self, reason: str) -> None:
        for scope, why in list(self._inflight.items()):
            if why is None:
                self._inflight[scope] = reason
                scope.cancel()

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

    def close(self) -> None:
        if self._closing is not None:
            self._closing.set()

    @property
    def capabilities(self) -> Any:
        return getattr(self.initialize_result, "capabilities", None)

    # ------------------------------------------------------------------------------------- requests

    async def request(self, what: str, fn: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``fn(session)``; transport failures and deadlines become ``McpUpstreamError``."""
        import anyio
        from mcp.shared.exceptions import MCPError

        session = self.session
        if session is None or self.gone is not None:
            raise McpUpstreamError(f"MCP server {self.label!r} is not available for {what}: "
                                   f"{self.gone or self.failure or 'not connected'}")
        limit = self.call_timeout if timeout is None else float(timeout)
        scope = anyio.CancelScope(deadline=anyio.current_time() + limit + _GRACE if math.isfinite(limit) else math.inf)
        self._inflight[scope] = None
        result: Any = None
        try:
            with scope:
                result = await fn(session)
        except MCPError as exc:
            if self.gone is not None:
                raise McpUpstreamError(f"MCP server {self.label!r} is gone during {what}: {self.gone}") from None
            if "timed out" in str(exc).lower():
                raise McpUpstreamError(f"MCP server {self.label!r} did not answer {what} in time ({exc})") from None
            raise
        finally:
            reason = self._inflight.pop(scope, None)
        if scope.cancelled_caught:
            if reason == _GONE:
                raise McpUpstreamError(f"MCP server {self.label!r} is gone during {what}: {self.gone}")
            raise McpUpstreamError(f"{reason}; {what} failed" if reason
                                   else f"MCP server {self.label!r} did not answer {what} within {limit:g}s")
        return result


def _corral_version() -> str:
    try:
        from importlib.metadata import version

        return version("corral")
    except Exception:
        return "0"
