"""Runs of the agent loop, each on a thread of its own — independent of the request that started it.

A request starts a run and then waits for it (the JSON answer) or follows its events (server-sent
events); a client that goes away stops neither the run nor its traces — only its own following. The
run holds its session's lease from before it starts to after it ends (see ``leases``).

The loop's events become the API's: ``model_text``, ``tool_call`` (with the call's proof trace),
``budget``, ``approval_pending``, ``error``, and last ``done`` with the same object the JSON answer is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from corral.harness.loop import run as run_loop
from corral.harness.runtime import current

DONE = "done"


def status_of(stop_reason: str | None) -> str:
    """A session's status after a run stopped for ``stop_reason``."""
    if stop_reason is None:
        return "new"
    if stop_reason in ("awaiting_approval", "awaiting_client"):
        return stop_reason
    return "idle"


class Run:
    """One run of the loop on one session: its events so far, its followers, its answer when done."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.answer: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.answer.set_running_or_notify_cancel()  # a follower that goes away cannot cancel it
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._followers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[str, dict[str, Any]]]]] = []
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- the events

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._events.append((kind, data))
            followers = list(self._followers)
        for loop, queue in followers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, data))
            except RuntimeError:  # that follower's loop is closed: it went away
                self.unfollow(queue)

    def follow(self) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        """A queue of this run's events, from its first; call from the event loop that will read it."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        with self._lock:
            for event in self._events:
                queue.put_nowait(event)
            self._followers.append((loop, queue))
        return queue

    def unfollow(self, queue: asyncio.Queue[Any]) -> None:
        with self._lock:
            self._followers = [(lp, q) for lp, q in self._followers if q is not queue]

    async def wait(self) -> dict[str, Any]:
        """The run's answer; a request that awaits it and is cancelled leaves the run alone."""
        return await asyncio.shield(asyncio.wrap_future(self.answer))

    # ----------------------------------------------------------------------------- from the loop

    def on_loop_event(self, kind: str, data: dict[str, Any]) -> None:
        """The loop's ``events`` callback, on the run's thread."""
        if kind == "text":
            self.publish("model_text", {"text": data.get("text", "")})
        elif kind == "call":
            trace = None
            try:
                last = current().session.last_trace
                if last is not None and last.tool == data.get("tool") and data.get("decision") not in (None, "refused",
                                                                                                       "deferred"):
                    trace = last.to_dict()
            except Exception:
                trace = None
            self.publish("tool_call", {"tool": data.get("tool"), "args": data.get("args"),
                                       "decision": data.get("decision"), "reason": data.get("reason"),
                                       "phase": data.get("phase"), "result": data.get("result"), "trace": trace})
            if data.get("budget") is not None:
                self.publish("budget", dict(data["budget"]))
        elif kind == "pending":
            self.publish("approval_pending", {"tool": data.get("tool"), "approval": data.get("approval"),
                                              "reason": data.get("reason")})
        elif kind == "error":
            self.publish("error", {"error": data.get("error")})


def start_run(
    harness: Any,
    session_id: str,
    prompt: str | None,
    *,
    on_end: Callable[[str, dict[str, Any] | None], None],
) -> Run:
    """Start the loop on ``session_id`` (resuming it; ``prompt`` None re-submits paused calls) on a new
    thread. ``on_end(session_id, answer)`` runs on that thread when the run is over, whatever happened."""
    run = Run(session_id)

    def target() -> None:
        answer: dict[str, Any] | None = None
        failure: BaseException | None = None
        try:
            result = run_loop(harness, prompt, session_id=session_id, events=run.on_loop_event)
            answer = result.to_dict()
        except BaseException as exc:  # the loop itself failed (an unknown session, a store that went away)
            failure = exc
        finally:
            try:
                on_end(session_id, answer)
            finally:
                if answer is not None:
                    run.answer.set_result(answer)
                    run.publish(DONE, answer)
                else:
                    run.answer.set_exception(failure or RuntimeError("the run ended without an answer"))
                    run.publish("error", {"error": f"{type(failure).__name__}: {failure}", "final": True})

    thread = threading.Thread(target=target, name=f"corral-run[{session_id}]", daemon=True)
    thread.start()
    return run
