"""The in-memory store: the reference implementation of the protocol, for tests and single processes."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from corral.errors import StoreError
from corral.ids import new_id
from corral.store.audit import GENESIS, audit_key, seal, sign_head
from corral.store.protocol import (
    Append,
    CloseCall,
    LogStep,
    Op,
    OpenCall,
    PutTransaction,
    Reserve,
    Settle,
    UpdateTransaction,
    check_ops,
    gate_reached,
    outline,
)
from corral.store.search import WORD, query_words
from corral.store.sql import session_row, session_summary

_MISSING = object()

def _alike(a: str, b: str) -> bool:
    """Equal, or one stem: a common prefix of 4+ letters leaving at most 2 letters of the shorter word."""
    if a == b:
        return True
    shorter = min(len(a), len(b))
    if shorter < 4:
        return False
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return common >= 4 and shorter - common <= 2


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
        self._principals: dict[str, dict[str, Any]] = {}  # normalised name -> record
        self._leases: dict[str, tuple[str, datetime]] = {}  # key -> (holder, expires at)
        self._signins: dict[str, tuple[str, dict[str, Any], datetime]] = {}  # id digest -> (principal, doc, until)
        self._reservations: dict[str, tuple[tuple[str, ...], Decimal, datetime]] = {}
        self._approvals: dict[str, dict[str, Any]] = {}
        self._txs: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, list[dict[str, Any]]] = {}
        self._open_calls: dict[str, dict[str, Any]] = {}
        self._opened: set[str] = set()  # sessions whose chain exists (from put_session on), records or not
        self._memories: dict[str, dict[str, Any]] = {}

    # sessions
    def put_session(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._sessions[record["id"]] = copy.deepcopy(record)
            sid = record["id"]
            if sid not in self._opened and sid not in self._chains:  # its chain exists from now on, empty
                self._opened.add(sid)
                key = audit_key()
                if key is not None:
                    self._signatures[sid] = sign_head(key, sid, GENESIS)

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

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def records(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._flush_locked()
            return copy.deepcopy(self._chains.get(session_id, []))

    def chain_outline(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._flush_locked()
            return copy.deepcopy([outline(record) for record in self._chains.get(session_id, [])])

    def scan_records(
        self, *, agent: str | None = None, session: str | None = None
    ) -> Iterator[tuple[str, int, Any]]:
        with self._lock:
            self._flush_locked()
            wanted = None if agent is None else {sid for sid, s in self._sessions.items() if s.get("agent") == agent}
            rows = [
                (sid, seq, copy.deepcopy(record))
                for sid in sorted(self._chains)
                if (session is None or sid == session) and (wanted is None or sid in wanted)
                for seq, record in enumerate(self._chains[sid], start=1)
            ]
        yield from rows

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

    def chain_head(self, session_id: str) -> tuple[int, str, str | None] | None:
        with self._lock:
            self._flush_locked()
            if session_id not in self._opened and session_id not in self._chains:
                return None
            head = self._heads.get(session_id, GENESIS)
            return len(self._chains.get(session_id, [])), head, self._signatures.get(session_id)

    def chain_ids(self) -> list[str]:
        with self._lock:
            self._flush_locked()
            return sorted(self._opened | set(self._chains))

    # budget ledger
    def reserve(
        self, scopes: Sequence[tuple[str, Decimal]], amount: Decimal, expires_at: datetime
    ) -> str | None:
        return self._reserve(Reserve(scopes, amount, expires_at))

    def _reserve(self, op: Reserve) -> str | None:
        scopes, amount, expires_at = op.scopes, op.amount, op.expires_at
        gate = None if op.gate is None else Decimal(str(op.gate))
        with self._lock:
            for key, limit in scopes:
                spent, reserved = self._scopes.get(key, (Decimal(0), Decimal(0)))
                if spent + reserved + amount > limit or gate_reached(spent, reserved, limit, gate):
                    return None
            for key, _ in scopes:
                entry = self._scopes.setdefault(key, [Decimal(0), Decimal(0)])
                entry[1] += amount
            rid = op.id or new_id()
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

    # the unit of work
    def batch(self, ops: Sequence[Op]) -> list[Any] | None:
        """The single operations, in order, under the lock; if one fails (or a reservation does not fit)
        the ones before it are undone, so a batch is all or nothing here too."""
        ops = check_ops(ops)
        with self._lock:
            self._flush_locked()  # buffered read records keep their place before the batch's records
            undo: list[Callable[[], None]] = []
            results: list[Any] = []
            try:
                for op in ops:
                    result = self._apply_locked(op, undo)
                    if isinstance(op, Reserve | CloseCall) and result in (None, False):
                        self._undo_locked(undo)
                        return None
                    results.append(result)
            except BaseException:
                self._undo_locked(undo)
                raise
            return results

    @staticmethod
    def _undo_locked(undo: list[Callable[[], None]]) -> None:
        for step in reversed(undo):
            step()

    def _apply_locked(self, op: Op, undo: list[Callable[[], None]]) -> Any:
        """Apply one operation through the public method, and note how to take it back."""
        if isinstance(op, Reserve):
            rid = self._reserve(op)
            if rid is not None:
                undo.append(lambda: self._unreserve_locked(rid))
            return rid
        if isinstance(op, Settle):
            held = self._reservations.get(op.reservation_id)
            self.settle(op.reservation_id, op.actual)
            if held is not None:
                undo.append(lambda: self._unsettle_locked(op.reservation_id, held, op.actual))
            return None
        if isinstance(op, Append):
            record, sid = op.record, op.session_id
            before = (self._heads.get(sid, _MISSING), self._signatures.get(sid, _MISSING),
                      record.get("prev", _MISSING), record.get("hash", _MISSING))
            sealed = self.append(sid, record, durable=True)
            undo.append(lambda: self._unappend_locked(sid, record, before))
            return sealed
        if isinstance(op, PutTransaction):
            tx_id = op.record["id"]
            before_tx, before_steps = self._txs.get(tx_id, _MISSING), self._steps.get(tx_id, _MISSING)
            self.put_transaction(op.record)
            undo.append(lambda: self._restore_tx_locked(tx_id, before_tx, before_steps))
            return None
        if isinstance(op, UpdateTransaction):
            before_tx = copy.deepcopy(self._txs.get(op.tx_id, _MISSING))
            self.update_transaction(op.tx_id, op.fields)
            undo.append(lambda: self._restore_tx_locked(op.tx_id, before_tx, _MISSING))
            return None
        if isinstance(op, LogStep):
            had = op.tx_id in self._steps
            self.log_step(op.tx_id, op.entry)
            undo.append(lambda: self._unlog_locked(op.tx_id, had))
            return None
        if isinstance(op, OpenCall):
            before_call = self._open_calls.get(op.call_id, _MISSING)
            self._open_calls[op.call_id] = {**copy.deepcopy(op.doc), "id": op.call_id, "session": op.session_id,
                                             "expires_at": op.expires_at}
            undo.append(lambda: self._restore_call_locked(op.call_id, before_call))
            return None
        if isinstance(op, CloseCall):
            found = self._open_calls.pop(op.call_id, None)
            if found is None:
                return False
            undo.append(lambda: self._open_calls.__setitem__(op.call_id, found))
            return True
        raise AssertionError(f"unhandled operation {op!r}")  # pragma: no cover - check_ops rejects it

    def _restore_call_locked(self, call_id: str, before: Any) -> None:
        if before is _MISSING:
            self._open_calls.pop(call_id, None)
        else:
            self._open_calls[call_id] = before

    # calls decided durably and not finished yet
    def get_open_call(self, call_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._open_calls.get(call_id)
            return None if found is None else _open_call_view(found)

    def open_calls(self, before: datetime | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [_open_call_view(c) for c in self._open_calls.values()
                    if before is None or c["expires_at"] <= before]

    def _unreserve_locked(self, rid: str) -> None:
        keys, amount, _ = self._reservations.pop(rid)
        for key in keys:
            self._scopes[key][1] -= amount

    def _unsettle_locked(self, rid: str, held: tuple[tuple[str, ...], Decimal, datetime], actual: Decimal) -> None:
        self._reservations[rid] = held
        keys, amount, _ = held
        for key in keys:
            entry = self._scopes[key]
            entry[1] += amount
            entry[0] -= actual

    def _unappend_locked(self, sid: str, record: dict[str, Any], before: tuple[Any, Any, Any, Any]) -> None:
        head, signature, prev, digest = before
        self._chains[sid].pop()
        if not self._chains[sid]:
            del self._chains[sid]
        for table, value in ((self._heads, head), (self._signatures, signature)):
            if value is _MISSING:
                table.pop(sid, None)
            else:
                table[sid] = value
        for key, value in (("prev", prev), ("hash", digest)):
            if value is _MISSING:
                record.pop(key, None)
            else:
                record[key] = value

    def _restore_tx_locked(self, tx_id: str, before_tx: Any, before_steps: Any) -> None:
        if before_tx is _MISSING:
            self._txs.pop(tx_id, None)
        else:
            self._txs[tx_id] = before_tx
        if before_steps is _MISSING and before_tx is _MISSING:
            self._steps.pop(tx_id, None)

    def _unlog_locked(self, tx_id: str, had: bool) -> None:
        self._steps[tx_id].pop()
        if not had:
            del self._steps[tx_id]

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
            found = self._txs.get(tx_id)
            if found is None:
                raise StoreError(f"memory store: update_transaction: no transaction {tx_id!r}")
            found.update(copy.deepcopy(fields))

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

    # Long-term memory: the in-memory stand-in for the databases' full-text search. A memory's rank is how
    # many of the query's words it has (more first), then the newest. Words are the SQL stores' query words
    # (``query_words``); a query word matches a memory's word when they are equal or stem-alike: they share
    # a prefix of four letters or more that leaves at most two letters of the shorter word ("refund",
    # "refunds", "refunded"; "policy", "policies"). No stop words and no term weighting, unlike the
    # databases: the SQL stores are the ones to trust for ranking among equals.
    def memory_put(self, namespace: str, memory_id: str, text: str, tags: str) -> None:
        words = set(WORD.findall((text + " " + tags).lower()))
        stems: dict[str, list[str]] = {}  # the words by their first four letters, for the stem-alike match
        for word in words:
            if len(word) >= 4:
                stems.setdefault(word[:4], []).append(word)
        with self._lock:
            # an update keeps its place: a dict keeps the order of first insertion
            self._memories[memory_id] = {"id": memory_id, "namespace": namespace, "text": text, "tags": tags,
                                         "words": words, "stems": stems}

    def memory_search(self, namespace: str, query: str, limit: int) -> list[dict[str, Any]]:
        words = query_words(query)
        if not words or limit <= 0:
            return []
        with self._lock:
            scored = []
            for order, m in enumerate(self._memories.values()):
                if m["namespace"] != namespace:
                    continue
                hits = sum(1 for word in words if word in m["words"]
                           or any(_alike(word, other) for other in m["stems"].get(word[:4], ())))
                if hits:
                    scored.append((-hits, -order, m))
            scored.sort(key=lambda item: (item[0], item[1]))
            return [{"id": m["id"], "text": m["text"], "tags": m["tags"]} for _, _, m in scored[:limit]]

    def memory_delete(self, memory_id: str) -> None:
        with self._lock:
            self._memories.pop(memory_id, None)

    # ------------------------------------------------------------------------- session listing

    def query_sessions(
        self,
        *,
        agent: str | None = None,
        principal: str | None = None,
        status: str | None = None,
        before: tuple[str, str] | None = None,
        limit: int = 50,
        stop_reason: str | None = None,
    ) -> list[dict[str, Any]]:
        """Session summaries, newest first (``created``, then ``id``), after the keyset ``before``."""
        with self._lock:
            docs = list(self._sessions.values())
        rows = []
        wanted = {"agent": agent, "principal": principal, "status": status, "stop_reason": stop_reason}
        for doc in docs:
            summary = session_summary(session_row(doc)[:-1])
            key = (summary["created"] or "", summary["id"])
            if any(value is not None and summary[field] != value for field, value in wanted.items()) or (
                    before is not None and not key < tuple(before)):
                continue
            rows.append((key, summary))
        rows.sort(key=lambda pair: pair[0], reverse=True)
        return [summary for _, summary in rows[: int(limit)]]

    # ------------------------------------------------------------------------------- principals

    def add_principal(self, record: dict[str, Any]) -> bool:
        with self._lock:
            if record["key"] in self._principals or any(
                p["token_sha256"] == record["token_sha256"] for p in self._principals.values()
            ):
                return False
            self._principals[record["key"]] = copy.deepcopy(record)
            return True

    def get_principal(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._principals.get(key)
            return copy.deepcopy(found) if found is not None else None

    def principal_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        with self._lock:
            for record in self._principals.values():
                if record["token_sha256"] == token_sha256:
                    return copy.deepcopy(record)
        return None

    def list_principals(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(p) for p in self._principals.values()]

    def update_principal(self, key: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            found = self._principals.get(key)
            if found is None:
                return False
            found.update(copy.deepcopy(fields))
            return True

    # ----------------------------------------------------------------------------------- leases

    def acquire_lease(self, key: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take ``key`` for ``holder`` until ``until``: free, expired by ``now``, or held by ``holder``."""
        with self._lock:
            found = self._leases.get(key)
            if found is not None and found[0] != holder and found[1] > now:
                return False
            self._leases[key] = (holder, until)
            return True

    def renew_lease(self, key: str, holder: str, until: datetime) -> bool:
        with self._lock:
            found = self._leases.get(key)
            if found is None or found[0] != holder:
                return False
            self._leases[key] = (holder, until)
            return True

    def release_lease(self, key: str, holder: str) -> None:
        with self._lock:
            found = self._leases.get(key)
            if found is not None and found[0] == holder:
                del self._leases[key]

    def get_lease(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._leases.get(key)
        return None if found is None else {"key": key, "holder": found[0], "expires_at": found[1]}

    # ---------------------------------------------------------------------------------- sign-ins

    def add_signin(self, id_sha256: str, principal: str, doc: dict[str, Any], expires_at: datetime) -> None:
        with self._lock:
            if id_sha256 in self._signins:
                raise StoreError(f"a sign-in with digest {id_sha256[:12]}… exists already")
            self._signins[id_sha256] = (principal, copy.deepcopy(doc), expires_at)

    def get_signin(self, id_sha256: str, now: datetime) -> dict[str, Any] | None:
        with self._lock:
            found = self._signins.get(id_sha256)
        if found is None or found[2] <= now:
            return None
        return {**copy.deepcopy(found[1]), "principal": found[0], "expires_at": found[2]}

    def remove_signin(self, id_sha256: str) -> None:
        with self._lock:
            self._signins.pop(id_sha256, None)

    def remove_expired_signins(self, now: datetime) -> int:
        with self._lock:
            gone = [k for k, v in self._signins.items() if v[2] <= now]
            for key in gone:
                del self._signins[key]
        return len(gone)

    def close(self) -> None:
        self.flush()


def _open_call_view(call: dict[str, Any]) -> dict[str, Any]:
    view = copy.deepcopy({k: v for k, v in call.items() if k != "expires_at"})
    view["expires"] = call["expires_at"].astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return view
