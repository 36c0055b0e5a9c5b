"""The PostgreSQL store: several processes on several machines share one fleet's governance state.

psycopg 3 with a ``psycopg_pool.ConnectionPool``. A connection the server dropped is replaced, not
used: checked before each use without a round trip, and a transaction that loses its connection before
the server started it runs again on a fresh one (``_run``). Wherever a decision depends on what was read,
the rows are locked first: a session's head row for the audit chain, every budget scope's row —
in sorted key order, so two reservations never deadlock — for a reservation, an approval's row for
its compare-and-set. Amounts are ``NUMERIC``; JSON documents are ``TEXT``, read back exactly as written.

The hot writes (``batch``, ``reserve``, ``settle``, ``log_step``, the audit chain) run as pipelines,
BEGIN to COMMIT in one round trip when nothing has to be read first: a write seals onto the chain head
this process last wrote (the statement that moves the head checks it is still there), and one
reservation's room is checked by the statement that takes it (``corral_require``, schema version 6).
Otherwise the locks go out in one round trip, every write and the COMMIT in a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from corral.errors import ConfigError, StoreError
from corral.logs import get_logger
from corral.store.migrations import (
    CURRENT_VERSION,
    POSTGRES_MIGRATION_LOCK,
    SCHEMA_VERSION_POSTGRES,
    pending,
    too_new_message,
)
from corral.store.protocol import CloseCall, LogStep, OpenCall, Reserve, Settle, UpdateTransaction, gate_reached
from corral.store.search import query_words
from corral.store.sql import (
    ChainRecord,
    DoesNotFit,
    ReserveRow,
    SQLStore,
    StepRow,
    TxRow,
    dialect,
    head_signature,
    to_decimal,
    to_utc,
)
from corral.store.urls import parse_postgres_url, redact_url

try:
    import psycopg
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - psycopg is a dependency
    psycopg = None  # type: ignore[assignment]

log = get_logger("corral.store")


def _not_an_echo(record: logging.LogRecord) -> bool:
    """psycopg warns "error ignored terminating <Pipeline>: pipeline aborted" when a pipeline ends on an
    error already raised to its caller (a reservation without room, say): an echo of it, not news."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not (record.msg == "error ignored terminating %r: %s" and len(args) == 2
                and psycopg is not None and isinstance(args[1], psycopg.errors.PipelineAborted))


if psycopg is not None:
    logging.getLogger("psycopg").addFilter(_not_an_echo)

T = TypeVar("T")

# A transaction that failed only because it lost a race is rolled back whole; running it again is safe.
_RETRYABLE = ("40001", "40P01")  # serialization_failure, deadlock_detected
# Raised by ``corral_require`` (schema version 6) inside a write, which then rolls back whole:
_DOES_NOT_FIT = "CR001"  # a reservation without room, a call already closed: the batch writes nothing
_HEAD_MOVED = "CR002"  # another writer appended to a session since this process last did: read the heads
_KNOWN_HEADS = 4096  # sessions whose chain head this process remembers (the last ones it wrote)


class PostgresStore(SQLStore):
    """``PostgresStore("postgresql://user@host:5432/db")``; the URL is read as libpq reads it.

    ``pool_size`` bounds the connections of this process; ``timeout`` is how long an operation waits for
    a connection (seconds) before it fails with ``StoreError`` — and the kernel blocks the call.
    """

    _sql = staticmethod(dialect("%s", order="ord", lock=" FOR UPDATE"))
    _outline = ("SELECT seq, jsonb_build_array(r -> 'kind', r -> 'id', r -> 'ref', r -> 'tool', r -> 'ts', "
                "r -> 'decision', r -> 'outcome')::text FROM (SELECT seq, record::jsonb AS r FROM audit "
                "WHERE session_id = ?) AS chain ORDER BY seq")

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        timeout: float = 5.0,
        connect_timeout: int = 5,
        batch_size: int = 256,
        flush_interval: float = 0.05,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigError(f"a PostgreSQL store URL is a string like postgresql://user@host/db, got {url!r}")
        if psycopg is None:  # pragma: no cover
            raise ConfigError(
                f"store URL {redact_url(url)!r}: PostgreSQL needs psycopg; pip install 'corral[postgres]'"
            )
        params = parse_postgres_url(url)
        if pool_size < 1:
            raise ConfigError(f"pool_size must be ≥ 1, got {pool_size!r}")
        super().__init__(url, f"PostgreSQL store {redact_url(url)}", batch_size=batch_size,
                         flush_interval=flush_interval)
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._kwargs["connect_timeout"] = connect_timeout
        if "application_name" not in params:
            self._kwargs["application_name"] = "corral"
        self._pool_size = pool_size
        self._timeout = float(timeout)
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._pid = os.getpid()
        # each session's (seq, head) as this process last wrote it: a write seals onto it without reading
        # the head first, and the statement that moves the head checks it is still there (else _HEAD_MOVED)
        self._heads: dict[str, tuple[int, str]] = {}
        self._migrate()

    def __repr__(self) -> str:
        return f"<PostgresStore {redact_url(self.url)}>"

    # ---------------------------------------------------------------------------------- connections

    def _get_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pid != os.getpid():  # a forked child opens its own connections
                self._pool, self._pid = None, os.getpid()
            if self._pool is None:
                pool = ConnectionPool(
                    self.url,
                    kwargs=self._kwargs,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=self._timeout,
                    name="corral",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection that shows no sign of having been dropped; the check costs no round trip.

        An idle connection has nothing to read: a socket with data waiting (the server's goodbye, or the
        end of the stream) belongs to a connection the server closed, so it is discarded, not lent. A
        connection killed a moment before it is used slips past this; ``_run`` retries work that the
        server provably never started (see ``_Attempt``).
        """
        pool = self._get_pool()
        deadline = time.monotonic() + self._timeout
        while True:
            conn = pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
            if _looks_alive(conn):
                break
            conn.close()
            pool.putconn(conn)  # closed: the pool opens a new one in the background
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def _fault(self, what: str, exc: BaseException) -> StoreError:
        text = str(exc).strip() or type(exc).__name__
        return StoreError(f"{self._where}: {what} failed: {text.splitlines()[0]}")

    def _run(self, what: str, work: Callable[[Any], T], *, transaction: bool = True, read: bool = False,
             pipeline: bool = False, landed: Callable[[Any], bool] | None = None) -> T:
        """Run ``work(conn)`` in one transaction (or one autocommit statement); DB errors become StoreError.

        With ``pipeline``, statements go to the server without waiting for each other's answers: a round
        trip happens only where ``work`` fetches a result, and once more for the COMMIT.

        A transaction lost with its connection is run again on a fresh one only when the server never
        started it: its BEGIN was not answered (a server that is told to stop answers what it has done
        before it goes). A pipelined write that can be recognised once written gives ``landed(conn)``:
        asked on the fresh connection after the lost one's server process is gone, True means the first
        try did commit — a StoreError then, never a second copy. A ``read`` is always safe to run again.
        """
        for attempt in range(1, 4):
            try_ = _Attempt()
            try:
                with self._connection() as conn:
                    try_.conn = conn
                    if not transaction:
                        try_.started = not read  # a lone write may have run before the connection died
                        return work(conn)
                    if pipeline:
                        return _pipelined(conn, work, try_)
                    with conn.transaction():
                        try_.started = True
                        return work(conn)
            except psycopg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state == _DOES_NOT_FIT:
                    raise DoesNotFit from None
                if state == _HEAD_MOVED:
                    self._heads.clear()  # the next try reads the heads it needs
                if attempt < 3 and (state in _RETRYABLE or state == _HEAD_MOVED
                                    or (try_.lost() and (read or self._not_started(what, try_, landed)))):
                    continue
                raise self._fault(what, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _not_started(self, what: str, try_: _Attempt, landed: Callable[[Any], bool] | None) -> bool:
        """May a transaction lost with its connection be run again? Only if the server never started it."""
        if try_.begun():
            return False
        if landed is None or try_.conn is None:
            return True
        pid = try_.conn.info.backend_pid
        try:
            with self._connection() as conn:
                # the lost connection's server process could still be finishing the transaction: wait
                # until it is gone (it is ours to stop: same role), then the commit is known either way
                conn.execute("SELECT pg_terminate_backend(%s, 5000) FROM pg_stat_activity WHERE pid = %s",
                             (pid, pid))
                if not landed(conn):
                    return True
        except psycopg.Error as exc:
            log.warning("corral: %s: after a lost connection, could not tell whether %s committed: %s",
                        self._where, what, str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            return False
        log.warning("corral: %s: the connection was lost after %s committed; not written twice", self._where, what)
        return False

    def _stream(self, what: str, sql: str, args: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """A server-side cursor: the rows come in batches, never the whole result in memory at once."""
        try:
            with (
                self._connection() as conn,
                conn.transaction(),
                conn.cursor(name=f"corral_{what}") as cursor,
            ):
                cursor.execute(self._sql(sql), args)
                while rows := cursor.fetchmany(2000):
                    yield from rows
        except psycopg.Error as exc:
            raise self._fault(what, exc) from exc

    # ----------------------------------------------------------------------------------- migrations

    def _migrate(self) -> None:
        try:
            conn = psycopg.connect(self.url, **self._kwargs)
        except psycopg.Error as exc:
            raise self._fault("connecting", exc) from exc
        with conn:
            try:
                current = _postgres_version(conn)
            except psycopg.Error as exc:
                raise self._fault("reading the schema version", exc) from exc
            if current > CURRENT_VERSION:
                raise StoreError(too_new_message(self._where, current))
            for migration in pending(current):
                try:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (POSTGRES_MIGRATION_LOCK,))
                        conn.execute(SCHEMA_VERSION_POSTGRES)
                        found = _postgres_version(conn)  # another process may have migrated meanwhile
                        if found > CURRENT_VERSION:
                            raise StoreError(too_new_message(self._where, found))
                        if found >= migration.version:
                            continue
                        for statement in migration.postgres:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                            (migration.version, migration.description),
                        )
                except psycopg.Error as exc:
                    raise self._fault(f"migration {migration.version} ({migration.description})", exc) from exc

    def schema_version(self) -> int:
        return self._run("reading the schema version", _postgres_version, transaction=False, read=True)

    # ------------------------------------------------------------------------------------ audit chain

    def _write_chain(self, batch: list[ChainRecord]) -> None:
        moved: dict[str, tuple[int, str]] = {}

        def work(conn: Any) -> None:
            moved.clear()  # a try that failed left nothing
            moved.update(self._seal_chain(conn, batch, self._chain_heads(conn, batch)))

        self._run(f"appending {len(batch)} record(s) to the audit chain", work, pipeline=True,
                  landed=_landed(batch, []))
        self._remember(moved)

    def _chain_heads(self, conn: Any, batch: Sequence[ChainRecord]) -> list[tuple[str, int, str]]:
        """Each session's ``(session_id, seq, head)`` to seal ``batch`` onto: as this process last wrote
        them (no round trip; the sealing statement checks them), else locked and read (one round trip)."""
        known = []
        for sid in sorted({item.session_id for item in batch}):
            head = self._heads.get(sid)
            if head is None:
                return self._lock_heads(conn, batch).fetchall()
            known.append((sid, *head))
        return known

    def _remember(self, heads: dict[str, tuple[int, str]]) -> None:
        """The heads a committed write left (the oldest forgotten past ``_KNOWN_HEADS``)."""
        for sid, head in heads.items():
            self._heads.pop(sid, None)
            self._heads[sid] = head
        while len(self._heads) > _KNOWN_HEADS:
            self._heads.pop(next(iter(self._heads)), None)

    @staticmethod
    def _lock_heads(conn: Any, batch: Sequence[ChainRecord]) -> Any:
        """Lock each session's head row (creating it first) in sorted order: one writer per session at a time.
        Returns the cursor; its rows, ``(session_id, seq, head)``, are what ``_seal_chain`` needs."""
        return conn.execute(
            "INSERT INTO heads (session_id) SELECT unnest(%b::text[]) "
            "ON CONFLICT (session_id) DO UPDATE SET seq = heads.seq RETURNING session_id, seq, head",
            (sorted({item.session_id for item in batch}),),
        )

    def _seal_chain(self, conn: Any, batch: list[ChainRecord], rows: Sequence[tuple[Any, ...]]
                    ) -> dict[str, tuple[int, str]]:
        """Seal ``batch`` onto ``rows`` — the heads locked by ``_lock_heads``, or the ones this process
        last wrote — in one statement that moves each head only from where ``rows`` says it is (else
        ``_HEAD_MOVED``: nothing is written) and adds the records. Nothing to wait for: in a pipeline it
        goes out with the commit. Returns the heads it leaves."""
        start = {sid: (int(seq), str(head)) for sid, seq, head in rows}
        heads = dict(start)
        audit = []
        for item in batch:
            seq, prev = heads[item.session_id]
            digest = item.seal(prev)
            audit.append((item.session_id, seq + 1, item.record_id, prev, digest, item.text))
            heads[item.session_id] = (seq + 1, digest)
        sids = list(heads)
        conn.execute(
            "WITH moved AS (UPDATE heads AS h SET seq = n.seq, head = n.head, hmac = n.hmac "
            "FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[], %b::bigint[], %b::text[]) "
            "AS n(session_id, seq, head, hmac, was_seq, was_head) "
            "WHERE h.session_id = n.session_id AND h.seq = n.was_seq AND h.head = n.was_head "
            "RETURNING h.session_id), "
            "added AS (INSERT INTO audit (session_id, seq, record_id, prev, hash, record) "
            "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[]) "
            "WHERE (SELECT count(*) FROM moved) = %s) "
            "SELECT corral_require((SELECT count(*) FROM moved) = %s, %s, 'corral: a chain head moved')",
            (
                sids,
                [heads[sid][0] for sid in sids],
                [heads[sid][1] for sid in sids],
                [head_signature(self._key, sid, heads[sid][1]) for sid in sids],
                [start[sid][0] for sid in sids],
                [start[sid][1] for sid in sids],
                *([row[i] for row in audit] for i in range(6)),
                len(sids),
                len(sids),
                _HEAD_MOVED,
            ),
        )
        return heads

    # ------------------------------------------------------------------------------------ the ledger

    @staticmethod
    def _lock_scopes(conn: Any, keys: Sequence[str]) -> dict[str, tuple[Decimal, Decimal]]:
        """Lock every scope row, creating missing ones, in sorted key order; their (spent, reserved)."""
        rows = conn.execute(
            "INSERT INTO budget_scopes (key) SELECT k FROM unnest(%b::text[]) AS k ORDER BY k "
            "ON CONFLICT (key) DO UPDATE SET spent = budget_scopes.spent RETURNING key, spent, reserved",
            (sorted(set(keys)),),
        ).fetchall()
        return {key: (Decimal(spent), Decimal(reserved)) for key, spent, reserved in rows}

    @staticmethod
    def _add_to_scopes(conn: Any, deltas: dict[str, tuple[Decimal, Decimal]]) -> None:
        keys = sorted(deltas)
        conn.execute(
            "UPDATE budget_scopes AS b SET spent = b.spent + d.spent, reserved = b.reserved + d.reserved "
            "FROM unnest(%b::text[], %b::numeric[], %b::numeric[]) AS d(key, spent, reserved) WHERE b.key = d.key",
            (keys, [deltas[k][0] for k in keys], [deltas[k][1] for k in keys]),
        )

    def reserve(
        self, scopes: Sequence[tuple[str, Decimal]], amount: Decimal, expires_at: datetime
    ) -> str | None:
        op = ReserveRow.of(Reserve(scopes, amount, expires_at))
        try:
            self._run("reserve", lambda conn: self._ledger_in(conn, [op]), pipeline=True, landed=_landed([], [op]))
        except DoesNotFit:
            return None
        return op.rid

    def settle(self, reservation_id: str, actual: Decimal) -> None:
        op = Settle(reservation_id, to_decimal(actual))
        self._run("settle", lambda conn: self._ledger_in(conn, [op]), pipeline=True)

    def _ledger_in(self, conn: Any, ops: Sequence[ReserveRow | Settle]) -> None:
        if (single := _single(ops)) is not None:
            self._ledger_one(conn, single)
        else:
            self._charge(conn, ops, self._lock_ledger(conn, ops).fetchall())

    @staticmethod
    def _ledger_one(conn: Any, op: ReserveRow | Settle) -> None:
        """One reservation or settlement, its rows locked in the order every ledger writer uses, checked
        and written by the server — nothing for the client to read, so it costs no round trip of its own
        in a pipeline. A reservation without room raises ``_DOES_NOT_FIT`` (the transaction rolls back)."""
        if isinstance(op, Settle):
            conn.execute("SELECT 1 FROM reservations WHERE id = %s FOR UPDATE", (op.reservation_id,))
            conn.execute(
                "SELECT 1 FROM budget_scopes WHERE key = ANY(SELECT unnest(scopes) FROM reservations WHERE id = %s) "
                "ORDER BY key FOR UPDATE", (op.reservation_id,))
            conn.execute(
                "WITH gone AS (DELETE FROM reservations WHERE id = %s RETURNING scopes, amount) "
                "UPDATE budget_scopes AS b SET spent = b.spent + %s, reserved = b.reserved - g.amount "
                "FROM (SELECT unnest(scopes) AS key, amount FROM gone) AS g WHERE b.key = g.key",
                (op.reservation_id, op.actual))
            return
        keys = sorted(op.keys)
        conn.execute(
            "INSERT INTO budget_scopes (key) SELECT k FROM unnest(%b::text[]) AS k ORDER BY k "
            "ON CONFLICT (key) DO UPDATE SET spent = budget_scopes.spent", (keys,))
        # the test of _charge: room for the amount under every limit, and no gate reached before it
        conn.execute(
            "WITH room AS (UPDATE budget_scopes AS b SET reserved = b.reserved + %(amount)s "
            "FROM unnest(%(keys)b::text[], %(limits)b::numeric[]) AS w(key, lim) WHERE b.key = w.key "
            "AND b.spent + b.reserved + %(amount)s <= w.lim "
            "AND (%(gate)s::numeric IS NULL OR b.spent + b.reserved < %(gate)s::numeric * w.lim) RETURNING b.key), "
            "held AS (INSERT INTO reservations (id, scopes, amount, expires_at) "
            "SELECT %(rid)s, %(scopes)b::text[], %(amount)s, %(expires)s WHERE (SELECT count(*) FROM room) = %(n)s) "
            "SELECT corral_require((SELECT count(*) FROM room) = %(n)s, %(code)s, 'corral: no room for it')",
            {"amount": op.amount, "keys": [key for key, _ in op.limits], "limits": [limit for _, limit in op.limits],
             "gate": op.gate, "rid": op.rid, "scopes": op.keys, "expires": op.expires_at, "n": len(op.limits),
             "code": _DOES_NOT_FIT})

    @staticmethod
    def _lock_ledger(conn: Any, ops: Sequence[ReserveRow | Settle]) -> Any:
        """One statement that takes every ledger lock a batch needs, in the one order every writer uses:
        the settled reservations' rows (deleted), then the scope rows of those and of the new reservations
        (created if missing) in sorted key order — so two ledger writers never wait on each other in a
        cycle. Returns the cursor; its rows are what ``_charge`` needs."""
        settled = [op.reservation_id for op in ops if isinstance(op, Settle)]
        wanted = sorted({key for op in ops if isinstance(op, ReserveRow) for key in op.keys})
        return conn.execute(
            "WITH gone AS (DELETE FROM reservations WHERE id = ANY(%b::text[]) RETURNING id, scopes, amount), "
            "wanted AS (SELECT unnest(scopes) AS key FROM gone UNION SELECT unnest(%b::text[])), "
            "locked AS (INSERT INTO budget_scopes (key) SELECT key FROM wanted ORDER BY key "
            "ON CONFLICT (key) DO UPDATE SET spent = budget_scopes.spent RETURNING key, spent, reserved) "
            "SELECT 'reservation', id, scopes, amount, NULL::numeric, NULL::numeric FROM gone "
            "UNION ALL SELECT 'scope', key, NULL::text[], NULL::numeric, spent, reserved FROM locked",
            (settled, wanted),
        )

    @staticmethod
    def _charge(conn: Any, ops: Sequence[ReserveRow | Settle], rows: list[tuple[Any, ...]]) -> None:
        """Apply reservations and settlements, in order, to the rows ``_lock_ledger`` locked: the scopes
        charged, the new reservations recorded (nothing to wait for: in a pipeline they go out with the
        commit). Raises ``DoesNotFit`` (the caller rolls back) when a reservation has no room."""
        held: dict[str, tuple[list[str], Decimal]] = {}
        usage: dict[str, tuple[Decimal, Decimal]] = {}
        for kind, key, scopes, amount, spent, reserved in rows:
            if kind == "reservation":
                held[key] = (list(scopes), Decimal(amount))
            else:
                usage[key] = (Decimal(spent), Decimal(reserved))
        zero = (Decimal(0), Decimal(0))
        deltas: dict[str, tuple[Decimal, Decimal]] = {}
        for op in ops:
            if isinstance(op, Settle):
                found = held.pop(op.reservation_id, None)  # settled twice in one batch: the first one counts
                for key in found[0] if found else ():
                    spent, reserved = deltas.get(key, zero)
                    deltas[key] = (spent + op.actual, reserved - found[1])  # type: ignore[index]
                continue
            for key, limit in op.limits:
                spent, reserved = usage[key]
                d_spent, d_reserved = deltas.get(key, zero)
                if spent + d_spent + reserved + d_reserved + op.amount > limit or gate_reached(
                        spent + d_spent, reserved + d_reserved, limit, op.gate):
                    raise DoesNotFit
            for key in op.keys:
                spent, reserved = deltas.get(key, zero)
                deltas[key] = (spent, reserved + op.amount)
        if deltas:
            PostgresStore._add_to_scopes(conn, deltas)
        for op in ops:
            if isinstance(op, ReserveRow):
                conn.execute(
                    "INSERT INTO reservations (id, scopes, amount, expires_at) VALUES (%s, %s, %s, %s)",
                    (op.rid, op.keys, op.amount, op.expires_at),
                )

    def _take_off(self, conn: Any, rows: list[tuple[Any, ...]], actual: Decimal) -> None:
        """Take reservations already deleted (``rows`` of scopes and amount) off their scopes."""
        deltas: dict[str, tuple[Decimal, Decimal]] = {}
        for keys, amount in rows:
            for key in keys:
                spent, reserved = deltas.get(key, (Decimal(0), Decimal(0)))
                deltas[key] = (spent + actual, reserved - Decimal(amount))
        if deltas:
            self._lock_scopes(conn, list(deltas))
            self._add_to_scopes(conn, deltas)

    def usage(self, scope_keys: Sequence[str]) -> list[tuple[Decimal, Decimal]]:
        keys = list(scope_keys)
        rows = self._run("usage", lambda conn: conn.execute(
            "SELECT key, spent, reserved FROM budget_scopes WHERE key = ANY(%b)", (keys,)
        ).fetchall(), transaction=False, read=True)
        found = {key: (Decimal(spent), Decimal(reserved)) for key, spent, reserved in rows}
        zero = (Decimal(0), Decimal(0))
        return [found.get(key, zero) for key in keys]

    def release_expired(self, now: datetime) -> int:
        cutoff = to_utc(now)

        def work(conn: Any) -> int:
            # SKIP LOCKED: a reservation being settled right now is left to its settle; two recoveries split
            # the expired ones between them instead of waiting on each other.
            rows = conn.execute(
                "DELETE FROM reservations WHERE id IN (SELECT id FROM reservations WHERE expires_at <= %s "
                "ORDER BY id FOR UPDATE SKIP LOCKED) RETURNING scopes, amount",
                (cutoff,),
            ).fetchall()
            self._take_off(conn, rows, Decimal(0))
            return len(rows)

        return self._run("release_expired", work)

    # ------------------------------------------------------------------------------- the unit of work

    def _write_batch(self, what: str, prepared: list[Any], chain: list[ChainRecord]) -> list[Any]:
        """The batch in one transaction, in one round trip when it can be, else two.

        Rows are locked in one order for every writer — the settled reservations, the budget scopes
        (sorted), the sessions' heads (sorted, as ``append`` locks them), the transactions' step logs
        (sorted) — so batches never deadlock with each other or with the single operations. The usual
        batch — one reservation or settlement, sessions whose heads this process wrote last — is checked
        by the server in the statements that write it, so it all goes out with the COMMIT: one round
        trip. Otherwise the ledger and head locks go out together first, and what they read decides the
        writes (a second round trip). Raises ``DoesNotFit`` (rolled back) when a reservation does not
        fit or a call to close is not open.
        """
        ledger = [p for p in prepared if isinstance(p, ReserveRow | Settle)]
        logged = sorted({p.tx_id for p in prepared if isinstance(p, StepRow)})

        closing = [p for p in prepared if isinstance(p, CloseCall)]

        moved: dict[str, tuple[int, str]] = {}

        def work(conn: Any) -> list[Any]:
            moved.clear()  # a try that failed left nothing
            for p in closing:  # first: a call finished elsewhere already stops the batch before it writes
                self._close_call_in(conn, p)
            if (single := _single(ledger)) is not None:  # the usual one: locked, checked and written
                self._ledger_one(conn, single)  # without a round trip of its own
                scopes = None
            else:
                scopes = self._lock_ledger(conn, ledger) if ledger else None
            heads = self._chain_heads(conn, chain) if chain else None
            if scopes is not None:
                self._charge(conn, ledger, scopes.fetchall())
            if heads is not None:
                moved.update(self._seal_chain(conn, chain, heads))
            for tx_id in logged:
                self._lock_step_log(conn, tx_id)
            results: list[Any] = []
            for p in prepared:
                if isinstance(p, ReserveRow):
                    results.append(p.rid)
                elif isinstance(p, ChainRecord):
                    results.append(p.record)
                else:
                    if isinstance(p, TxRow):
                        self._put_transaction_in(conn, p)
                    elif isinstance(p, UpdateTransaction):
                        self._update_transaction_in(conn, p.tx_id, p.fields)
                    elif isinstance(p, StepRow):
                        self._log_step_in(conn, p)
                    elif isinstance(p, OpenCall):
                        self._open_call_in(conn, p)
                    results.append(None)
            return results

        results = self._run(what, work, pipeline=True, landed=_landed(chain, prepared))
        self._remember(moved)
        return results

    def _close_call_in(self, conn: Any, op: CloseCall) -> None:
        """As the SQL stores do, checked by the server: nothing to read, so no round trip of its own."""
        conn.execute(
            "WITH gone AS (DELETE FROM open_calls WHERE id = %s RETURNING 1) "
            "SELECT corral_require(EXISTS (SELECT 1 FROM gone), %s, 'corral: the call is not open')",
            (op.call_id, _DOES_NOT_FIT),
        )

    # ---------------------------------------------------------------------------------- transactions

    def log_step(self, tx_id: str, entry: dict[str, Any]) -> None:
        row = StepRow.of(LogStep(tx_id, entry))

        def work(conn: Any) -> None:
            self._lock_step_log(conn, tx_id)
            self._log_step_in(conn, row)

        self._run("log_step", work, pipeline=True, landed=_landed([], [row]))

    @staticmethod
    def _lock_step_log(conn: Any, tx_id: str) -> None:
        """Serialise writers of one transaction's log; the lock ends with the database transaction."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('corral.tx_steps:' || %s, 0))", (tx_id,))

    # ----------------------------------------------------------------------------------- long-term memory

    # ``memories.search`` is a stored ``tsvector`` generated from text and tags (``'english'``: stemmed,
    # stop words dropped), GIN-indexed. A query is an OR of ``plainto_tsquery`` per word — never the user's
    # text as tsquery syntax. A memory's rank: how many of the query's words it has (more first), then
    # ``ts_rank`` (best first), then the newest.

    def memory_search(self, namespace: str, query: str, limit: int) -> list[dict[str, Any]]:
        """The memories of ``namespace`` with most of ``query``'s words, best ``ts_rank`` first among equals."""
        words = query_words(query)
        if not words or limit <= 0:
            return []
        each = ["plainto_tsquery('english', %s)"] * len(words)
        rows = self._run("memory_search", lambda conn: conn.execute(
            # ``q``: any of the words; ``words``: each word's own tsquery, stop words (empty ones) left out
            f"WITH query AS (SELECT {' || '.join(each)} AS q, "
            f"ARRAY(SELECT w FROM unnest(ARRAY[{', '.join(each)}]) AS w WHERE numnode(w) > 0) AS words) "
            "SELECT m.id, m.text, m.tags FROM memories AS m, query "
            "WHERE numnode(query.q) > 0 AND m.namespace = %s AND m.search @@ query.q "
            "ORDER BY (SELECT COUNT(*) FROM unnest(query.words) AS w WHERE m.search @@ w) DESC, "
            "ts_rank(m.search, query.q) DESC, m.ord DESC LIMIT %s",
            (*words, *words, namespace, limit),
        ).fetchall(), transaction=False, read=True)
        return [{"id": mid, "text": text, "tags": tags} for mid, text, tags in rows]

    # ----------------------------------------------------------------------------------------- close

    def close(self) -> None:
        """Write buffered records and close the pool. A later call opens a new one."""
        try:
            self._chain.close()
        finally:
            with self._pool_lock:
                pool, self._pool = self._pool, None
            if pool is not None and self._pid == os.getpid():
                try:
                    pool.close()
                except Exception as exc:  # closing must not hide the flush's outcome
                    log.warning("corral: closing the pool of %s: %s", self._where, exc)


def _single(ops: Sequence[ReserveRow | Settle]) -> ReserveRow | Settle | None:
    """The one ledger operation ``_ledger_one`` can write — a settlement, or a reservation on distinct
    scopes with finite limits — else None (none, several, or one the client must check)."""
    if len(ops) != 1:
        return None
    op = ops[0]
    if isinstance(op, Settle) or (len(set(op.keys)) == len(op.keys)
                                  and all(limit.is_finite() for _, limit in op.limits)):
        return op
    return None


def _landed(chain: Sequence[ChainRecord], prepared: Sequence[Any]) -> Callable[[Any], bool] | None:
    """How to tell, afterwards, whether a write committed: by one row it adds that nothing else would.
    None when nothing in it adds such a row (a settlement, say: settling again changes nothing)."""
    if chain:
        first = chain[0]
        return lambda conn: conn.execute("SELECT 1 FROM audit WHERE session_id = %s AND record = %s",
                                         (first.session_id, first.text)).fetchone() is not None
    for p in prepared:
        if isinstance(p, ReserveRow):
            return lambda conn, rid=p.rid: conn.execute(
                "SELECT 1 FROM reservations WHERE id = %s", (rid,)).fetchone() is not None
        if isinstance(p, StepRow):
            return lambda conn, step=p: conn.execute(
                "SELECT 1 FROM tx_steps WHERE tx_id = %s AND entry = %s", (step.tx_id, step.doc)).fetchone() is not None
        if isinstance(p, OpenCall):
            return lambda conn, cid=p.call_id: conn.execute(
                "SELECT 1 FROM open_calls WHERE id = %s", (cid,)).fetchone() is not None
    return None


class _Attempt:
    """One try of ``_run``: its connection, and whether the server has started its transaction."""

    __slots__ = ("began", "conn", "started")

    def __init__(self) -> None:
        self.conn: Any = None
        self.began: Any = None  # the pipelined BEGIN's cursor
        self.started = False  # set where no pipelined BEGIN tells it

    def lost(self) -> bool:
        """Did the connection die under this try (rather than the server refusing a statement)?"""
        return self.conn is not None and (self.conn.broken or self.conn.closed)

    def begun(self) -> bool:
        """Had the server started the transaction: its BEGIN answered (or, for a lone write, maybe run)?"""
        return self.started or (self.began is not None and self.began.pgresult is not None)


def _looks_alive(conn: Any) -> bool:
    """No round trip: not known broken, idle, and nothing waiting on its socket (a dropped connection's
    goodbye, or the end of its stream)."""
    if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return False


def _pipelined(conn: Any, work: Callable[[Any], T], try_: _Attempt) -> T:
    """``work(conn)`` between BEGIN and COMMIT, all in one pipeline (the connection is in autocommit mode).

    Not ``conn.transaction()``: in a pipeline it waits for the server at BEGIN and again at COMMIT, two
    round trips that this saves. Anything that goes wrong rolls the transaction back.
    """
    try:
        with conn.pipeline():
            try_.began = conn.execute("BEGIN")
            result = work(conn)
            conn.execute("COMMIT")
        return result
    except BaseException:
        # conn.rollback(), not execute("ROLLBACK"): psycopg reads a ROLLBACK it executes as a reason to
        # forget the statements it prepared and deallocates them all at its next use of the connection —
        # in the middle of the next pipeline, whose freshly prepared statements then "do not exist".
        with contextlib.suppress(psycopg.Error):
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
        raise


def _postgres_version(conn: Any) -> int:
    exists = conn.execute("SELECT to_regclass('schema_version')").fetchone()[0]
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


__all__ = ["PostgresStore"]
