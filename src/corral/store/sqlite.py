"""The SQLite store: one file, safe from many threads and several processes at once.

WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns), a busy timeout for writers,
and ``BEGIN IMMEDIATE`` wherever a decision depends on what was read — a budget reservation, an
approval's compare-and-set, the audit chain's head — so two processes never both act on the same
state. Non-read audit records are durable before ``append`` returns; read records are group-committed
(see ``corral.store.group_commit``).

``batch`` writes several operations in one ``BEGIN IMMEDIATE`` transaction — one commit — through the
same in-transaction SQL as the single operations (``_reserve_in``, ``_write_chain_in``, …). What SQLite
and PostgreSQL write alike is in ``corral.store.sql``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from corral.errors import ConfigError, StoreError
from corral.logs import get_logger
from corral.store.audit import GENESIS
from corral.store.migrations import CURRENT_VERSION, SCHEMA_VERSION_SQLITE, pending, too_new_message
from corral.store.protocol import CloseCall, LogStep, OpenCall, Reserve, Settle, UpdateTransaction, gate_reached
from corral.store.search import query_words
from corral.store.sql import (
    ChainRecord,
    DoesNotFit,
    ReserveRow,
    SQLStore,
    StepRow,
    TxRow,
    decode_decimal,
    decode_list,
    dialect,
    head_signature,
    to_decimal,
    to_micros,
)
from corral.store.urls import parse_sqlite_url

log = get_logger("corral.store")

T = TypeVar("T")


class SQLiteStore(SQLStore):
    """``SQLiteStore("sqlite:///.corral/corral.db")``; the file and its directory are created if missing.

    ``timeout`` (seconds; also ``?timeout=`` in the URL) is how long a writer waits for the database
    lock before the operation fails with ``StoreError`` — and the kernel blocks the call.
    """

    MAX_IDLE_CONNECTIONS = 8
    _sql = staticmethod(dialect("?", order="rowid", lock=""))  # BEGIN IMMEDIATE holds the write lock already
    _outline = ("SELECT seq, json_extract(record, '$.kind', '$.id', '$.ref', '$.tool', '$.ts', '$.decision', "
                "'$.outcome') FROM audit WHERE session_id = ? ORDER BY seq")

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
        super().__init__(url, f"SQLite store {parsed.path}", batch_size=batch_size, flush_interval=flush_interval)
        self.path = parsed.path
        self.timeout = parsed.timeout if timeout is None else float(timeout)
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        self._pid = os.getpid()
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

    def _run(self, what: str, work: Callable[[sqlite3.Connection], T], *, transaction: bool = True,
             read: bool = False) -> T:
        with (self._transaction(what) if transaction else self._read(what)) as conn:
            return work(conn)

    def _stream(self, what: str, sql: str, args: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        with self._read(what) as conn:
            cursor = conn.execute(self._sql(sql), args)
            while rows := cursor.fetchmany(2000):
                yield from rows

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

    # ------------------------------------------------------------------------------------ audit chain

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

    def _write_batch(self, what: str, prepared: list[Any], chain: list[ChainRecord]) -> list[Any]:
        """The batch in one ``BEGIN IMMEDIATE`` transaction; reservations first, so a batch that does
        not fit stops (``DoesNotFit``) before writing anything else."""
        with self._transaction(what) as conn:
            for p in prepared:
                if isinstance(p, ReserveRow) and not self._reserve_in(conn, p):
                    raise DoesNotFit
            if chain:
                self._write_chain_in(conn, chain)
            return [self._apply_in(conn, p) for p in prepared]

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
        elif isinstance(p, OpenCall):
            self._open_call_in(conn, p)
        elif isinstance(p, CloseCall):
            self._close_call_in(conn, p)
        else:  # pragma: no cover - check_ops and prepare_op know every operation
            raise AssertionError(f"unhandled operation {p!r}")
        return None

    # ---------------------------------------------------------------------------------- transactions

    def log_step(self, tx_id: str, entry: dict[str, Any]) -> None:
        row = StepRow.of(LogStep(tx_id, entry))
        with self._read("log_step") as conn:  # one statement: it takes the write lock before it reads
            self._log_step_in(conn, row)

    # ----------------------------------------------------------------------------------- long-term memory

    # ``memories`` is the content of the FTS5 table ``memory_fts``; triggers keep the index in step.
    # A memory's rank: how many of the query's words it has (more first), then ``bm25()`` (best first),
    # then the newest. Stemming is the porter tokenizer's: "refund" finds "refunds" and "refunded".

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


def fts5_phrase(word: str) -> str:
    """One word as an FTS5 string (double-quoted, inner quotes doubled): never an operator or a prefix."""
    return '"' + word.replace('"', '""') + '"'


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


__all__ = ["SQLiteStore", "fts5_phrase", "require_fts5"]
