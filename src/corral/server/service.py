"""What one ``corral serve`` process holds: the store, the served agents, its leases, its runs, and the
calls it decided and has not yet seen finish. The app keeps one ``Service``; the routes and the console
reach it through the ``service`` dependency.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from corral.errors import ConfigError
from corral.server.agents import ServedAgent, load_agents
from corral.server.errors import Conflict, NotFound
from corral.server.leases import DEFAULT_TTL, LeaseLost, Leases
from corral.server.runs import Run, start_run, status_of
from corral.store import open_store

log = logging.getLogger("corral.server")


def store_kind(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    return {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}.get(scheme, "memory")


class SessionCache:
    """Sessions resumed for ``/v1/check``, kept while their stored record is unchanged.

    Resuming reads a session's whole audit chain; a decision needs only its phase, plan, open
    transaction and recent calls. A cached session is used only while the stored record's ``updated``
    stamp is the one it was loaded at — every phase change, plan and transaction move rewrites it —
    so a change made by another server or a shell is seen on the next call.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, governor: Any, session_id: str, record: dict[str, Any]) -> Any:
        key = (governor.agent, session_id)
        stamp = (record.get("updated"), record.get("phase"), record.get("tx"), record.get("plan"))
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] == stamp:
                self._items.move_to_end(key)
                return found[1]
        session = governor.session(id=session_id)
        self.put(governor, session_id, session, record)
        return session

    def put(self, governor: Any, session_id: str, session: Any, record: dict[str, Any] | None = None) -> None:
        record = record if record is not None else governor.store.get_session(session_id) or {}
        stamp = (record.get("updated"), record.get("phase"), record.get("tx"), record.get("plan"))
        with self._lock:
            self._items[(governor.agent, session_id)] = (stamp, session)
            self._items.move_to_end((governor.agent, session_id))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, session_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[1] == session_id]:
                del self._items[key]


class CallBook:
    """Calls decided by ``/v1/check`` and not finished yet: call id → (handle, principal key, when)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[Any, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, call_id: str, handle: Any, principal_key: str) -> None:
        evicted = []
        with self._lock:
            self._items[call_id] = (handle, principal_key, time.monotonic())
            while len(self._items) > self.size:
                evicted.append(self._items.popitem(last=False)[1][0])
        for handle in evicted:
            try:
                handle.cancel("never finished: the server dropped it to make room")
            except Exception as exc:
                log.warning("corral serve: could not settle an unfinished call: %s", exc)

    def peek(self, call_id: str) -> tuple[Any, str] | None:
        with self._lock:
            found = self._items.get(call_id)
        return None if found is None else (found[0], found[1])

    def take(self, call_id: str) -> Any:
        with self._lock:
            found = self._items.pop(call_id, None)
        return None if found is None else found[0]

    def drain(self) -> list[Any]:
        with self._lock:
            items = [v[0] for v in self._items.values()]
            self._items.clear()
        return items


class Service:
    """The server's state; ``start()`` before serving, ``close()`` after."""

    def __init__(self, agent_files: list[str], store_url: str | None = None, *, lease_ttl: float = DEFAULT_TTL) -> None:
        from corral.harness.config import load_agent

        if not agent_files:
            raise ConfigError("corral serve needs at least one agent file")
        if store_url is None:
            urls = {load_agent(path, check=False).store for path in agent_files}
            if len(urls) > 1:
                raise ConfigError(f"the agent files name different stores ({', '.join(sorted(urls))}); "
                                  "a server has one: pass --store URL")
            store_url = urls.pop()
        self.store_url = store_url
        self.store = open_store(store_url)
        self.store_kind = store_kind(self.store.url)
        try:
            self.agents: dict[str, ServedAgent] = load_agents(agent_files, self.store)
        except BaseException:
            self.store.close()
            raise
        self.leases = Leases(self.store, ttl=lease_ttl, recover=self.recover)
        self.sessions = SessionCache()
        self.calls = CallBook()
        self.runs: dict[str, Run] = {}
        self._runs_lock = threading.Lock()

    # --------------------------------------------------------------------------------------- life

    def start(self) -> None:
        self.leases.start()

    def close(self, *, wait: float = 10.0) -> None:
        """Let running runs finish (up to ``wait`` seconds), settle unfinished calls, give leases back."""
        deadline = time.monotonic() + wait
        for run in list(self.runs.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                run.answer.result(timeout=remaining)
            except Exception as exc:
                log.debug("corral serve: run of session %s ended with %s at shutdown", run.session_id, exc)
        for handle in self.calls.drain():
            try:
                handle.cancel("the server stopped before the call was finished")
            except Exception as exc:
                log.warning("corral serve: could not settle an unfinished call at shutdown: %s", exc)
        self.leases.stop()
        for agent in self.agents.values():
            agent.close()
        self.store.close()

    def recover(self, claim: Any) -> list[Any]:
        """Recovery for every served agent, each transaction claimed through its session's lease."""
        reports = []
        for agent in self.agents.values():
            report = agent.governor.recover(claim=claim)
            if report.transactions:
                log.warning("corral serve: recovered %s", report.to_dict()["transactions"])
                for tx in report.transactions:
                    self.sessions.forget(tx.session)
            reports.append(report)
        return reports

    # ------------------------------------------------------------------------------------- agents

    def agent(self, name: str) -> ServedAgent:
        found = self.agents.get(name)
        if found is None:
            raise NotFound(f"no agent {name!r} is served here; served: {', '.join(sorted(self.agents)) or 'none'}")
        return found

    def runnable(self, name: str | None) -> ServedAgent:
        agent = self.agent(name or "")
        if agent.harness is None:
            raise Conflict(f"agent {agent.name!r} has no model: it governs enforcement points (/v1/check) "
                           "but cannot run messages")
        return agent

    # --------------------------------------------------------------------------------------- runs

    def run(self, agent: ServedAgent, session_id: str, prompt: str | None) -> Run:
        """Start a run of ``session_id``: 409 if it is being run here or on another server."""
        try:
            self.leases.acquire(session_id)
        except LeaseLost as exc:
            raise Conflict(str(exc)) from None
        try:
            self.set_status(session_id, "running")
            self.sessions.forget(session_id)
            run = start_run(agent.harness, session_id, prompt, on_end=self._run_ended)
        except BaseException:
            self.leases.release(session_id)
            raise
        with self._runs_lock:
            self.runs[session_id] = run
        return run

    def _run_ended(self, session_id: str, answer: dict[str, Any] | None) -> None:
        try:
            if answer is not None:
                self.set_status(session_id, status_of(answer.get("stop_reason")), answer.get("stop_reason"))
            else:
                record = self.store.get_session(session_id) or {}
                self.set_status(session_id, status_of((record.get("harness") or {}).get("stop_reason")))
        except Exception as exc:
            log.warning("corral serve: could not record the end of the run of session %s: %s", session_id, exc)
        finally:
            with self._runs_lock:
                self.runs.pop(session_id, None)
            self.sessions.forget(session_id)
            self.leases.release(session_id)

    def set_status(self, session_id: str, status: str, stop_reason: str | None = None) -> None:
        record = self.store.get_session(session_id)
        if record is None:
            return
        record["status"] = status
        if stop_reason is not None:
            record["stop_reason"] = stop_reason
        self.store.put_session(record)
