"""Live updates for a session page: server-sent events while the session runs.

Calls come from the kernel's own listeners (``gov.subscribe``: ``CallDecided``, ``CallRefused``,
``CallFinished``) on every agent this server runs, so a call appears whether the harness made it or an
enforcement point asked ``/v1/check``; the model's text and the end of a run come from the run's events
(``corral.server.runs``). Each event carries HTML rendered by the same templates as the page, so the
browser only puts it in place.

A stream re-checks its sign-in every ``TICK`` seconds (a revoked token ends it), notices runs started
after it opened (on this server), reads from the store the calls of a run it cannot follow (another
server's or another worker's, on the same store) and notices its end, and ends
after ``LIFETIME`` seconds — the browser reconnects — so no stream holds a server's shutdown for long.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from corral.governance.events import CallDecided, CallFinished, CallRefused
from corral.server import queries
from corral.server.console.pages import explain
from corral.server.console.render import ENV, secure
from corral.server.console.signin import SignInRequired, still_signed_in, viewer
from corral.server.console.views import CALL_KINDS, Item

TICK = 2.0
LIFETIME = 300.0

Queue = asyncio.Queue[tuple[str, Any]]


class Hub:
    """Who follows which session on this server, fed by the governors' listeners."""

    def __init__(self) -> None:
        self._followers: dict[str, list[tuple[asyncio.AbstractEventLoop, Queue]]] = {}
        self._lock = threading.Lock()
        self._unsubscribe: list[Callable[[], None]] = []

    def attach(self, governors: list[Any]) -> None:
        for governor in governors:
            self._unsubscribe.append(governor.subscribe(self.on_event))

    def detach(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def on_event(self, event: Any) -> None:
        """A governor's listener, in the thread that made the call."""
        if not isinstance(event, CallDecided | CallRefused | CallFinished):
            return
        trace = event.trace
        session = getattr(trace, "session", None)
        with self._lock:
            followers = list(self._followers.get(session, ()))
        if not followers:
            return
        data = trace.to_dict()
        for loop, queue in followers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ("trace", data))
            except RuntimeError:  # that follower's loop is closed: it went away
                self.unfollow(session, queue)

    def follow(self, session_id: str) -> Queue:
        queue: Queue = asyncio.Queue()
        with self._lock:
            self._followers.setdefault(session_id, []).append((asyncio.get_running_loop(), queue))
        return queue

    def unfollow(self, session_id: str, queue: Queue) -> None:
        with self._lock:
            kept = [(lp, q) for lp, q in self._followers.get(session_id, ()) if q is not queue]
            if kept:
                self._followers[session_id] = kept
            else:
                self._followers.pop(session_id, None)

    def following(self, session_id: str) -> int:
        with self._lock:
            return len(self._followers.get(session_id, ()))


def sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


async def stream(
    session_id: str,
    queue: Queue,
    *,
    runs: dict[str, Any],
    render: Callable[[str, Any], Any],
    check: Callable[[], Any],
    disconnected: Callable[[], Any],
    stop: Callable[[], None],
    status: str | None = None,
    lifetime: float = LIFETIME,
) -> AsyncIterator[bytes]:
    """The event stream of one page: ``render(kind, data)`` turns an event into the data sent (or None to
    skip it); ``check()`` (awaited) says whether the sign-in still holds, what the session's status is now
    (a change from ``status``, the one the page shows, refreshes the page) and which calls a run on
    another server made since it last looked; ``stop()`` unfollows
    at the end, whatever ends it."""
    ends = time.monotonic() + lifetime
    followed: list[tuple[Any, Queue]] = []
    merged: Queue = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []

    async def pump(source: Queue, tag: str) -> None:
        while True:
            merged.put_nowait((tag, await source.get()))

    def join(target: Any) -> None:
        source = target.follow()
        followed.append((target, source))
        tasks.append(asyncio.create_task(pump(source, "run")))

    tasks.append(asyncio.create_task(pump(queue, "hub")))
    run = None
    checked = 0.0
    try:
        yield b"retry: 1000\n\n"
        while time.monotonic() < ends:
            if run is None and session_id in runs:  # a run on this server: follow its words and its end
                run = runs[session_id]
                join(run)
            if time.monotonic() - checked >= TICK:
                checked = time.monotonic()
                if await disconnected():
                    return
                signed_in, now, fresh = await check()
                if not signed_in:
                    yield sse("signed_out", {"login": "/login"})
                    return
                for trace in fresh:  # calls another server (or worker) made, read from the store
                    rendered = await render("trace", trace)
                    if rendered is not None:
                        yield sse(rendered[0], rendered[1])
                if status is not None and now != status:  # e.g. another server's run started or ended
                    yield sse("status", {"status": now})
                status = now
                yield b": tick\n\n"
            try:
                tag, (kind, data) = await asyncio.wait_for(merged.get(), timeout=TICK)
            except TimeoutError:
                continue
            if tag == "run" and (kind == "done" or (kind == "error" and data.get("final"))):
                if run is not None:
                    for target, source in followed:
                        target.unfollow(source)
                    followed.clear()
                    for task in tasks[1:]:
                        task.cancel()
                    del tasks[1:]
                run, status = None, None
                yield sse("done", {"stop_reason": data.get("stop_reason")})
                continue
            rendered = await render(kind, data)
            if rendered is not None:
                yield sse(rendered[0], rendered[1])
    finally:
        for task in tasks:
            task.cancel()
        for target, source in followed:
            target.unfollow(source)
        stop()


# ------------------------------------------------------------------------------------------- route

router = APIRouter(include_in_schema=False)


@router.get("/sessions/{session_id}/live")
async def live(request: Request, session_id: str, after: str = "", status: str = "") -> Response:
    """The session page's event stream: ``call`` (a call's HTML, by trace id), ``text`` (the model's
    words), ``status`` and ``done`` (the page refreshes its parts), ``signed_out``."""
    service = request.app.state.service
    store = service.store
    try:
        who = await run_in_threadpool(viewer, request)
    except SignInRequired:
        return secure(StreamingResponse(iter([b"retry: 5000\n\n", sse("signed_out", {"login": "/login"})]),
                                        media_type="text/event-stream"))
    traces = await run_in_threadpool(queries.session_traces, store, who.principal, session_id)  # 404 if not theirs
    hub: Hub = request.app.state.console_hub
    queue = hub.follow(session_id)
    ids = [t["id"] for t in traces]
    for trace in traces[ids.index(after) + 1:] if after in ids else ([] if after else traces):
        queue.put_nowait(("trace", trace))
    parts = ENV.get_template("parts.html").module

    async def render(kind: str, data: Any) -> tuple[str, Any] | None:
        if kind == "trace":
            if data.get("kind", "call") not in CALL_KINDS:
                return None
            item = Item("call", tool=data.get("tool"), args=data.get("args"),
                        result=(data.get("outcome") or {}).get("result"), traces=[data])
            return "call", {"id": data["id"], "html": str(parts.call_item(item, explain))}
        if kind == "model_text" and data.get("text"):
            return "text", {"html": str(parts.text_item(data["text"]))}
        if kind == "approval_pending":
            return "status", {"waiting": True}
        return None

    seen = set(ids)

    async def check() -> tuple[bool, str | None, list[dict[str, Any]]]:
        def look() -> tuple[bool, str | None, list[dict[str, Any]]]:
            record = store.get_session(session_id) or {}
            fresh: list[dict[str, Any]] = []
            if record.get("status") == "running" and session_id not in service.runs:  # run elsewhere
                fresh = [t for t in queries.session_traces(store, who.principal, session_id) if t["id"] not in seen]
                seen.update(t["id"] for t in fresh)
            return still_signed_in(store, who), record.get("status"), fresh

        return await run_in_threadpool(look)

    events = stream(session_id, queue, runs=service.runs, render=render, check=check,
                    disconnected=request.is_disconnected, stop=lambda: hub.unfollow(session_id, queue),
                    status=status[:40] or None)
    return secure(StreamingResponse(events, media_type="text/event-stream",
                                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))
