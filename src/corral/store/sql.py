"""What the SQLite and PostgreSQL stores share: the row codec, the audit chain's records on their way in, a
batch's operations made ready to write, and ``SQLStore`` — every method whose SQL is the same in both
dialects, written once.

A statement is written with ``?`` for each parameter and ``{order}`` / ``{lock}`` where the dialects
differ (the column that keeps insertion order; what a read adds when its row will be written back in the
same transaction). Each store's ``_sql`` (made by ``dialect``) turns it into its own, once per process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

from corral.canonical import canonical_json, sha256_hex
from corral.errors import ConfigError, StoreError
from corral.ids import new_id
from corral.store.audit import GENESIS, audit_key, sign_head
from corral.store.group_commit import GroupCommit
from corral.store.protocol import (
    OUTLINE,
    Append,
    CloseCall,
    LogStep,
    Op,
    OpenCall,
    PutTransaction,
    Reserve,
    Settle,
    check_ops,
    describe_ops,
    outline,
)
from corral.struct import field, struct

T = TypeVar("T")



def encode_doc(doc: dict[str, Any]) -> str:
    """A document as JSON text (canonical: what is written is what is read back)."""
    return canonical_json(doc)


def decode_doc(table: str, key: Any, text: Any) -> dict[str, Any]:
    """A stored JSON document; one that does not parse is a ``StoreError`` naming its row."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"corrupted row in table {table!r}, key {key!r}: its JSON does not parse ({exc})") from exc
    if not isinstance(value, dict):
        raise StoreError(
            f"corrupted row in table {table!r}, key {key!r}: expected a JSON object, found {type(value).__name__}"
        )
    return value


def decode_list(table: str, key: Any, text: Any) -> list[Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"corrupted row in table {table!r}, key {key!r}: its JSON does not parse ({exc})") from exc
    if not isinstance(value, list):
        raise StoreError(f"corrupted row in table {table!r}, key {key!r}: expected a JSON list")
    return value


def decode_decimal(table: str, key: Any, text: Any) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise StoreError(f"corrupted row in table {table!r}, key {key!r}: {text!r} is not a decimal") from exc
    if not value.is_finite():
        raise StoreError(f"corrupted row in table {table!r}, key {key!r}: {text!r} is not a finite decimal")
    return value


def to_decimal(value: Any) -> Decimal:
    """Amounts arrive as ``Decimal``; an int or float is taken at its written value, never its binary one."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"an amount must be a Decimal or a number, got {value!r}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"an amount must be a Decimal or a number, got {value!r}") from None


def to_utc(when: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime) -> int:
    return (to_utc(when) - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


# -------------------------------------------------------------------------------- session listing

SESSION_SUMMARY_FIELDS = ("id", "agent", "principal", "phase", "status", "stop_reason", "created", "updated")
SESSION_SUMMARY_COLUMNS = ", ".join(SESSION_SUMMARY_FIELDS)
_SESSION_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in (*SESSION_SUMMARY_FIELDS[1:], "doc"))


def session_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A session's row: its summary columns, then the document. ``stop_reason`` is the record's own, else
    its harness state's; ``status`` is None where no server has run the session."""
    harness = record.get("harness")
    stop = record.get("stop_reason")
    if stop is None and isinstance(harness, dict):
        stop = harness.get("stop_reason")
    values = [record.get(f) for f in SESSION_SUMMARY_FIELDS]
    values[SESSION_SUMMARY_FIELDS.index("stop_reason")] = stop
    return (*(None if v is None else str(v) for v in values), encode_doc(record))


def session_summary(row: Sequence[Any]) -> dict[str, Any]:
    """One row of ``query_sessions`` as a dict."""
    return dict(zip(SESSION_SUMMARY_FIELDS, row, strict=True))


def session_query(*, agent: str | None, principal: str | None, status: str | None,
                  before: tuple[str, str] | None, limit: int, stop_reason: str | None = None) -> tuple[str, list[Any]]:
    """The listing's SQL (newest first, keyset ``before``, never OFFSET) and its parameters."""
    where, args = [], []
    for column, value in (("agent", agent), ("principal", principal), ("status", status),
                          ("stop_reason", stop_reason)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if before is not None:
        where.append("(created, id) < (?, ?)")
        args.extend(before)
    sql = (f"SELECT {SESSION_SUMMARY_COLUMNS} FROM sessions {'WHERE ' + ' AND '.join(where) if where else ''} "
           "ORDER BY created DESC, id DESC LIMIT ?")
    return sql, [*args, int(limit)]


# --------------------------------------------------------------------------------- the audit chain


@struct
class ChainRecord:
    """One record on its way into a session's chain; ``text`` is the canonical JSON its hash covers."""

    session_id: str
    record: dict[str, Any]
    text: str
    sealed: tuple[str, str] = field(default=("", ""))  # (prev, hash), set inside the writing transaction

    @classmethod
    def of(cls, session_id: str, record: dict[str, Any]) -> ChainRecord:
        if not isinstance(session_id, str) or not session_id:
            raise StoreError(f"an audit record needs a session id, got {session_id!r}")
        try:
            body = {k: v for k, v in record.items() if k not in ("prev", "hash")}
            text = canonical_json(body)
            # Stored JSON is read back as JSON: hash the form that survives the round trip (a dict with
            # int keys, say, sorts differently once its keys are strings), so the chain verifies later.
            # Plain JSON values survive it as they are; only other values need the round trip.
            if not _plain_json(body):
                again = canonical_json(json.loads(text))
                if again != text:
                    text = again
            text.encode("utf-8")
        except Exception as exc:
            raise StoreError(f"audit record for session {session_id!r} cannot be stored as JSON: {exc!r}") from exc
        return cls(session_id, record, text)

    @property
    def record_id(self) -> str | None:
        found = self.record.get("id")
        return found if isinstance(found, str) else None

    def seal(self, prev: str) -> str:
        digest = sha256_hex(prev + self.text)
        self.sealed = (prev, digest)
        return digest

    def apply(self) -> None:
        """After the commit: the caller's record carries its place in the chain, as the memory store's does."""
        prev, digest = self.sealed
        self.record.update(prev=prev, hash=digest)  # one step: a reader never sees prev without hash


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain_json(value: Any) -> bool:
    """Whether ``value`` is made only of dicts with ``str`` keys, lists and JSON scalars (exact types):
    then its canonical JSON reads back to the same text. Anything else (an int key, a Decimal, an object
    serialised by ``default``) may not, and is checked by a round trip instead."""
    stack = [value]
    scalars = _SCALARS
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, sub in item.items():
                if type(key) is not str:
                    return False
                if type(sub) not in scalars:
                    stack.append(sub)
        elif kind is list or kind is tuple:
            for sub in item:
                if type(sub) not in scalars:
                    stack.append(sub)
        elif kind not in scalars:
            return False
    return True


def chain_record(text: str, prev: str, digest: str, *, session_id: str, seq: int) -> dict[str, Any]:
    record = decode_doc("audit", f"{session_id}#{seq}", text)
    record["prev"] = prev
    record["hash"] = digest
    return record


def outline_row(text: Any, *, session_id: str, seq: int) -> dict[str, Any]:
    """One ``chain_outline`` row: the JSON array of the ``OUTLINE`` fields, as ``protocol.outline`` cuts a
    record. A row that is not that is a ``StoreError`` naming it."""
    key = f"{session_id}#{seq}"
    values = decode_list("audit", key, text)
    if len(values) != len(OUTLINE):
        raise StoreError(f"corrupted row in table 'audit', key {key!r}: not an audit record")
    return outline(dict(zip(OUTLINE, values, strict=True)))


def head_signature(key: bytes | None, session_id: str, head: str) -> str | None:
    """The head's HMAC (``audit.sign_head``) when ``CORRAL_AUDIT_KEY`` is set, kept beside the head."""
    return sign_head(key, session_id, head) if key is not None else None


# ------------------------------------------------------------------ a batch's operations, ready to write

@struct(frozen=True, slots=True)
class ReserveRow:
    """A ``Reserve`` with its amounts as exact decimals and its id chosen: what the SQL stores write."""

    rid: str
    limits: list[tuple[str, Decimal]]
    keys: list[str]
    amount: Decimal
    expires: int  # µs since the epoch (SQLite); PostgreSQL keeps ``expires_at``
    expires_at: datetime
    gate: Decimal | None = None

    @classmethod
    def of(cls, op: Reserve) -> ReserveRow:
        limits = [(key, to_decimal(limit)) for key, limit in op.scopes]
        gate = None if op.gate is None else to_decimal(op.gate)
        return cls(op.id or new_id(), limits, [key for key, _ in limits], to_decimal(op.amount),
                   to_micros(op.expires_at), to_utc(op.expires_at), gate)

@struct(frozen=True, slots=True)
class TxRow:
    tx_id: str
    state: Any
    doc: str

    @classmethod
    def of(cls, record: dict[str, Any]) -> TxRow:
        return cls(record["id"], record.get("state"), encode_doc(record))

@struct(frozen=True, slots=True)
class StepRow:
    tx_id: str
    doc: str

    @classmethod
    def of(cls, op: LogStep) -> StepRow:
        return cls(op.tx_id, encode_doc(op.entry))

def prepare_op(op: Op) -> Any:
    """An operation as the SQL stores write it: amounts exact, documents encoded, records canonical —
    so a bad value fails the batch before any lock is taken."""
    if isinstance(op, Reserve):
        return ReserveRow.of(op)
    if isinstance(op, Append):
        return ChainRecord.of(op.session_id, op.record)
    if isinstance(op, PutTransaction):
        return TxRow.of(op.record)
    if isinstance(op, LogStep):
        return StepRow.of(op)
    if isinstance(op, Settle):
        return Settle(op.reservation_id, to_decimal(op.actual))
    return op  # UpdateTransaction: merged with the stored document inside the transaction

class DoesNotFit(Exception):
    """Raised inside a transaction to roll it back: a reservation has no room, or a call to close is not open."""


def _open_call(call_id: str, session: str, expires_at: int, doc: str) -> dict[str, Any]:
    expires = datetime.fromtimestamp(int(expires_at) / 1_000_000, UTC)
    text = expires.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**decode_doc("open_calls", call_id, doc), "id": call_id, "session": session, "expires": text}


# ------------------------------------------------------------------------------------ the shared store


def dialect(mark: str, **words: str) -> Callable[[str], str]:
    """A store's ``_sql``: a statement written once (``?`` per parameter, ``{name}`` for ``words``) as
    this dialect writes it. Cached: each text is translated once per process, not per call."""

    @functools.cache
    def sql(text: str) -> str:
        return text.format_map(words).replace("?", mark)

    return sql


class SQLStore:
    """The methods the SQL stores share. A store supplies ``_sql`` (see ``dialect``), ``_run``, which
    runs ``work(conn)`` in one transaction (``transaction=True``) or as autocommit statements with its
    database's errors turned into ``StoreError``, ``_write_chain`` (the group commit's transaction) and
    ``_write_batch`` (a batch's one transaction, once its operations are ready)."""

    url: str
    _sql: ClassVar[Callable[[str], str]]
    #: ``(seq, JSON array of the OUTLINE fields)`` per record of one session (``?``), in chain order,
    #: extracted by the database (the JSON of a whole record is never decoded in Python)
    _outline: ClassVar[str]

    def __init__(self, url: str, where: str, *, batch_size: int, flush_interval: float) -> None:
        self.url = url
        self._where = where
        self._key = audit_key()
        self._chain: GroupCommit[ChainRecord] = GroupCommit(
            self._write_chain, size=batch_size, interval=flush_interval, name=where
        )

    def _run(self, what: str, work: Callable[[Any], T], *, transaction: bool = True, read: bool = False) -> T:
        """``work(conn)`` in one transaction (or, without ``transaction``, as one statement); a ``read``
        changes nothing, so a store may run it again when its connection was lost under it."""
        raise NotImplementedError

    def _write_chain(self, batch: list[ChainRecord]) -> None:
        raise NotImplementedError

    def _write_batch(self, what: str, prepared: list[Any], chain: list[ChainRecord]) -> list[Any]:
        raise NotImplementedError

    def _execute(self, what: str, sql: str, args: Sequence[Any] = ()) -> None:
        statement = self._sql(sql)
        self._run(what, lambda conn: conn.execute(statement, args), transaction=False)

    def _one(self, what: str, sql: str, args: Sequence[Any] = ()) -> Any:
        statement = self._sql(sql)
        return self._run(what, lambda conn: conn.execute(statement, args).fetchone(), transaction=False, read=True)

    def _all(self, what: str, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        statement = self._sql(sql)
        return self._run(what, lambda conn: conn.execute(statement, args).fetchall(), transaction=False, read=True)

    # ------------------------------------------------------------------------------------- sessions

    def put_session(self, record: dict[str, Any]) -> None:
        """The session's document, and — the first time — its chain's head row (empty, signed when the
        audit key is set), so a chain deleted whole later is told from a session that has none yet."""
        sid = record["id"]
        upsert = self._sql(f"INSERT INTO sessions ({SESSION_SUMMARY_COLUMNS}, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                           f"ON CONFLICT (id) DO UPDATE SET {_SESSION_UPDATE}")
        head = self._sql("INSERT INTO heads (session_id, seq, head, hmac) VALUES (?, 0, ?, ?) "
                         "ON CONFLICT (session_id) DO NOTHING")
        args = session_row(record)
        signature = head_signature(self._key, sid, GENESIS)

        def work(conn: Any) -> None:
            conn.execute(upsert, args)
            conn.execute(head, (sid, GENESIS, signature))

        self._run("put_session", work)

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        row = self._one("get_session", "SELECT doc FROM sessions WHERE id = ?", (session_id,))
        return None if row is None else decode_doc("sessions", session_id, row[0])

    def list_sessions(self, agent: str | None = None) -> list[dict[str, Any]]:
        if agent is None:
            rows = self._all("list_sessions", "SELECT id, doc FROM sessions ORDER BY {order}")
        else:
            rows = self._all("list_sessions", "SELECT id, doc FROM sessions WHERE agent = ? ORDER BY {order}",
                             (agent,))
        return [decode_doc("sessions", key, doc) for key, doc in rows]

    # ------------------------------------------------------------------------------------ audit chain

    def append(self, session_id: str, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        item = ChainRecord.of(session_id, record)
        if durable:
            self._chain.write([item])
        else:
            self._chain.buffer(item)
        return record

    def writable(self) -> bool:
        return self._chain.writable()

    def flush(self) -> None:
        self._chain.flush()

    def records(self, session_id: str) -> list[dict[str, Any]]:
        self._chain.flush()
        rows = self._all(
            "records", "SELECT seq, prev, hash, record FROM audit WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [chain_record(text, prev, digest, session_id=session_id, seq=seq) for seq, prev, digest, text in rows]

    def chain_outline(self, session_id: str) -> list[dict[str, Any]]:
        self._chain.flush()
        try:
            rows = self._all("chain_outline", self._outline, (session_id,))
        except StoreError:
            self.records(session_id)  # a record that is not JSON: ``records`` names its row
            raise
        return [outline_row(text, session_id=session_id, seq=seq) for seq, text in rows]

    def _stream(self, what: str, sql: str, args: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """The rows of one query, a batch at a time (a store overrides it to stream from its cursor)."""
        yield from self._all(what, sql, args)

    def scan_records(
        self, *, agent: str | None = None, session: str | None = None
    ) -> Iterator[tuple[str, int, Any]]:
        self._chain.flush()
        where, args = [], []
        if session is not None:
            where.append("session_id = ?")
            args.append(session)
        if agent is not None:
            where.append("session_id IN (SELECT id FROM sessions WHERE agent = ?)")
            args.append(agent)
        sql = "SELECT session_id, seq, record FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        for session_id, seq, text in self._stream("scan_records", sql + " ORDER BY session_id, seq", args):
            yield session_id, int(seq), text

    def find_record(self, record_id: str) -> dict[str, Any] | None:
        self._chain.flush()
        row = self._one(
            "find_record",
            "SELECT session_id, seq, prev, hash, record FROM audit WHERE record_id = ? "
            "ORDER BY session_id, seq LIMIT 1",
            (record_id,),
        )
        if row is None:
            return None
        sid, seq, prev, digest, text = row
        return chain_record(text, prev, digest, session_id=sid, seq=seq)

    def head(self, session_id: str) -> str | None:
        self._chain.flush()
        row = self._one("head", "SELECT seq, head FROM heads WHERE session_id = ?", (session_id,))
        return None if row is None or not row[0] else str(row[1])

    def chain_head(self, session_id: str) -> tuple[int, str, str | None] | None:
        """``(records, head, signature)`` as the heads table keeps them, or None when it keeps no head."""
        self._chain.flush()
        row = self._one("chain_head", "SELECT seq, head, hmac FROM heads WHERE session_id = ?", (session_id,))
        return None if row is None else (int(row[0]), str(row[1]), row[2])

    def chain_ids(self) -> list[str]:
        """Every session id that has a chain (a head row, or records), sorted."""
        self._chain.flush()
        rows = self._all("chain_ids", "SELECT session_id FROM heads UNION SELECT session_id FROM audit")
        return sorted(row[0] for row in rows)

    # -------------------------------------------------------------------------------------- open calls

    def get_open_call(self, call_id: str) -> dict[str, Any] | None:
        row = self._one("get_open_call", "SELECT session, expires_at, doc FROM open_calls WHERE id = ?", (call_id,))
        return None if row is None else _open_call(call_id, *row)

    def open_calls(self, before: datetime | None = None) -> list[dict[str, Any]]:
        if before is None:
            rows = self._all("open_calls", "SELECT id, session, expires_at, doc FROM open_calls ORDER BY id")
        else:
            rows = self._all("open_calls", "SELECT id, session, expires_at, doc FROM open_calls "
                             "WHERE expires_at <= ? ORDER BY id", (to_micros(before),))
        return [_open_call(*row) for row in rows]

    def _open_call_in(self, conn: Any, op: OpenCall) -> None:
        conn.execute(self._sql("INSERT INTO open_calls (id, session, expires_at, doc) VALUES (?, ?, ?, ?)"),
                     (op.call_id, op.session_id, to_micros(op.expires_at), encode_doc(op.doc)))

    def _close_call_in(self, conn: Any, op: CloseCall) -> None:
        """Raises ``DoesNotFit`` (the batch writes nothing, ``batch`` returns None) when the call is not open."""
        found = conn.execute(self._sql("DELETE FROM open_calls WHERE id = ? RETURNING id"), (op.call_id,)).fetchone()
        if found is None:
            raise DoesNotFit

    def head_signature(self, session_id: str) -> str | None:
        """The HMAC stored beside the head (``audit.verify_session`` checks it against the key)."""
        self._chain.flush()
        row = self._one("head_signature", "SELECT seq, hmac FROM heads WHERE session_id = ?", (session_id,))
        return None if row is None or not row[0] else row[1]

    # ------------------------------------------------------------------------------------ the ledger

    def release(self, reservation_id: str) -> None:
        self.settle(reservation_id, Decimal(0))

    def settle(self, reservation_id: str, actual: Decimal) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------- the unit of work

    def batch(self, ops: Sequence[Op]) -> list[Any] | None:
        """Every operation in one transaction: one commit, all or nothing.

        With records to append it goes through the group commit's chain lock, as ``append`` does, and
        writes the buffered read records first, in the same transaction: chain order stays call order.
        Returns None, having written nothing (the buffered records go back), when a reservation does not fit.
        """
        ops = check_ops(ops)
        if not ops:
            return []
        what = describe_ops(ops)
        prepared = [prepare_op(op) for op in ops]  # encoded before any lock is taken
        items = [p for p in prepared if isinstance(p, ChainRecord)]
        write = functools.partial(self._write_batch, what, prepared)
        try:
            return self._chain.write_with(items, write) if items else write([])
        except DoesNotFit:
            return None

    # ------------------------------------------------------------------------------------- approvals

    def put_approval(self, record: dict[str, Any]) -> None:
        self._execute(
            "put_approval",
            "INSERT INTO approvals (id, binding, session, status, doc) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET binding = excluded.binding, session = excluded.session, "
            "status = excluded.status, doc = excluded.doc",
            (record["id"], record.get("binding"), record.get("session"), record.get("status"), encode_doc(record)),
        )

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:
        row = self._one("get_approval", "SELECT doc FROM approvals WHERE id = ?", (approval_id,))
        return None if row is None else decode_doc("approvals", approval_id, row[0])

    def find_approvals(
        self, *, binding: str | None = None, session: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        where, params = [], []
        for column, value in (("binding", binding), ("session", session), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT id, doc FROM approvals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._all("find_approvals", sql + " ORDER BY {order}", params)
        return [decode_doc("approvals", key, doc) for key, doc in rows]

    def resolve_approval(self, approval_id: str, expect: str, fields: dict[str, Any]) -> bool:
        """Compare-and-set on status: applies ``fields`` only if the status is still ``expect``."""
        select = self._sql("SELECT doc FROM approvals WHERE id = ?{lock}")
        update = self._sql("UPDATE approvals SET binding = ?, session = ?, status = ?, doc = ? WHERE id = ?")

        def work(conn: Any) -> bool:
            row = conn.execute(select, (approval_id,)).fetchone()
            if row is None:
                return False
            doc = decode_doc("approvals", approval_id, row[0])
            if doc.get("status") != expect:
                return False
            doc.update(fields)
            conn.execute(update, (doc.get("binding"), doc.get("session"), doc.get("status"), encode_doc(doc),
                                  approval_id))
            return True

        return self._run("resolve_approval", work)

    # ---------------------------------------------------------------------------------- transactions

    def put_transaction(self, record: dict[str, Any]) -> None:
        row = TxRow.of(record)
        self._run("put_transaction", lambda conn: self._put_transaction_in(conn, row), transaction=False)

    def _put_transaction_in(self, conn: Any, row: TxRow) -> None:
        conn.execute(
            self._sql(
                "INSERT INTO transactions (id, state, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc"
            ),
            (row.tx_id, row.state, row.doc),
        )

    def update_transaction(self, tx_id: str, fields: dict[str, Any]) -> None:
        self._run("update_transaction", lambda conn: self._update_transaction_in(conn, tx_id, fields))

    def _update_transaction_in(self, conn: Any, tx_id: str, fields: dict[str, Any]) -> None:
        row = conn.execute(self._sql("SELECT doc FROM transactions WHERE id = ?{lock}"), (tx_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self._where}: update_transaction: no transaction {tx_id!r}")
        doc = decode_doc("transactions", tx_id, row[0])
        doc.update(fields)
        conn.execute(
            self._sql("UPDATE transactions SET state = ?, doc = ? WHERE id = ?"),
            (doc.get("state"), encode_doc(doc), tx_id),
        )

    def get_transaction(self, tx_id: str) -> dict[str, Any] | None:
        row = self._one("get_transaction", "SELECT doc FROM transactions WHERE id = ?", (tx_id,))
        return None if row is None else decode_doc("transactions", tx_id, row[0])

    def transactions(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        if states is None:
            rows = self._all("transactions", "SELECT id, doc FROM transactions ORDER BY {order}")
        else:
            wanted = list(states)
            if not wanted:
                return []
            marks = ", ".join("?" * len(wanted))
            rows = self._all(
                "transactions", f"SELECT id, doc FROM transactions WHERE state IN ({marks}) ORDER BY {{order}}", wanted
            )
        return [decode_doc("transactions", key, doc) for key, doc in rows]

    def _log_step_in(self, conn: Any, row: StepRow) -> None:
        conn.execute(
            self._sql(
                "INSERT INTO tx_steps (tx_id, pos, entry) SELECT ?, COALESCE(MAX(pos), 0) + 1, ? FROM tx_steps "
                "WHERE tx_id = ?"
            ),
            (row.tx_id, row.doc, row.tx_id),
        )

    def steps(self, tx_id: str) -> list[dict[str, Any]]:
        rows = self._all("steps", "SELECT pos, entry FROM tx_steps WHERE tx_id = ? ORDER BY pos", (tx_id,))
        return [decode_doc("tx_steps", f"{tx_id}#{pos}", entry) for pos, entry in rows]

    # ----------------------------------------------------------------------------------- long-term memory

    def memory_put(self, namespace: str, memory_id: str, text: str, tags: str) -> None:
        """One statement (the search index follows it in the same statement: a trigger, or a generated column)."""
        self._execute(
            "memory_put",
            "INSERT INTO memories (id, namespace, text, tags) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
            "SET namespace = excluded.namespace, text = excluded.text, tags = excluded.tags",
            (memory_id, namespace, text, tags),
        )

    def memory_delete(self, memory_id: str) -> None:
        self._execute("memory_delete", "DELETE FROM memories WHERE id = ?", (memory_id,))

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
        sql, args = session_query(agent=agent, principal=principal, status=status, before=before, limit=limit,
                                  stop_reason=stop_reason)
        return [session_summary(row) for row in self._all("query_sessions", sql, args)]

    # ------------------------------------------------------------------------------- principals

    def add_principal(self, record: dict[str, Any]) -> bool:
        statement = self._sql("INSERT INTO principals (key, token_sha256, doc) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
        args = (record["key"], record["token_sha256"], encode_doc(record))
        return self._run("add_principal", lambda conn: conn.execute(statement, args).rowcount, transaction=False) == 1

    def get_principal(self, key: str) -> dict[str, Any] | None:
        row = self._one("get_principal", "SELECT doc FROM principals WHERE key = ?", (key,))
        return None if row is None else decode_doc("principals", key, row[0])

    def principal_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        row = self._one("principal_by_token", "SELECT key, doc FROM principals WHERE token_sha256 = ?",
                        (token_sha256,))
        return None if row is None else decode_doc("principals", row[0], row[1])

    def list_principals(self) -> list[dict[str, Any]]:
        rows = self._all("list_principals", "SELECT key, doc FROM principals ORDER BY {order}")
        return [decode_doc("principals", key, doc) for key, doc in rows]

    def update_principal(self, key: str, fields: dict[str, Any]) -> bool:
        select = self._sql("SELECT doc FROM principals WHERE key = ?{lock}")
        update = self._sql("UPDATE principals SET token_sha256 = ?, doc = ? WHERE key = ?")

        def work(conn: Any) -> bool:
            row = conn.execute(select, (key,)).fetchone()
            if row is None:
                return False
            doc = decode_doc("principals", key, row[0])
            doc.update(fields)
            conn.execute(update, (doc["token_sha256"], encode_doc(doc), key))
            return True

        return self._run("update_principal", work)

    # ----------------------------------------------------------------------------------- leases

    def acquire_lease(self, key: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take ``key`` for ``holder`` until ``until``: free, expired by ``now``, or held by ``holder`` —
        one statement, so of racing holders exactly one wins."""
        statement = self._sql(
            "INSERT INTO leases (key, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at <= ?")
        args = (key, holder, to_micros(until), to_micros(now))
        return self._run("acquire_lease", lambda conn: conn.execute(statement, args).rowcount,
                         transaction=False) == 1

    def renew_lease(self, key: str, holder: str, until: datetime) -> bool:
        statement = self._sql("UPDATE leases SET expires_at = ? WHERE key = ? AND holder = ?")
        args = (to_micros(until), key, holder)
        return self._run("renew_lease", lambda conn: conn.execute(statement, args).rowcount, transaction=False) == 1

    def release_lease(self, key: str, holder: str) -> None:
        self._execute("release_lease", "DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))

    def get_lease(self, key: str) -> dict[str, Any] | None:
        row = self._one("get_lease", "SELECT holder, expires_at FROM leases WHERE key = ?", (key,))
        return None if row is None else {"key": key, "holder": row[0], "expires_at": from_micros(row[1])}

    # ---------------------------------------------------------------------------------- sign-ins

    def add_signin(self, id_sha256: str, principal: str, doc: dict[str, Any], expires_at: datetime) -> None:
        """Keep a console sign-in: the digest of its id (never the id), whose it is, until when."""
        self._execute("add_signin", "INSERT INTO signins (id_sha256, principal, doc, expires_at) VALUES (?, ?, ?, ?)",
                      (id_sha256, principal, encode_doc(doc), to_micros(expires_at)))

    def get_signin(self, id_sha256: str, now: datetime) -> dict[str, Any] | None:
        """The sign-in with this digest, unless it has run out by ``now``."""
        row = self._one("get_signin", "SELECT principal, doc, expires_at FROM signins WHERE id_sha256 = ?"
                        " AND expires_at > ?", (id_sha256, to_micros(now)))
        if row is None:
            return None
        return {**decode_doc("signins", id_sha256, row[1]), "principal": row[0], "expires_at": from_micros(row[2])}

    def remove_signin(self, id_sha256: str) -> None:
        self._execute("remove_signin", "DELETE FROM signins WHERE id_sha256 = ?", (id_sha256,))

    def remove_expired_signins(self, now: datetime) -> int:
        statement = self._sql("DELETE FROM signins WHERE expires_at <= ?")
        return self._run("remove_expired_signins", lambda conn: conn.execute(statement, (to_micros(now),)).rowcount,
                         transaction=False)
