r"""Versioned schema migrations for the SQL stores: one ordered list, one dialect per database.

A database records every migration applied to it in ``schema_version``. Opening a store applies the
missing ones in order, each in its own transaction (so a failure leaves the database at the last
complete version, never half-migrated), and refuses a database written by a newer corral.

The schema (version 1):

- ``sessions``      one JSON document per session, with its agent for listing
- ``audit``         the hash-chained records, ``(session_id, seq)``, with ``prev`` and ``hash`` beside the body
                    and the record's own id (``find_record``)
- ``heads``         each session's head hash and last ``seq`` — kept apart from the chain — and its HMAC
- ``budget_scopes`` spent and reserved per scope key (exact decimals: TEXT in SQLite, NUMERIC in Postgres)
- ``reservations``  open reservations: amount, the scope keys they hold, when they expire
- ``approvals``     one JSON document per request; binding, session and status as columns for lookups
- ``transactions``  one JSON document per transaction; state as a column
- ``tx_steps``      the transaction log: entries in order, ``(tx_id, pos)``
- ``memories``      long-term memory: text and tags per namespace (agent/principal)
- ``memory_words``  its word index: each distinct word (``\w+``, lower case, two letters or more) of a memory

Version 2 replaces the word index with each database's own full-text search:

- SQLite: ``memories`` gains ``seq INTEGER PRIMARY KEY`` (a stable rowid, in insertion order) and an
  index on ``namespace``; ``memory_fts`` is an FTS5 table over its ``text`` and ``tags`` (external
  content, ``tokenize='porter unicode61'``), kept in step by triggers on ``memories`` and rebuilt from
  the rows already there.
- PostgreSQL: ``memories`` gains ``search``, a stored ``tsvector`` generated from ``text`` and ``tags``
  (``'english'``), with a GIN index, and an index on ``(namespace, ord)``.
- Both: ``memory_words`` is dropped.

Version 4 is what ``corral serve`` needs:

- ``principals``  who may call the API: one JSON document per principal, keyed by its normalised name,
                  with the SHA-256 of its token (never the token) as a unique column for the lookup
- ``leases``      a session being run holds ``session:ID`` here, with its holder (one server process)
                  and when the lease runs out (microseconds since 1970, UTC, in both databases); a server
                  renews its leases while it runs them
- ``sessions``    gains its summary as columns — ``principal``, ``phase``, ``status``, ``stop_reason``
                  (the document's own, else its harness state's), ``created``, ``updated`` — written with
                  the document, and indexes for listing newest first by ``(created, id)`` (the keyset),
                  alone and after ``agent``, ``principal`` or ``status``

Version 5 is what the console needs:

- ``signins``     a browser signed in to the console: the SHA-256 of its random sign-in id (the cookie's
                  value, never stored), the principal it stands for, a JSON document (the digest of the
                  principal's token at sign-in, when) and when it runs out (microseconds, as ``leases``)
- ``sessions``    gains an index for listing by ``stop_reason``, newest first

Version 6 lets a PostgreSQL write check its own conditions in the same round trip as its COMMIT:

- ``corral_require(ok, code, message)`` raises ``message`` with SQLSTATE ``code`` unless ``ok`` is true
  (a reservation without room, a call already closed, a chain head another writer moved: the whole
  transaction rolls back). SQLite needs nothing: its writes read their rows in-process.

JSON documents are TEXT on both databases, so what was written is exactly what is read back.
"""

from __future__ import annotations

from corral.struct import struct


@struct(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


SCHEMA_VERSION_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)
SCHEMA_VERSION_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

_V1_SQLITE = (
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, agent TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX sessions_agent ON sessions (agent)",
    "CREATE TABLE audit ("
    " session_id TEXT NOT NULL, seq INTEGER NOT NULL, record_id TEXT, prev TEXT NOT NULL, hash TEXT NOT NULL,"
    " record TEXT NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID",
    "CREATE INDEX audit_record_id ON audit (record_id)",
    "CREATE TABLE heads ("
    " session_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, head TEXT NOT NULL, hmac TEXT)",
    "CREATE TABLE budget_scopes ("
    " key TEXT PRIMARY KEY, spent TEXT NOT NULL DEFAULT '0', reserved TEXT NOT NULL DEFAULT '0')",
    "CREATE TABLE reservations ("
    " id TEXT PRIMARY KEY, scopes TEXT NOT NULL, amount TEXT NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE INDEX reservations_expires ON reservations (expires_at)",
    "CREATE TABLE approvals ("
    " id TEXT PRIMARY KEY, binding TEXT, session TEXT, status TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX approvals_binding ON approvals (binding)",
    "CREATE INDEX approvals_session ON approvals (session, status)",
    "CREATE TABLE transactions (id TEXT PRIMARY KEY, state TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX transactions_state ON transactions (state)",
    "CREATE TABLE tx_steps ("
    " tx_id TEXT NOT NULL, pos INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (tx_id, pos)) WITHOUT ROWID",
    "CREATE TABLE memories (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, text TEXT NOT NULL, tags TEXT NOT NULL)",
    "CREATE TABLE memory_words ("
    " word TEXT NOT NULL, memory_id TEXT NOT NULL, PRIMARY KEY (word, memory_id)) WITHOUT ROWID",
    "CREATE INDEX memory_words_memory ON memory_words (memory_id)",
)

# ``ord`` keeps insertion order (an upsert keeps its row's place, as the memory store does).
_V1_POSTGRES = (
    "CREATE TABLE sessions ("
    " id TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, agent TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX sessions_agent ON sessions (agent, ord)",
    "CREATE TABLE audit ("
    " session_id TEXT NOT NULL, seq BIGINT NOT NULL, record_id TEXT, prev TEXT NOT NULL, hash TEXT NOT NULL,"
    " record TEXT NOT NULL, PRIMARY KEY (session_id, seq))",
    "CREATE INDEX audit_record_id ON audit (record_id)",
    "CREATE TABLE heads ("
    " session_id TEXT PRIMARY KEY, seq BIGINT NOT NULL DEFAULT 0, head TEXT NOT NULL DEFAULT '', hmac TEXT)",
    "CREATE TABLE budget_scopes ("
    " key TEXT PRIMARY KEY, spent NUMERIC NOT NULL DEFAULT 0, reserved NUMERIC NOT NULL DEFAULT 0)",
    "CREATE TABLE reservations ("
    " id TEXT PRIMARY KEY, scopes TEXT[] NOT NULL, amount NUMERIC NOT NULL, expires_at TIMESTAMPTZ NOT NULL)",
    "CREATE INDEX reservations_expires ON reservations (expires_at)",
    "CREATE TABLE approvals ("
    " id TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, binding TEXT, session TEXT,"
    " status TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX approvals_binding ON approvals (binding)",
    "CREATE INDEX approvals_session ON approvals (session, status)",
    "CREATE TABLE transactions ("
    " id TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, state TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX transactions_state ON transactions (state)",
    "CREATE TABLE tx_steps ("
    " tx_id TEXT NOT NULL, pos BIGINT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (tx_id, pos))",
    "CREATE TABLE memories ("
    " id TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, namespace TEXT NOT NULL, text TEXT NOT NULL,"
    " tags TEXT NOT NULL)",
    "CREATE TABLE memory_words ("
    " word TEXT NOT NULL, memory_id TEXT NOT NULL, PRIMARY KEY (word, memory_id))",
    "CREATE INDEX memory_words_memory ON memory_words (memory_id)",
)

# Version 2: full-text search for long-term memory. The old rows are copied (SQLite) or their
# ``tsvector`` computed as the column is added (PostgreSQL), so every memory stays searchable.
_V2_SQLITE = (
    "CREATE TABLE memories_v2 ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, namespace TEXT NOT NULL, text TEXT NOT NULL,"
    " tags TEXT NOT NULL)",
    "INSERT INTO memories_v2 (id, namespace, text, tags) SELECT id, namespace, text, tags FROM memories ORDER BY rowid",
    "DROP TABLE memory_words",
    "DROP TABLE memories",
    "ALTER TABLE memories_v2 RENAME TO memories",
    "CREATE INDEX memories_namespace ON memories (namespace)",
    "CREATE VIRTUAL TABLE memory_fts USING fts5("
    " text, tags, content='memories', content_rowid='seq', tokenize='porter unicode61')",
    "INSERT INTO memory_fts (memory_fts) VALUES ('rebuild')",
    "CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN"
    " INSERT INTO memory_fts (rowid, text, tags) VALUES (new.seq, new.text, new.tags); END",
    "CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN"
    " INSERT INTO memory_fts (memory_fts, rowid, text, tags) VALUES ('delete', old.seq, old.text, old.tags); END",
    "CREATE TRIGGER memories_fts_update AFTER UPDATE ON memories BEGIN"
    " INSERT INTO memory_fts (memory_fts, rowid, text, tags) VALUES ('delete', old.seq, old.text, old.tags);"
    " INSERT INTO memory_fts (rowid, text, tags) VALUES (new.seq, new.text, new.tags); END",
)

_V2_POSTGRES = (
    "DROP TABLE memory_words",
    "ALTER TABLE memories ADD COLUMN search tsvector"
    " GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text || ' ' || tags)) STORED",
    "CREATE INDEX memories_search ON memories USING GIN (search)",
    "CREATE INDEX memories_namespace ON memories (namespace, ord)",
)

# Version 3: calls begun durably and finished elsewhere by their id (``open_calls``); every session's chain
# has its head row from the start, so a session whose chain was deleted whole is told from a new one.
_V3_SQLITE = (
    "CREATE TABLE open_calls ("
    " id TEXT PRIMARY KEY, session TEXT NOT NULL, expires_at INTEGER NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX open_calls_expires ON open_calls (expires_at)",
    "INSERT INTO heads (session_id, seq, head) SELECT id, 0, '' FROM sessions"
    " WHERE id NOT IN (SELECT session_id FROM heads)",
)

_V3_POSTGRES = (
    "CREATE TABLE open_calls ("
    " id TEXT PRIMARY KEY, session TEXT NOT NULL, expires_at BIGINT NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX open_calls_expires ON open_calls (expires_at)",
    "INSERT INTO heads (session_id, seq, head) SELECT id, 0, '' FROM sessions ON CONFLICT (session_id) DO NOTHING",
)

# Version 4: what ``corral serve`` needs. A session's summary fields become columns, written with the
# document, so a page of the listing reads no JSON and each filter has its index (keyset: created, id).
_SESSION_COLUMNS = ("principal", "phase", "status", "stop_reason", "created", "updated")
_SESSION_INDEXES = (
    "CREATE INDEX sessions_newest ON sessions (created, id)",
    "CREATE INDEX sessions_agent_newest ON sessions (agent, created, id)",
    "CREATE INDEX sessions_principal_newest ON sessions (principal, created, id)",
    "CREATE INDEX sessions_status_newest ON sessions (status, created, id)",
)

_V4_SQLITE = (
    "CREATE TABLE principals (key TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, doc TEXT NOT NULL)",
    "CREATE TABLE leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL)",
    *(f"ALTER TABLE sessions ADD COLUMN {column} TEXT" for column in _SESSION_COLUMNS),
    "UPDATE sessions SET principal = json_extract(doc, '$.principal'), phase = json_extract(doc, '$.phase'),"
    " status = json_extract(doc, '$.status'),"
    " stop_reason = coalesce(json_extract(doc, '$.stop_reason'), json_extract(doc, '$.harness.stop_reason')),"
    " created = json_extract(doc, '$.created'), updated = json_extract(doc, '$.updated') WHERE json_valid(doc)",
    *_SESSION_INDEXES,
)

_V4_POSTGRES = (
    "CREATE TABLE principals ("
    " key TEXT PRIMARY KEY, ord BIGINT GENERATED ALWAYS AS IDENTITY, token_sha256 TEXT NOT NULL UNIQUE,"
    " doc TEXT NOT NULL)",
    "CREATE TABLE leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    *(f"ALTER TABLE sessions ADD COLUMN {column} TEXT" for column in _SESSION_COLUMNS),
    # row by row, so a row whose JSON is damaged keeps empty columns instead of failing the migration
    "DO $$ DECLARE r record; d jsonb; BEGIN FOR r IN SELECT id, doc FROM sessions LOOP BEGIN d := r.doc::jsonb;"
    " UPDATE sessions SET principal = d ->> 'principal', phase = d ->> 'phase', status = d ->> 'status',"
    " stop_reason = coalesce(d ->> 'stop_reason', d -> 'harness' ->> 'stop_reason'), created = d ->> 'created',"
    " updated = d ->> 'updated' WHERE id = r.id; EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$",
    *_SESSION_INDEXES,
)

# Version 5: the console's sign-ins (a browser holds a random id; the store keeps only its SHA-256) and
# the listing's last filter, by stop reason.
_V5_SQLITE = (
    "CREATE TABLE signins (id_sha256 TEXT PRIMARY KEY, principal TEXT NOT NULL, doc TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL)",
    "CREATE INDEX signins_expiry ON signins (expires_at)",
    "CREATE INDEX sessions_stop_reason_newest ON sessions (stop_reason, created, id)",
)

_V5_POSTGRES = (
    "CREATE TABLE signins (id_sha256 TEXT PRIMARY KEY, principal TEXT NOT NULL, doc TEXT NOT NULL,"
    " expires_at BIGINT NOT NULL)",
    "CREATE INDEX signins_expiry ON signins (expires_at)",
    "CREATE INDEX sessions_stop_reason_newest ON sessions (stop_reason, created, id)",
)

# Version 6: a PostgreSQL write that checks its conditions in the statement that writes (one round trip).
_V6_POSTGRES = (
    "CREATE OR REPLACE FUNCTION corral_require(ok boolean, code text, message text) RETURNS boolean"
    " LANGUAGE plpgsql AS $$ BEGIN IF ok IS NOT TRUE THEN RAISE EXCEPTION USING ERRCODE = code,"
    " MESSAGE = message; END IF; RETURN true; END $$",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: sessions, audit chain and heads, budget ledger, approvals, transaction log",
              _V1_SQLITE, _V1_POSTGRES),
    Migration(2, "long-term memory: full-text search (SQLite FTS5, PostgreSQL tsvector) replaces memory_words",
              _V2_SQLITE, _V2_POSTGRES),
    Migration(3, "open calls (finished elsewhere by their id); a head row for every session's chain",
              _V3_SQLITE, _V3_POSTGRES),
    Migration(4, "corral serve: principals (hashed tokens), session leases, session listing indexes",
              _V4_SQLITE, _V4_POSTGRES),
    Migration(5, "the console: sign-ins (hashed ids, expiring), session listing by stop reason",
              _V5_SQLITE, _V5_POSTGRES),
    Migration(6, "PostgreSQL writes check their conditions in the same round trip (corral_require)",
              (), _V6_POSTGRES),
)

CURRENT_VERSION = MIGRATIONS[-1].version

# Postgres: one advisory lock serialises migrating processes (an arbitrary constant: "corral" in ASCII).
POSTGRES_MIGRATION_LOCK = 0x636F7272616C


def pending(current: int) -> list[Migration]:
    """The migrations a database at version ``current`` still needs, in order."""
    return [m for m in MIGRATIONS if m.version > current]


def too_new_message(where: str, found: int) -> str:
    return (
        f"{where}: the database has schema version {found}, newer than this corral supports "
        f"(version {CURRENT_VERSION}); upgrade corral, or point it at another database"
    )


def _check_order() -> None:
    versions = [m.version for m in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):  # pragma: no cover - a programming error
        raise AssertionError(f"migrations must be numbered 1, 2, 3… in order, got {versions}")


_check_order()

__all__ = ["CURRENT_VERSION", "MIGRATIONS", "Migration", "pending", "too_new_message"]
