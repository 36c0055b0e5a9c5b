"""The store protocol: the small surface the kernel needs, so stores plug in without kernel changes.

Records are plain JSON-able dicts. Every method is atomic on its own; ``reserve`` is atomic across
every scope it names (all fit, or nothing is reserved).

``batch(ops)`` is the unit of work the kernel writes around a governed call: a few of the writes
below, all in one transaction, all or nothing. Before a write runs, its reservation, its decision and
its INTENT are one batch — so a decision is never stored without its reservation and INTENT, nor an
INTENT without its decision — and after it runs, the settlement, DONE and the outcome are another.
On a SQL store that is one commit (one fsync) each, where the single operations would be six.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from corral.struct import struct

# ------------------------------------------------------------------------ the operations of a batch


#: The fields of an audit record ``chain_outline`` keeps: enough to merge outcomes into their decisions
#: and to tell which calls ran, when, and what their results added (``ref`` and ``outcome`` only where set).
OUTLINE = ("kind", "id", "ref", "tool", "ts", "decision", "outcome")


def outline(record: dict[str, Any]) -> dict[str, Any]:
    """One record cut down to ``OUTLINE``."""
    cut = {"kind": record.get("kind"), "id": record.get("id"), "tool": record.get("tool"), "ts": record.get("ts"),
           "decision": record.get("decision")}
    if record.get("ref") is not None:
        cut["ref"] = record["ref"]
    if record.get("outcome") is not None:
        cut["outcome"] = record["outcome"]
    return cut


@struct(frozen=True, slots=True)
class Reserve:
    """``reserve(scopes, amount, expires_at)``; its result is the reservation id. When it does not fit,
    the whole batch writes nothing and ``batch`` returns None.

    ``gate``: a fraction (e.g. 0.75) — the reservation also does not fit when any scope has already used
    ``gate × limit`` or more (spent + reserved, before this reservation). Judged inside the same atomic
    step as the reservation itself, so processes racing one budget cannot all pass a gate a snapshot
    showed open. ``id``: the reservation's id (default: a new one); the kernel uses the call's trace id.
    """

    scopes: Sequence[tuple[str, Decimal]]
    amount: Decimal
    expires_at: datetime
    gate: Decimal | float | None = None
    id: str | None = None


def gate_reached(spent: Decimal, reserved: Decimal, limit: Decimal, gate: Decimal | None) -> bool:
    """Has a scope used ``gate`` of its limit already (before the reservation being judged)?"""
    return gate is not None and spent + reserved >= gate * limit


@struct(frozen=True, slots=True)
class Settle:
    """``settle(reservation_id, actual)`` (``actual`` 0 releases it); an unknown reservation is a no-op."""

    reservation_id: str
    actual: Decimal


@struct(frozen=True, slots=True)
class Append:
    """A durable ``append(session_id, record)``; its result is the record, sealed into the chain."""

    session_id: str
    record: dict[str, Any]


@struct(frozen=True, slots=True)
class PutTransaction:
    record: dict[str, Any]


@struct(frozen=True, slots=True)
class UpdateTransaction:
    tx_id: str
    fields: dict[str, Any]


@struct(frozen=True, slots=True)
class LogStep:
    tx_id: str
    entry: dict[str, Any]


@struct(frozen=True, slots=True)
class OpenCall:
    """A call decided durably whose outcome another process may report, by its id (the Claude Code hook's
    PostToolUse, another server). ``doc`` holds what finishing it needs; recovery finishes the ones left
    open past ``expires_at`` with the outcome "no outcome"."""

    call_id: str
    session_id: str
    expires_at: datetime
    doc: dict[str, Any]


@struct(frozen=True, slots=True)
class CloseCall:
    """Finish an open call. When it is not open (finished already, by anyone), the whole batch writes
    nothing and ``batch`` returns None: a call is finished exactly once."""

    call_id: str


Op = Reserve | Settle | Append | PutTransaction | UpdateTransaction | LogStep | OpenCall | CloseCall
OPS = (Reserve, Settle, Append, PutTransaction, UpdateTransaction, LogStep, OpenCall, CloseCall)


def check_ops(ops: Sequence[Op]) -> list[Op]:
    """The batch as a list, each operation one of the closed set (anything else is a programming error)."""
    out = list(ops)
    for op in out:
        if not isinstance(op, OPS):
            names = ", ".join(t.__name__ for t in OPS)
            raise TypeError(f"store batch: {op!r} is not an operation; expected one of {names}")
    return out


def describe_ops(ops: Sequence[Op]) -> str:
    """What a batch does, for its error messages: ``"batch (reserve, append, log_step)"``."""
    names = {Reserve: "reserve", Settle: "settle", Append: "append", PutTransaction: "put_transaction",
             UpdateTransaction: "update_transaction", LogStep: "log_step", OpenCall: "open_call",
             CloseCall: "close_call"}
    return "batch (" + ", ".join(names[type(op)] for op in ops) + ")"


@runtime_checkable
class Store(Protocol):
    url: str

    # sessions: {"id", "agent", "principal", "roles", "phase", "plan", "created", ...}
    def put_session(self, record: dict[str, Any]) -> None: ...
    def get_session(self, session_id: str) -> dict[str, Any] | None: ...
    def list_sessions(self, agent: str | None = None) -> list[dict[str, Any]]: ...

    # the audit chain, per session; the store sets "prev" and "hash"
    def append(self, session_id: str, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]: ...
    def records(self, session_id: str) -> list[dict[str, Any]]: ...
    # the same records cut down to ``OUTLINE`` (what resuming a session rebuilds its call log and labels
    # from), read without decoding whole records: a long session resumes in a fraction of the time
    def chain_outline(self, session_id: str) -> list[dict[str, Any]]: ...
    # every record of the agent's sessions (or of one session, or of all), as (session_id, seq, raw) in
    # chain order per session, raw as stored (JSON text; a dict in memory) and unparsed — so a reader that
    # must go through everything (replay) can report a corrupt row and go on. Streams: rows come in batches.
    def scan_records(
        self, *, agent: str | None = None, session: str | None = None
    ) -> Iterator[tuple[str, int, Any]]: ...
    def head(self, session_id: str) -> str | None: ...
    def find_record(self, record_id: str) -> dict[str, Any] | None: ...
    def head_signature(self, session_id: str) -> str | None: ...  # HMAC of the head, with CORRAL_AUDIT_KEY
    # (records, head, HMAC) as kept apart from the chain, or None when the store keeps no head for it: a
    # session's chain exists (empty) from ``put_session`` on, so a session without one lost it
    def chain_head(self, session_id: str) -> tuple[int, str, str | None] | None: ...
    def chain_ids(self) -> list[str]: ...  # every session id with a chain, sorted
    def flush(self) -> None: ...
    # False once a group-committed write has failed and the store has not answered since; it tries to
    # write what is buffered first. A store that cannot be written blocks even reads (§9).
    def writable(self) -> bool: ...

    # the budget ledger: scope keys like "session:01J…", "agent:refund-desk"
    def reserve(
        self, scopes: Sequence[tuple[str, Decimal]], amount: Decimal, expires_at: datetime
    ) -> str | None: ...
    def settle(self, reservation_id: str, actual: Decimal) -> None: ...
    def release(self, reservation_id: str) -> None: ...
    def usage(self, scope_keys: Sequence[str]) -> list[tuple[Decimal, Decimal]]: ...
    def release_expired(self, now: datetime) -> int: ...

    # several of the writes above as one transaction: one result per operation (the reservation id for
    # Reserve, the sealed record for Append, else None), or None — and nothing written — when a
    # reservation does not fit or a CloseCall names a call that is not open. Any other failure raises
    # and writes nothing either.
    def batch(self, ops: Sequence[Op]) -> list[Any] | None: ...

    # calls decided durably and not finished yet (``OpenCall`` / ``CloseCall`` in a batch):
    # {"id", "session", "expires", **doc}; ``open_calls(before)``: those that expire before ``before``
    def get_open_call(self, call_id: str) -> dict[str, Any] | None: ...
    def open_calls(self, before: datetime | None = None) -> list[dict[str, Any]]: ...

    # approvals: {"id", "binding", "session", "tool", "args", "status", "expires", ...}
    def put_approval(self, record: dict[str, Any]) -> None: ...
    def get_approval(self, approval_id: str) -> dict[str, Any] | None: ...
    def find_approvals(
        self, *, binding: str | None = None, session: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]: ...
    def resolve_approval(self, approval_id: str, expect: str, fields: dict[str, Any]) -> bool: ...

    # the transaction log
    def put_transaction(self, record: dict[str, Any]) -> None: ...
    def update_transaction(self, tx_id: str, fields: dict[str, Any]) -> None: ...
    def get_transaction(self, tx_id: str) -> dict[str, Any] | None: ...
    def transactions(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    def log_step(self, tx_id: str, entry: dict[str, Any]) -> None: ...
    def steps(self, tx_id: str) -> list[dict[str, Any]]: ...

    # long-term memory (full-text search), namespaced "agent/principal"
    def memory_put(self, namespace: str, memory_id: str, text: str, tags: str) -> None: ...
    def memory_search(self, namespace: str, query: str, limit: int) -> list[dict[str, Any]]: ...
    def memory_delete(self, memory_id: str) -> None: ...

    # session listing for the API and the console: summaries {id, agent, principal, phase, status,
    # stop_reason, created, updated}, newest first by (created, id), after the keyset ``before``
    def query_sessions(
        self, *, agent: str | None = None, principal: str | None = None, status: str | None = None,
        before: tuple[str, str] | None = None, limit: int = 50, stop_reason: str | None = None,
    ) -> list[dict[str, Any]]: ...

    # principals of the API: {"key" (normalised name), "name", "roles", "token_sha256", "created", "revoked"}
    def add_principal(self, record: dict[str, Any]) -> bool: ...  # False: the key or token exists already
    def get_principal(self, key: str) -> dict[str, Any] | None: ...
    def principal_by_token(self, token_sha256: str) -> dict[str, Any] | None: ...
    def list_principals(self) -> list[dict[str, Any]]: ...
    def update_principal(self, key: str, fields: dict[str, Any]) -> bool: ...

    # leases: a key held by one holder until a time; taken when free, expired, or already the holder's
    def acquire_lease(self, key: str, holder: str, now: datetime, until: datetime) -> bool: ...
    def renew_lease(self, key: str, holder: str, until: datetime) -> bool: ...
    def release_lease(self, key: str, holder: str) -> None: ...
    def get_lease(self, key: str) -> dict[str, Any] | None: ...

    # console sign-ins: the SHA-256 of a browser's random sign-in id (never the id), the principal's key,
    # a document, and when it runs out; an expired one is never returned
    def add_signin(self, id_sha256: str, principal: str, doc: dict[str, Any], expires_at: datetime) -> None: ...
    def get_signin(self, id_sha256: str, now: datetime) -> dict[str, Any] | None: ...
    def remove_signin(self, id_sha256: str) -> None: ...
    def remove_expired_signins(self, now: datetime) -> int: ...

    def close(self) -> None: ...
