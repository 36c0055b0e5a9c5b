"""Running a tool or a compensation, sync or async, from either kind of caller.

A tool may be a plain function or a coroutine function, and so may a compensation; the kernel may be
driven from synchronous code (``s.call``) or from a running event loop (``await s.acall``). These four
functions are the only place that knows how to bridge the two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

#: Results that are never awaitable: checked by type first, since ``inspect.isawaitable`` is slow.
_PLAIN = frozenset({dict, list, str, int, float, bool, tuple, bytes, type(None)})


def _isawaitable(value: Any) -> bool:
    from inspect import isawaitable  # loaded on first use: a process that runs no tool never needs it

    return isawaitable(value)


def run_sync(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """Call a tool from sync code; an async one runs to completion on its own loop."""
    result = fn(**kwargs)
    if type(result) not in _PLAIN and _isawaitable(result):
        return _run_coroutine(result)
    return result


def run_sync_positional(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a compensation (which takes the ``Call`` it undoes) from sync code."""
    result = fn(*args)
    if _isawaitable(result):
        return _run_coroutine(result)
    return result


async def run_async(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    result = fn(**kwargs)
    if _isawaitable(result):
        result = await result
    return result


async def run_async_positional(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if _isawaitable(result):
        result = await result
    return result


def _run_coroutine(awaitable: Any) -> Any:
    import asyncio  # only for async tools: a process that runs none (the Claude Code hook) never imports it

    async def wrap() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrap())
    # Called from sync code inside a running loop: run the coroutine on a loop of its own, in a thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(wrap())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="corral-async-tool")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


async def sleep(seconds: float) -> None:
    import asyncio  # only async transactions need it: the Claude Code hook imports the kernel per call

    await asyncio.sleep(seconds)
