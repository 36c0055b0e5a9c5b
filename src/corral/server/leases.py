"""Session leases: many servers on one store, each session run by one of them at a time (DESIGN §13).

A server that runs a session holds ``session:ID`` in the store's lease table until ``now + ttl``, and a
keeper thread renews every lease it holds each ``ttl / 3`` while the run goes on; a second run of a
leased session — on this server or another — is refused (409). The keeper also stamps the session's
open transaction with the same ``lease_until``, so recovery on another host knows the transaction's
owner is alive for as long as the lease is.

When a server dies its leases stop being renewed and run out. Every server runs recovery every
``ttl / 2``: for each abandoned transaction it first takes the session's lease — so of several servers
exactly one recovers it, and no run can start on the session meanwhile — then rolls it back as §7 says,
and lets the lease go. A dead server's work is therefore recovered within twice the lease time.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.governance.traces import iso

log = logging.getLogger("corral.server")

DEFAULT_TTL = 30.0


def session_key(session_id: str) -> str:
    return f"session:{session_id}"


def new_holder() -> str:
    """This server process, as lease holders are told apart: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseLost(Exception):
    """The lease could not be taken: someone else runs the session."""


class Leases:
    """The leases this server holds, and the thread that keeps them (and runs recovery)."""

    def __init__(self, store: Any, *, ttl: float = DEFAULT_TTL, holder: str | None = None,
                 recover: Callable[[Callable[[dict[str, Any]], Any]], Any] | None = None) -> None:
        if ttl <= 0:
            raise ValueError(f"a lease lasts a positive number of seconds, got {ttl!r}")
        self.store = store
        self.ttl = float(ttl)
        self.holder = holder or new_holder()
        self._recover = recover
        self._held: dict[str, int] = {}  # session id -> how many runs of this server hold it (1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def _until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.ttl)

    # ------------------------------------------------------------------------------ take and give back

    def acquire(self, session_id: str) -> None:
        """Hold the session for a run; ``LeaseLost`` if another run (here or on another server) holds it."""
        with self._lock:
            if session_id in self._held:
                raise LeaseLost(f"session {session_id} is being run on this server")
            now = self.now()
            if not self.store.acquire_lease(session_key(session_id), self.holder, now, self._until(now)):
                lease = self.store.get_lease(session_key(session_id)) or {}
                raise LeaseLost(f"session {session_id} is being run by another server ({lease.get('holder')}) "
                                f"until at least {iso(lease['expires_at']) if lease.get('expires_at') else 'now'}")
            self._held[session_id] = 1

    def release(self, session_id: str) -> None:
        with self._lock:
            self._held.pop(session_id, None)
        try:
            self.store.release_lease(session_key(session_id), self.holder)
        except Exception as exc:  # it runs out on its own
            log.warning("corral serve: could not release the lease of session %s: %s", session_id, exc)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def holds(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._held

    def running_elsewhere(self, session_id: str) -> bool:
        """Whether a live lease on the session is held by anyone (this server included)."""
        lease = self.store.get_lease(session_key(session_id))
        return lease is not None and lease["expires_at"] > self.now()

    # --------------------------------------------------------------------------------------- keeping

    def renew_all(self) -> None:
        now = self.now()
        until = self._until(now)
        for session_id in self.held():
            try:
                if not self.store.renew_lease(session_key(session_id), self.holder, until):
                    log.error("corral serve: the lease of session %s was lost (taken over after it ran out)",
                              session_id)
                    continue
                record = self.store.get_session(session_id) or {}
                tx = record.get("tx")
                if tx and record.get("phase") == "commit":
                    self.store.update_transaction(tx, {"lease_until": iso(until)})
            except Exception as exc:
                log.warning("corral serve: renewing the lease of session %s failed: %s", session_id, exc)

    def claim_for_recovery(self, tx: dict[str, Any]) -> Callable[[], None] | None:
        """Take an abandoned transaction's session for recovery; the release to call after, or None
        when its session is leased (its server is alive, or another server is recovering it)."""
        session_id = tx.get("session")
        if not isinstance(session_id, str):
            return None
        now = self.now()
        if not self.store.acquire_lease(session_key(session_id), self.holder, now, self._until(now)):
            return None
        if self.holds(session_id):  # a run of this server has it: not abandoned at all
            return None
        return lambda: self.store.release_lease(session_key(session_id), self.holder)

    def recover_once(self) -> Any:
        if self._recover is None:
            return None
        return self._recover(self.claim_for_recovery)

    def _run(self) -> None:
        renew_every = self.ttl / 3
        recover_every = self.ttl / 2
        next_recovery = 0.0
        import time

        while not self._stop.is_set():
            self.renew_all()
            if time.monotonic() >= next_recovery:
                try:
                    self.recover_once()
                except Exception as exc:
                    log.warning("corral serve: recovery failed, will try again: %s", exc)
                next_recovery = time.monotonic() + recover_every
            self._stop.wait(min(renew_every, recover_every))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-leases", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for session_id in self.held():
            self.release(session_id)
