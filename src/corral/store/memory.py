"""The in-memory store: the reference implementation of the protocol, for tests and single processes."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from corral.governance.ids import new_id
from corral.store.audit import GENESIS, audit_key, seal, sign_head


class MemoryStore:
    url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sessions: dict[str, dict[str, Any]] = {}
        self._chains: dict[str, list[dict[str, Any]]] = {}
        self._heads: dict[str, str] = {}
        self._signatures: dict[str, str] = {}
        self._key = audit_key()
        # group commit for read records: sealed (hashed) on flush, in order, before any later record
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._scopes: dict[str, list[Decimal]] = {}  # key -> [spent, reserved]
        self._reservations: dict[str, tuple[tuple[str, ...], Decimal, datetime]] = {}
        self._approvals: dict[str, dict[str, Any]] = {}
        self._txs: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, list[dict[str, Any]]] = {}
        self._memories: dict[str, dict[str, Any]] = {}

    # sessions
    def put_session(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._sessions[record["id"]] = copy.deepcopy(record)

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._sessions.get(session_id)
            return copy.deepcopy(found) if found is not None else None

    def list_sessions(self, agent: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(s) for s in self._sessions.values() if agent is None or s["agent"] == agent]

    # audit chain
    def append(self, session_id: str, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        with self._lock:
            if not durable:
                self._pending.append((session_id, record))
                if len(self._pending) >= 256:
                    self._flush_locked()
                return record
            self._flush_locked()
            return self._seal_locked(session_id, record)

    def _seal_locked(self, session_id: str, record: dict[str, Any]) -> dict[str, Any]:
        seal(self._heads.get(session_id, GENESIS), record)
        self._chains.setdefault(session_id, []).append(record)
        self._heads[session_id] = record["hash"]
        key = self._key
        if key is not None:
            self._signatures[session_id] = sign_head(key, session_id, record["hash"])
        return record

    def head_signature(self, session_id: str) -> str | None:
        with self._lock:
            self._flush_locked()
            return self._signatures.get(session_id)

    def _flush_locked(self) -> None:
        pending, self._pending = self._pending, []
        for session_id, record in pending:
            self._seal_locked(session_id, record)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def records(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._flush_locked()
            return copy.deepcopy(self._chains.get(session_id, []))

    def find_record(self, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._flush_locked()
            for chain in self._chains.values():
                for record in chain:
                    if record.get("id") == record_id:
                        return copy.deepcopy(record)
            return None

    def head(self, session_id: str) -> str | None:
        with self._lock:
            self._flush_locked()
            return self._heads.get(session_id)

    # budget ledger
    def reserve(
        self, scopes: Sequence[tuple[str, Decimal]], amount: Decimal, expires_at: datetime
    ) -> str | None:
        with self._lock:
            for key, limit in scopes:
                spent, reserved = self._scopes.get(key, (Decimal(0), Decimal(0)))
                if spent + reserved + amount > limit:
                    return None
            for key, _ in scopes:
                entry = self._scopes.setdefault(key, [Decimal(0), Decimal(0)])
                entry[1] += amount
            rid = new_id()
            self._reservations[rid] = (tuple(k for k, _ in scopes), amount, expires_at)
            return rid

    def settle(self, reservation_id: str, actual: Decimal) -> None:
        with self._lock:
            found = self._reservations.pop(reservation_id, None)
            if found is None:
                return
            keys, amount, _ = found
            for key in keys:
                entry = self._scopes[key]
                entry[1] -= amount
                entry[0] += actual

    def release(self, reservation_id: str) -> None:
        self.settle(reservation_id, Decimal(0))

    def usage(self, scope_keys: Sequence[str]) -> list[tuple[Decimal, Decimal]]:
        with self._lock:
            zero = (Decimal(0), Decimal(0))
            return [tuple(self._scopes.get(k, zero)) for k in scope_keys]  # type: ignore[misc]

    def release_expired(self, now: datetime) -> int:
        with self._lock:
            expired = [rid for rid, (_, _, exp) in self._reservations.items() if exp <= now]
        for rid in expired:
            self.release(rid)
        return len(expired)

    # approvals
    def put_approval(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._approvals[record["id"]] = copy.deepcopy(record)

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._approvals.get(approval_id)
            return copy.deepcopy(found) if found is not None else None

    def find_approvals(
        self, *, binding: str | None = None, session: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(a)
                for a in self._approvals.values()
                if (binding is None or a["binding"] == binding)
                and (session is None or a["session"] == session)
                and (status is None or a["status"] == status)
            ]

    def resolve_approval(self, approval_id: str, expect: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            found = self._approvals.get(approval_id)
            if found is None or found["status"] != expect:
                return False
            found.update(copy.deepcopy(fields))
            return True

    # transactions
    def put_transaction(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._txs[record["id"]] = copy.deepcopy(record)
            self._steps.setdefault(record["id"], [])

    def update_transaction(self, tx_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self._txs[tx_id].update(copy.deepcopy(fields))

    def get_transaction(self, tx_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._txs.get(tx_id)
            return copy.deepcopy(found) if found is not None else None

    def transactions(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(t) for t in self._txs.values() if states is None or t["state"] in states]

    def log_step(self, tx_id: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._steps.setdefault(tx_id, []).append(copy.deepcopy(entry))

    def steps(self, tx_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._steps.get(tx_id, []))

    # long-term memory: a word-overlap ranking stands in for the databases' full-text search
    def memory_put(self, namespace: str, memory_id: str, text: str, tags: str) -> None:
        with self._lock:
            self._memories[memory_id] = {"id": memory_id, "namespace": namespace, "text": text, "tags": tags}

    def memory_search(self, namespace: str, query: str, limit: int) -> list[dict[str, Any]]:
        words = {w for w in re.findall(r"\w+", query.lower()) if len(w) > 1}
        with self._lock:
            scored = []
            for order, m in enumerate(self._memories.values()):
                if m["namespace"] != namespace:
                    continue
                hits = len(words & set(re.findall(r"\w+", (m["text"] + " " + m["tags"]).lower())))
                if hits:
                    scored.append((-hits, -order, m))
            scored.sort(key=lambda item: (item[0], item[1]))
            return [{"id": m["id"], "text": m["text"], "tags": m["tags"]} for _, _, m in scored[:limit]]

    def memory_delete(self, memory_id: str) -> None:
        with self._lock:
            self._memories.pop(memory_id, None)

    def close(self) -> None:
        self.flush()
