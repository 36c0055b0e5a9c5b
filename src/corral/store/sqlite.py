"""The SQLite store: one file, safe from many threads and several processes at once.

WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns), a busy timeout for writers,
and ``BEGIN IMMEDIATE`` wherever a decision depends on what was read — a budget reservation, an
approval's compare-and-set, the audit chain's head — so two processes never both act on the same
state. Non-read audit records are durable before ``append`` returns; read records are group-committed
(see ``GroupCommit``).

``batch`` writes several operations in one ``BEGIN IMMEDIATE`` transaction — one commit — through the
same in-transaction SQL as the single operations (``_reserve_in``, ``_write_chain_in``, …).

This module also holds what both SQL stores share: the JSON row codec, the group commit, the head
signature and a batch's operations made ready to write (``prepare_op``; ``corral.store.postgres``
imports them).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from corral.canonical import canonical_json, sha256_hex
from corral.errors import ConfigError, StoreError
from corral.ids import new_id
from corral.store.audit import GENESIS, audit_key, sign_head
from corral.store.migrations import CURRENT_VERSION, SCHEMA_VERSION_SQLITE, pending, too_new_message
from corral.store.protocol import (
    Append,
    LogStep,
    Op,
    PutTransaction,
    Reserve,
    Settle,
    UpdateTransaction,
    check_ops,
    describe_ops,
    gate_reached,
)
from corral.store.urls import parse_sqlite_url

log = logging.getLogger("corral.store")

T = TypeVar("T")

# ------------------------------------------------------------------------------------ the row codec


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
    return Decimal(str(value))


def to_utc(when: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime) -> int:
    return (to_utc(when) - _EPOCH) // timedelta(microseconds=1)


# --------------------------------------------------------------------------------- the audit chain


@dataclass
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


def head_signature(key: bytes | None, session_id: str, head: str) -> str | None:
    """The head's HMAC (``audit.sign_head``) when ``CORRAL_AUDIT_KEY`` is set, kept beside the head."""
    return sign_head(key, session_id, head) if key is not None else None


# --------------------------------------------------------------------------------- long-term memory

# A query word: letters and digits only. Everything else — quotes, ``*``, ``-``, ``^``, ``:``, brackets,
# ``_`` — separates words, so nothing the user types reaches the full-text engine as syntax.
_WORD = re.compile(r"[^\W_]+")

MAX_QUERY_WORDS = 32  # a longer query keeps its first 32 distinct words


def query_words(query: str) -> list[str]:
    """The distinct words of a user's query, lower case, two letters or more, in order of appearance.

    Both SQL stores search for these words only (each quoted, or passed as a parameter), never for the
    user's text itself: ``NEAR``, ``AND``, ``OR``, ``NOT`` and ``"`` are plain words or separators.
    """
    words: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        if len(word) > 1:
            words.setdefault(word)
            if len(words) == MAX_QUERY_WORDS:
                break
    return list(words)


def fts5_phrase(word: str) -> str:
    """One word as an FTS5 string (double-quoted, inner quotes doubled): never an operator or a prefix."""
    return '"' + word.replace('"', '""') + '"'


_OPEN_BUFFERS: weakref.WeakSet[GroupCommit] = weakref.WeakSet()


class GroupCommit:
    """Group commit for the audit chain: read records wait in memory and are written in batches.

    A batch is one transaction: written when it reaches ``size`` records, ``interval`` seconds after its
    first record (a background thread), before any durable record of this process (so chain order is
    call order within a process), and on ``flush()`` and at exit. A crash loses at most the buffered
    read records — never a durable one. ``write(batch)`` is the store's one transaction.

    Lock order, for every chain write of the process: the chain lock, then the database's write lock
    (inside ``write``). A store's ``batch`` that appends takes them in the same order (``write_with``),
    so it and the flusher never wait on each other in a cycle.
    """

    IDLE_SECONDS = 2.0  # the flusher thread ends after this long with nothing to do; the next record restarts it

    def __init__(
        self, write: Callable[[list[ChainRecord]], None], *, size: int, interval: float, name: str
    ) -> None:
        if size < 1 or interval < 0:
            raise ConfigError(f"group commit needs size ≥ 1 and interval ≥ 0, got {size}, {interval}")
        self._write = write
        self.size = size
        self.interval = interval
        self.name = name
        self._reset()
        _OPEN_BUFFERS.add(self)

    def _reset(self) -> None:
        # every chain write of this process goes through _chain_lock: an in-flight batch is never overtaken
        self._chain_lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[ChainRecord] = []
        self._first = 0.0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failures = 0

    def after_fork(self) -> None:
        """In a forked child: the parent writes its own buffer; the child starts empty, with fresh locks."""
        self._reset()

    def buffer(self, item: ChainRecord) -> None:
        with self._cond:
            self._pending.append(item)
            count = len(self._pending)
            if count == 1:
                self._first = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"corral-group-commit[{self.name}]",
                                                daemon=True)
                self._thread.start()
            if count == 1 or count >= self.size:
                self._cond.notify_all()
        if count >= self.size * 8:  # the flusher is failing or behind: the caller writes, and hears why not
            self.flush()

    def write(self, items: Sequence[ChainRecord]) -> None:
        """Write everything buffered, then ``items``, in one transaction; on failure nothing is lost."""
        self.write_with(items, self._write)

    def write_with(self, items: Sequence[ChainRecord], write: Callable[[list[ChainRecord]], T]) -> T | None:
        """``write`` with another writer: ``write(batch)`` gets everything buffered, then ``items``, and
        writes them in one transaction of its own — with whatever else belongs in it (a store's ``batch``).

        The records are sealed only if it returns; if it raises, nothing of it was written and the
        buffered records go back in front of the buffer. Returns what ``write`` returned (None when
        there was nothing to write).
        """
        with self._chain_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            batch.extend(items)
            if not batch:
                return None
            try:
                result = write(batch)
            except BaseException:
                self._failures += 1
                given = {id(item) for item in items}
                with self._cond:  # the buffered records go back, in front of any that came meanwhile
                    self._pending[:0] = [b for b in batch if id(b) not in given]
                    if self._pending:
                        self._first = time.monotonic()
                raise
            for item in batch:
                item.apply()
            self._failures = 0
            return result

    def flush(self) -> None:
        self.write(())

    def writable(self) -> bool:
        """False while a write has failed and the store has not answered since: it tries once more now,
        writing what is buffered. Governance blocks every call, reads too, while this is False (§9)."""
        if not self._failures:
            return True
        try:
            self.flush()
        except Exception:
            return False
        return True

    @property
    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Stop the flusher and write what is buffered. The store stays usable; a later record restarts it."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self.interval * 4))
        with self._cond:
            self._stopping = False
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                idle_until = time.monotonic() + self.IDLE_SECONDS
                while not self._pending and not self._stopping:
                    remaining = idle_until - time.monotonic()
                    if remaining <= 0:
                        self._thread = None
                        return
                    self._cond.wait(remaining)
                while self._pending and len(self._pending) < self.size and not self._stopping:
                    remaining = self._first + self.interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopping:
                    self._thread = None
                    return
            try:
                self.flush()
            except Exception as exc:
                log.warning("corral: could not write %d buffered audit record(s) to %s (attempt %d): %s",
                            self.pending_count, self.name, self._failures, exc)
                with self._cond:  # back off, but wake at once for close()
                    self._cond.wait(min(5.0, self.interval * 2 ** min(self._failures, 6) + 0.05))


@atexit.register
def _flush_at_exit() -> None:
    for buffer in list(_OPEN_BUFFERS):
        try:
            buffer.flush()
        except Exception as exc:  # nothing left to raise to
            log.error("corral: at exit, %d buffered audit record(s) for %s were lost: %s",
                      buffer.pending_count, buffer.name, exc)


def _after_fork_in_child() -> None:
    for buffer in list(_OPEN_BUFFERS):
        buffer.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------------------- the store


class SQLiteStore:
    """``SQLiteStore("sqlite:///.corral/corral.db")``; the file and its directory are created if missing.

    ``timeout`` (seconds; also ``?timeout=`` in the URL) is how long a writer waits for the database
    lock before the operation fails with ``StoreError`` — and the kernel blocks the call.
    """

    MAX_IDLE_CONNECTIONS = 8

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = None,
        batch_size: int = 256,
        flush_interval: float = 0.05,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigError(f"a SQLite store URL is a string like sqlite:///path.db, got {url!r}")
        parsed = parse_sqlite_url(url)
        self.url = url
        self.path = parsed.path
        self.timeout = parsed.timeout if timeout is None else float(timeout)
        self._where = f"SQLite store {self.path}"
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        self._pid = os.getpid()
        self._key = audit_key()
        self._chain = GroupCommit(self._write_chain, size=batch_size, interval=flush_interval, name=self._where)
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self._where}: cannot create the directory {directory}: {exc}") from exc
        self._migrate()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # ---------------------------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread's operation: pooled, never shared by two threads at once."""
        if self._pid != os.getpid():  # a forked child must not use its parent's connections
            with self._idle_lock:
                self._idle, self._pid = [], os.getpid()
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                _rollback_quietly(conn)
            with self._idle_lock:
                if len(self._idle) < self.MAX_IDLE_CONNECTIONS and self._pid == os.getpid():
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def _fault(self, what: str, exc: BaseException) -> StoreError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in detail or "busy" in detail):
            detail += f" (another connection held the write lock for more than {self.timeout:g} s)"
        return StoreError(f"{self._where}: {what} failed: {detail}")

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        """One statement (a read, or a write that stands alone) in autocommit mode."""
        try:
            with self._connection() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise self._fault(what, exc) from exc

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: the write lock first, so what is read stays true until the commit."""
        with self._read(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback_quietly(conn)
                raise

    # ----------------------------------------------------------------------------------- migrations

    def _migrate(self) -> None:
        with self._read("opening the database") as conn:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("corral: %s could not switch to WAL (journal mode %s)", self._where, mode)
            current = _sqlite_version(conn)
            if current < CURRENT_VERSION:
                require_fts5(conn, self._where)
        if current > CURRENT_VERSION:
            raise StoreError(too_new_message(self._where, current))
        for migration in pending(current):
            what = f"migration {migration.version} ({migration.description})"
            with self._transaction(what) as conn:
                conn.execute(SCHEMA_VERSION_SQLITE)
                found = _sqlite_version(conn)  # another process may have migrated meanwhile
                if found > CURRENT_VERSION:
                    raise StoreError(too_new_message(self._where, found))
                if found >= migration.version:
                    continue
                for statement in migration.sqlite:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.description, datetime.now(UTC).isoformat()),
                )

    def schema_version(self) -> int:
        with self._read("reading the schema version") as conn:
            return _sqlite_version(conn)

    # ------------------------------------------------------------------------------------- sessions

    def put_session(self, record: dict[str, Any]) -> None:
        doc = encode_doc(record)
        with self._read("put_session") as conn:
            conn.execute(
                "INSERT INTO sessions (id, agent, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, doc = excluded.doc",
                (record["id"], record.get("agent"), doc),
            )

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        with self._read("get_session") as conn:
            row = conn.execute("SELECT doc FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else decode_doc("sessions", session_id, row[0])

    def list_sessions(self, agent: str | None = None) -> list[dict[str, Any]]:
        with self._read("list_sessions") as conn:
            if agent is None:
                rows = conn.execute("SELECT id, doc FROM sessions ORDER BY rowid").fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, doc FROM sessions WHERE agent = ? ORDER BY rowid", (agent,)
                ).fetchall()
        return [decode_doc("sessions", key, doc) for key, doc in rows]

    # ------------------------------------------------------------------------------------ audit chain

    def append(self, session_id: str, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        item = ChainRecord.of(session_id, record)
        if durable:
            self._chain.write([item])
        else:
            self._chain.buffer(item)
        return record

    def _write_chain(self, batch: list[ChainRecord]) -> None:
        with self._transaction(f"appending {len(batch)} record(s) to the audit chain") as conn:
            self._write_chain_in(conn, batch)

    def _write_chain_in(self, conn: sqlite3.Connection, batch: list[ChainRecord]) -> None:
        """Seal ``batch`` onto its sessions' heads and move the heads on, inside the caller's transaction
        (``BEGIN IMMEDIATE``: no other writer can move a head between the read and the write)."""
        heads: dict[str, tuple[int, str]] = {}
        rows = []
        for item in batch:
            sid = item.session_id
            if sid not in heads:
                row = conn.execute("SELECT seq, head FROM heads WHERE session_id = ?", (sid,)).fetchone()
                heads[sid] = (int(row[0]), str(row[1])) if row is not None else (0, GENESIS)
            seq, prev = heads[sid]
            digest = item.seal(prev)
            rows.append((sid, seq + 1, item.record_id, prev, digest, item.text))
            heads[sid] = (seq + 1, digest)
        conn.executemany(
            "INSERT INTO audit (session_id, seq, record_id, prev, hash, record) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        conn.executemany(
            "INSERT INTO heads (session_id, seq, head, hmac) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, head = excluded.head, "
            "hmac = excluded.hmac",
            [(sid, seq, head, head_signature(self._key, sid, head)) for sid, (seq, head) in heads.items()],
        )

    def writable(self) -> bool:
        return self._chain.writable()

    def flush(self) -> None:
        self._chain.flush()

    def records(self, session_id: str) -> list[dict[str, Any]]:
        self._chain.flush()
        with self._read("records") as conn:
            rows = conn.execute(
                "SELECT seq, prev, hash, record FROM audit WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
        return [chain_record(text, prev, digest, session_id=session_id, seq=seq) for seq, prev, digest, text in rows]

    def find_record(self, record_id: str) -> dict[str, Any] | None:
        self._chain.flush()
        with self._read("find_record") as conn:
            row = conn.execute(
                "SELECT session_id, seq, prev, hash, record FROM audit WHERE record_id = ? "
                "ORDER BY session_id, seq LIMIT 1",
                (record_id,),
            ).fetchone()
        if row is None:
            return None
        sid, seq, prev, digest, text = row
        return chain_record(text, prev, digest, session_id=sid, seq=seq)

    def head(self, session_id: str) -> str | None:
        self._chain.flush()
        with self._read("head") as conn:
            row = conn.execute("SELECT seq, head FROM heads WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None or not row[0] else str(row[1])

    def head_signature(self, session_id: str) -> str | None:
        """The HMAC stored beside the head (``audit.verify_session`` checks it against the key)."""
        self._chain.flush()
        with self._read("head_signature") as conn:
            row = conn.execute("SELECT seq, hmac FROM heads WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None or not row[0] else row[1]

    # ------------------------------------------------------------------------------------ the ledger

    @staticmethod
    def _usage_in(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, tuple[Decimal, Decimal]]:
        unique = list(dict.fromkeys(keys))
        found: dict[str, tuple[Decimal, Decimal]] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, spent, reserved in conn.execute(
                f"SELECT key, spent, reserved FROM budget_scopes WHERE key IN ({marks})", chunk
            ):
                found[key] = (decode_decimal("budget_scopes", key, spent),
                              decode_decimal("budget_scopes", key, reserved))
        zero = (Decimal(0), Decimal(0))
        return {key: found.get(key, zero) for key in unique}

    @staticmethod
    def _save_usage(conn: sqlite3.Connection, usage: dict[str, tuple[Decimal, Decimal]]) -> None:
        conn.executemany(
            "INSERT INTO budget_scopes (key, spent, reserved) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET spent = excluded.spent, reserved = excluded.reserved",
            [(key, str(spent), str(reserved)) for key, (spent, reserved) in usage.items()],
        )

    def reserve(
        self, scopes: Sequence[tuple[str, Decimal]], amount: Decimal, expires_at: datetime
    ) -> str | None:
        op = ReserveRow.of(Reserve(scopes, amount, expires_at))
        with self._transaction("reserve") as conn:
            return op.rid if self._reserve_in(conn, op) else None

    def _reserve_in(self, conn: sqlite3.Connection, op: ReserveRow) -> bool:
        """Charge ``op.amount`` to every scope if it fits in all of them; False (nothing charged) if not."""
        usage = self._usage_in(conn, op.keys)
        for key, limit in op.limits:
            spent, reserved = usage[key]
            if spent + reserved + op.amount > limit or gate_reached(spent, reserved, limit, op.gate):
                return False
        for key in op.keys:
            spent, reserved = usage[key]
            usage[key] = (spent, reserved + op.amount)
        self._save_usage(conn, usage)
        conn.execute(
            "INSERT INTO reservations (id, scopes, amount, expires_at) VALUES (?, ?, ?, ?)",
            (op.rid, json.dumps(op.keys), str(op.amount), op.expires),
        )
        return True

    def _settle_in(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], actual: Decimal | None) -> None:
        """Take reservations off their scopes; ``actual`` None means release (settle at 0)."""
        held: list[tuple[list[str], Decimal]] = []
        for rid, scopes, amount in rows:
            held.append((decode_list("reservations", rid, scopes), decode_decimal("reservations", rid, amount)))
        usage = self._usage_in(conn, [key for keys, _ in held for key in keys])
        for keys, amount in held:
            for key in keys:
                spent, reserved = usage[key]
                usage[key] = (spent + (actual or Decimal(0)), reserved - amount)
        self._save_usage(conn, usage)

    def settle(self, reservation_id: str, actual: Decimal) -> None:
        actual = to_decimal(actual)
        with self._transaction("settle") as conn:
            self._settle_one_in(conn, reservation_id, actual)

    def _settle_one_in(self, conn: sqlite3.Connection, reservation_id: str, actual: Decimal) -> None:
        rows = conn.execute("SELECT id, scopes, amount FROM reservations WHERE id = ?", (reservation_id,)).fetchall()
        if not rows:
            return
        conn.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        self._settle_in(conn, rows, actual)

    def release(self, reservation_id: str) -> None:
        self.settle(reservation_id, Decimal(0))

    def usage(self, scope_keys: Sequence[str]) -> list[tuple[Decimal, Decimal]]:
        with self._read("usage") as conn:
            found = self._usage_in(conn, scope_keys)
        return [found[key] for key in scope_keys]

    def release_expired(self, now: datetime) -> int:
        cutoff = to_micros(now)
        with self._transaction("release_expired") as conn:
            rows = conn.execute(
                "SELECT id, scopes, amount FROM reservations WHERE expires_at <= ? ORDER BY id", (cutoff,)
            ).fetchall()
            if not rows:
                return 0
            conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (cutoff,))
            self._settle_in(conn, rows, None)
        return len(rows)

    # ------------------------------------------------------------------------------- the unit of work

    def batch(self, ops: Sequence[Op]) -> list[Any] | None:
        """Every operation in one ``BEGIN IMMEDIATE`` transaction: one commit, all or nothing.

        With records to append it goes through the group commit's chain lock, as ``append`` does, and
        writes the buffered read records first, in the same transaction: chain order stays call order.
        Returns None, having written nothing (the buffered records go back), when a reservation does not fit.
        """
        ops = check_ops(ops)
        if not ops:
            return []
        what = describe_ops(ops)
        prepared = [prepare_op(op) for op in ops]  # encode before the write lock is taken
        items = [p for p in prepared if isinstance(p, ChainRecord)]

        def write(chain: list[ChainRecord]) -> list[Any]:
            with self._transaction(what) as conn:
                for p in prepared:  # reservations first: a batch that does not fit stops before writing more
                    if isinstance(p, ReserveRow) and not self._reserve_in(conn, p):
                        raise DoesNotFit
                if chain:
                    self._write_chain_in(conn, chain)
                results: list[Any] = []
                for p in prepared:
                    results.append(self._apply_in(conn, p))
                return results

        try:
            return self._chain.write_with(items, write) if items else write([])
        except DoesNotFit:
            return None

    def _apply_in(self, conn: sqlite3.Connection, p: Any) -> Any:
        """One prepared operation inside the batch's transaction (reservations and records are written
        already); its result."""
        if isinstance(p, ReserveRow):
            return p.rid
        if isinstance(p, ChainRecord):
            return p.record
        if isinstance(p, Settle):
            self._settle_one_in(conn, p.reservation_id, p.actual)
        elif isinstance(p, TxRow):
            self._put_transaction_in(conn, p)
        elif isinstance(p, UpdateTransaction):
            self._update_transaction_in(conn, p.tx_id, p.fields)
        elif isinstance(p, StepRow):
            self._log_step_in(conn, p)
        else:  # pragma: no cover - check_ops and prepare_op know every operation
            raise AssertionError(f"unhandled operation {p!r}")
        return None

    # ------------------------------------------------------------------------------------- approvals

    def put_approval(self, record: dict[str, Any]) -> None:
        doc = encode_doc(record)
        with self._read("put_approval") as conn:
            conn.execute(
                "INSERT INTO approvals (id, binding, session, status, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET binding = excluded.binding, session = excluded.session, "
                "status = excluded.status, doc = excluded.doc",
                (record["id"], record.get("binding"), record.get("session"), record.get("status"), doc),
            )

    def get_approval(self, approval_id: str) -> dict[str, Any] | None:
        with self._read("get_approval") as conn:
            row = conn.execute("SELECT doc FROM approvals WHERE id = ?", (approval_id,)).fetchone()
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
        with self._read("find_approvals") as conn:
            rows = conn.execute(sql + " ORDER BY rowid", params).fetchall()
        return [decode_doc("approvals", key, doc) for key, doc in rows]

    def resolve_approval(self, approval_id: str, expect: str, fields: dict[str, Any]) -> bool:
        """Compare-and-set on status: applies ``fields`` only if the status is still ``expect``."""
        with self._transaction("resolve_approval") as conn:
            row = conn.execute("SELECT doc FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            if row is None:
                return False
            doc = decode_doc("approvals", approval_id, row[0])
            if doc.get("status") != expect:
                return False
            doc.update(fields)
            conn.execute(
                "UPDATE approvals SET binding = ?, session = ?, status = ?, doc = ? WHERE id = ?",
                (doc.get("binding"), doc.get("session"), doc.get("status"), encode_doc(doc), approval_id),
            )
        return True

    # ---------------------------------------------------------------------------------- transactions

    def put_transaction(self, record: dict[str, Any]) -> None:
        row = TxRow.of(record)
        with self._read("put_transaction") as conn:
            self._put_transaction_in(conn, row)

    @staticmethod
    def _put_transaction_in(conn: sqlite3.Connection, row: TxRow) -> None:
        conn.execute(
            "INSERT INTO transactions (id, state, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc",
            (row.tx_id, row.state, row.doc),
        )

    def update_transaction(self, tx_id: str, fields: dict[str, Any]) -> None:
        with self._transaction("update_transaction") as conn:
            self._update_transaction_in(conn, tx_id, fields)

    def _update_transaction_in(self, conn: sqlite3.Connection, tx_id: str, fields: dict[str, Any]) -> None:
        row = conn.execute("SELECT doc FROM transactions WHERE id = ?", (tx_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self._where}: update_transaction: no transaction {tx_id!r}")
        doc = decode_doc("transactions", tx_id, row[0])
        doc.update(fields)
        conn.execute(
            "UPDATE transactions SET state = ?, doc = ? WHERE id = ?", (doc.get("state"), encode_doc(doc), tx_id)
        )

    def get_transaction(self, tx_id: str) -> dict[str, Any] | None:
        with self._read("get_transaction") as conn:
            row = conn.execute("SELECT doc FROM transactions WHERE id = ?", (tx_id,)).fetchone()
        return None if row is None else decode_doc("transactions", tx_id, row[0])

    def transactions(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        with self._read("transactions") as conn:
            if states is None:
                rows = conn.execute("SELECT id, doc FROM transactions ORDER BY rowid").fetchall()
            else:
                wanted = list(states)
                marks = ",".join("?" * len(wanted))
                rows = conn.execute(
                    f"SELECT id, doc FROM transactions WHERE state IN ({marks}) ORDER BY rowid", wanted
                ).fetchall()
        return [decode_doc("transactions", key, doc) for key, doc in rows]

    def log_step(self, tx_id: str, entry: dict[str, Any]) -> None:
        row = StepRow.of(LogStep(tx_id, entry))
        with self._read("log_step") as conn:  # one statement: it takes the write lock before it reads
            self._log_step_in(conn, row)

    @staticmethod
    def _log_step_in(conn: sqlite3.Connection, row: StepRow) -> None:
        conn.execute(
            "INSERT INTO tx_steps (tx_id, pos, entry) "
            "SELECT ?, COALESCE(MAX(pos), 0) + 1, ? FROM tx_steps WHERE tx_id = ?",
            (row.tx_id, row.doc, row.tx_id),
        )

    def steps(self, tx_id: str) -> list[dict[str, Any]]:
        with self._read("steps") as conn:
            rows = conn.execute("SELECT pos, entry FROM tx_steps WHERE tx_id = ? ORDER BY pos", (tx_id,)).fetchall()
        return [decode_doc("tx_steps", f"{tx_id}#{pos}", entry) for pos, entry in rows]

    # ----------------------------------------------------------------------------------- long-term memory

    # ``memories`` is the content of the FTS5 table ``memory_fts``; triggers keep the index in step.
    # A memory's rank: how many of the query's words it has (more first), then ``bm25()`` (best first),
    # then the newest. Stemming is the porter tokenizer's: "refund" finds "refunds" and "refunded".

    def memory_put(self, namespace: str, memory_id: str, text: str, tags: str) -> None:
        with self._transaction("memory_put") as conn:
            conn.execute(
                "INSERT INTO memories (id, namespace, text, tags) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                "SET namespace = excluded.namespace, text = excluded.text, tags = excluded.tags",
                (memory_id, namespace, text, tags),
            )

    def memory_search(self, namespace: str, query: str, limit: int) -> list[dict[str, Any]]:
        """The memories of ``namespace`` with most of ``query``'s words, best ``bm25()`` first among equals."""
        words = query_words(query)
        if not words or limit <= 0:
            return []
        phrases = [fts5_phrase(word) for word in words]
        hits = " UNION ALL ".join(["SELECT rowid AS seq FROM memory_fts WHERE memory_fts MATCH ?"] * len(words))
        with self._read("memory_search") as conn:
            rows = conn.execute(
                "WITH ranked AS (SELECT rowid AS seq, bm25(memory_fts) AS score FROM memory_fts "
                "WHERE memory_fts MATCH ?), "
                f"coverage AS (SELECT seq, COUNT(*) AS words FROM ({hits}) GROUP BY seq) "
                "SELECT m.id, m.text, m.tags FROM ranked JOIN coverage USING (seq) "
                "JOIN memories AS m ON m.seq = ranked.seq WHERE m.namespace = ? "
                "ORDER BY coverage.words DESC, ranked.score, m.seq DESC LIMIT ?",
                (" OR ".join(phrases), *phrases, namespace, limit),
            ).fetchall()
        return [{"id": mid, "text": text, "tags": tags} for mid, text, tags in rows]

    def memory_delete(self, memory_id: str) -> None:
        with self._transaction("memory_delete") as conn:
            conn.execute("DELETE FROM memories WHERE id = ?", (memory_id,))

    # ----------------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Write buffered records and close idle connections. A later call opens new ones."""
        try:
            self._chain.close()
        finally:
            with self._idle_lock:
                idle, self._idle = self._idle, []
            for conn in idle:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


# ------------------------------------------------------------------ a batch's operations, ready to write


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class TxRow:
    tx_id: str
    state: Any
    doc: str

    @classmethod
    def of(cls, record: dict[str, Any]) -> TxRow:
        return cls(record["id"], record.get("state"), encode_doc(record))


@dataclass(frozen=True, slots=True)
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
    """Raised inside a transaction to roll it back: a reservation has no room."""


# Creating a throwaway FTS5 table is the one sure test that this SQLite has FTS5 (compile options can lie
# both ways: FTS5 may be loaded as an extension).
FTS5_PROBE = "CREATE VIRTUAL TABLE temp.corral_fts5_probe USING fts5(x, tokenize='porter unicode61')"


def require_fts5(conn: sqlite3.Connection, where: str) -> None:
    """A ``StoreError`` saying so when this Python's SQLite has no FTS5 (long-term memory needs it)."""
    try:
        conn.execute(FTS5_PROBE)
    except sqlite3.Error as exc:
        raise StoreError(
            f"{where}: this Python's SQLite ({sqlite3.sqlite_version}) has no FTS5 full-text search "
            f"({exc}), which long-term memory needs: use a Python whose sqlite3 module is built with "
            "FTS5 (most are), or a PostgreSQL store"
        ) from exc
    conn.execute("DROP TABLE temp.corral_fts5_probe")


def _sqlite_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


__all__ = ["GroupCommit", "SQLiteStore", "fts5_phrase", "prepare_op", "query_words", "require_fts5"]
