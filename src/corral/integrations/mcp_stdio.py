"""Newline-delimited JSON-RPC over the proxy's own stdin and stdout, hardened.

The SDK's stdio transport drops what it cannot parse; a proxy must answer it instead (``-32700`` for a
line that is not JSON, ``-32600`` for one that is not a JSON-RPC message or is too large) and read on.
The pipes are read and written by daemon threads, so a client that stops reading or never closes stdin
cannot keep the process alive after it was told to stop.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, BinaryIO

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest JSON-RPC message the proxy reads (one stdio line, or one HTTP body)."""


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


