"""Long-term memory search on every store: what must hold whether the store is the in-memory stand-in,
SQLite (FTS5, ``bm25()``) or PostgreSQL (``tsvector``, ``ts_rank``).

Namespaces never leak; more of the query's words rank first; "refund" and "refunds" find each other;
forgotten memories are not found; what the user types is plain words, never search syntax; the limit
holds; a result is ``{id, text, tags}``. And a database at schema version 1 comes out at version 2
with its memories searchable.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from corral.errors import StoreError
from corral.store import migrations as mig
from corral.store import sqlite as sqlite_module
from corral.store.sqlite import SQLiteStore, fts5_phrase


def ids(results: list[dict[str, Any]]) -> list[str]:
    return [m["id"] for m in results]


def test_another_agent_or_principal_never_sees_a_memory(store: Any) -> None:
    store.memory_put("desk/alice", "m1", "Alice wants refunds to her card", "refund")
    store.memory_put("desk/bob", "m2", "Bob wants refunds as store credit", "refund")
    store.memory_put("other-agent/alice", "m3", "Alice refunds handled by the other agent", "refund")
    assert ids(store.memory_search("desk/alice", "refunds", 10)) == ["m1"]
    assert ids(store.memory_search("desk/bob", "refunds", 10)) == ["m2"]
    assert ids(store.memory_search("other-agent/alice", "refunds alice", 10)) == ["m3"]
    assert store.memory_search("desk/carol", "refunds", 10) == []
    assert store.memory_search("desk", "refunds", 10) == []  # no prefix of a namespace
    assert store.memory_search("desk/alice ", "refunds", 10) == []


def test_more_query_words_rank_first(store: Any) -> None:
    ns = "desk/alice"
    # the fewest words, but short and repeated: term weighting alone might put it first
    store.memory_put(ns, "one", "refund refund refund", "")
    store.memory_put(ns, "three", "A long note: the customer asked about the refund policy for a damaged "
                                  "parcel that arrived late, and wanted to know the usual steps", "")
    store.memory_put(ns, "two", "Refund policy", "")
    store.memory_put(ns, "none", "Shipping times vary by region", "")
    assert ids(store.memory_search(ns, "refund policy damaged", 10)) == ["three", "two", "one"]
    # tags count as words of the memory
    store.memory_put(ns, "tagged", "Escalate to a manager", "refund,policy,damaged,escalation")
    assert ids(store.memory_search(ns, "refund policy damaged escalation", 10))[0] == "tagged"


def test_a_word_finds_its_other_forms(store: Any) -> None:
    ns = "desk/alice"
    store.memory_put(ns, "plural", "Refunds are issued within five days", "")
    store.memory_put(ns, "singular", "The customer asked for a refund", "")
    store.memory_put(ns, "past", "Order A1 was refunded once", "")
    store.memory_put(ns, "other", "Shipping is free over fifty euros", "")
    assert sorted(ids(store.memory_search(ns, "refund", 10))) == ["past", "plural", "singular"]
    assert sorted(ids(store.memory_search(ns, "refunds", 10))) == ["past", "plural", "singular"]
    assert sorted(ids(store.memory_search(ns, "REFUNDED", 10))) == ["past", "plural", "singular"]
    store.memory_put(ns, "tag", "Ask before acting", "policies")
    assert ids(store.memory_search(ns, "policy", 10)) == ["tag"]


def test_a_forgotten_or_rewritten_memory_is_not_found(store: Any) -> None:
    ns = "desk/alice"
    store.memory_put(ns, "m1", "Policy review tomorrow", "meeting")
    store.memory_put(ns, "m2", "Policy for refunds", "")
    store.memory_delete("m1")
    store.memory_delete("never-there")
    assert ids(store.memory_search(ns, "policy review meeting", 10)) == ["m2"]
    assert store.memory_search(ns, "meeting", 10) == []
    store.memory_put(ns, "m2", "Warranty claims go to the vendor", "vendor")  # an update replaces its words
    assert store.memory_search(ns, "refunds", 10) == []
    assert store.memory_search(ns, "policy", 10) == []
    assert store.memory_search(ns, "warranty", 10) == [
        {"id": "m2", "text": "Warranty claims go to the vendor", "tags": "vendor"}
    ]
    store.memory_delete("m2")
    assert store.memory_search(ns, "warranty vendor", 10) == []


SYNTAX = [
    '"refund', 'refund"', '"refund policy"', "refund*", "*refund", "NEAR(refund policy)", "NEAR(refund, 2)",
    "refund AND NOT policy", "refund OR", "OR refund", "-refund", "text:refund", "tags:refund", "{text}: refund",
    "^refund", "'refund'", "refund & !policy | (x", "refund <-> policy", "refund:*", "refund + policy",
    'refund""""', "(refund", "refund)", "refund\\", "refund;DROP TABLE memories;--", "re'fund refund",
]


@pytest.mark.parametrize("query", SYNTAX)
def test_search_syntax_in_a_query_is_plain_words(store: Any, query: str) -> None:
    ns = "desk/alice"
    store.memory_put(ns, "m1", "Refund policy: near the door, and not before noon", "refund")
    store.memory_put(ns, "m2", "Lunch is at noon", "")
    assert ids(store.memory_search(ns, query, 10)) == ["m1"], query
    assert ids(store.memory_search(ns, "m1", 10)) == []  # ids are not searched


def test_operator_words_are_plain_words(store: Any) -> None:
    ns = "desk/alice"
    store.memory_put(ns, "m1", "Meet near the NEAR building", "")
    store.memory_put(ns, "m2", "Lunch is at noon", "")
    assert ids(store.memory_search(ns, "NEAR", 10)) == ["m1"]
    assert ids(store.memory_search(ns, "near", 10)) == ["m1"]
    for query in ("AND", "OR", "NOT", "AND OR NOT NEAR", "NEAR NEAR"):
        assert isinstance(store.memory_search(ns, query, 10), list), query  # never an error


@pytest.mark.parametrize("query", ["", "   ", "*", '"', '""', "((((", "--", "!!", "?", "^", ":", "* * *",
                                   "a", "_", "__", "€", "'\"*()-+^:"])
def test_a_query_with_no_words_finds_nothing(store: Any, query: str) -> None:
    store.memory_put("desk/alice", "m1", "a _ € refund", "")
    assert store.memory_search("desk/alice", query, 10) == []


def test_the_limit_holds(store: Any) -> None:
    ns = "desk/alice"
    for i in range(12):
        store.memory_put(ns, f"m{i:02}", f"Refund note number {i}", "refund")
    assert len(store.memory_search(ns, "refund", 5)) == 5
    assert len(store.memory_search(ns, "refund", 1)) == 1
    assert len(store.memory_search(ns, "refund", 50)) == 12
    assert store.memory_search(ns, "refund", 0) == []
    assert store.memory_search(ns, "refund", -3) == []
    # among equals (same words, same length), the newest first
    assert ids(store.memory_search(ns, "refund note", 3)) == ["m11", "m10", "m09"]


def test_results_are_id_text_and_tags_exactly(store: Any) -> None:
    ns = "desk/alice"
    store.memory_put(ns, "m1", "Ada prefers refunds to store credit — « toujours »", "prefs,refund")
    store.memory_put(ns, "m2", "Ada's order A1 shipped", "")
    (found,) = store.memory_search(ns, "credit", 5)
    assert found == {"id": "m1", "text": "Ada prefers refunds to store credit — « toujours »",
                     "tags": "prefs,refund"}
    assert store.memory_search(ns, "prefs", 5) == [found]  # found by a tag
    assert all(set(m) == {"id", "text", "tags"} for m in store.memory_search(ns, "ada", 5))


def test_memories_persist_across_reopening(durable_backend: Any) -> None:
    first = durable_backend.open()
    first.memory_put("desk/alice", "m1", "Ada prefers refunds to store credit", "")
    first.close()
    again = durable_backend.open()
    assert ids(again.memory_search("desk/alice", "refund", 5)) == ["m1"]


def test_a_word_is_one_fts5_string_never_an_operator() -> None:
    assert fts5_phrase('say "hi"') == '"say ""hi"""'


# ------------------------------------------------------------------------------------ schema version 2


def _version_1(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database at schema version 1 with memories in it, written as version 1 wrote them."""
    monkeypatch.setattr(mig, "MIGRATIONS", mig.MIGRATIONS[:1])
    target = "corral.store.postgres" if backend.kind == "postgres" else "corral.store.sqlite"
    monkeypatch.setattr(f"{target}.CURRENT_VERSION", 1)
    backend.open().close()
    monkeypatch.undo()
    rows = [("m1", "desk/alice", "Refunds over $100 need a manager", "policy,refund"),
            ("m2", "desk/alice", "Order A1 was refunded once", "refund"),
            ("m3", "desk/bob", "Bob's refund policy", "policy"),
            ("m4", "desk/alice", "Shipping is free over fifty euros", "")]
    for row in rows:
        backend.sql("INSERT INTO memories (id, namespace, text, tags) VALUES (?, ?, ?, ?)", row)
        for word in sorted(set((row[2] + " " + row[3]).lower().replace(",", " ").split())):
            backend.sql("INSERT INTO memory_words (word, memory_id) VALUES (?, ?)", (word, row[0]))
    assert backend.sql("SELECT MAX(version) FROM schema_version") == [(1,)]


def test_a_version_1_database_comes_out_at_version_2_searchable(
    durable_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _version_1(durable_backend, monkeypatch)
    store = durable_backend.open()
    assert store.schema_version() == mig.CURRENT_VERSION
    assert [r[0] for r in durable_backend.sql("SELECT version FROM schema_version ORDER BY version")] == list(
        range(1, mig.CURRENT_VERSION + 1))
    gone = (durable_backend.sql("SELECT to_regclass('memory_words')")[0][0] if durable_backend.kind == "postgres"
            else durable_backend.sql("SELECT name FROM sqlite_master WHERE name = 'memory_words'"))
    assert not gone
    assert sorted(ids(store.memory_search("desk/alice", "refunds", 10))) == ["m1", "m2"]
    assert ids(store.memory_search("desk/alice", "refund manager", 10)) == ["m1", "m2"]
    assert ids(store.memory_search("desk/bob", "policies", 10)) == ["m3"]
    assert ids(store.memory_search("desk/alice", "euros shipping", 10)) == ["m4"]
    # the migrated rows go on as any other: updated, deleted, joined by new ones (kept in order)
    store.memory_put("desk/alice", "m5", "A new refund note", "")
    store.memory_delete("m2")
    store.memory_put("desk/alice", "m1", "Managers approve big refunds", "policy")
    assert ids(store.memory_search("desk/alice", "refund", 10)) in (["m5", "m1"], ["m1", "m5"])
    assert store.memory_search("desk/alice", "order", 10) == []
    store.close()
    assert durable_backend.open().schema_version() == mig.CURRENT_VERSION  # reopening changes nothing


def test_a_sqlite_without_fts5_fails_at_migration(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "FTS5_PROBE", "CREATE VIRTUAL TABLE temp.corral_fts5_probe USING no_fts5(x)")
    with pytest.raises(StoreError) as caught:
        SQLiteStore(f"sqlite:///{tmp_path}/x.db")
    assert "has no FTS5 full-text search" in str(caught.value) and str(tmp_path) in str(caught.value)
    monkeypatch.undo()
    assert SQLiteStore(f"sqlite:///{tmp_path}/x.db").schema_version() == mig.CURRENT_VERSION


def test_search_stays_fast_with_many_memories(durable_backend: Any) -> None:
    """2,000 memories in one namespace and 2,000 in another: a search is well under a tenth of a second."""
    store = durable_backend.open()
    words = ["refund", "order", "policy", "parcel", "manager", "credit", "shipping", "invoice", "damaged", "late"]
    for ns in ("desk/alice", "desk/bob"):
        rows = [(f"{ns}-{i}", ns, " ".join(words[(i * k) % 10] for k in range(1, 6)) + f" note{i}", "")
                for i in range(2000)]
        for row in rows[:5]:
            store.memory_put(row[1], row[0], row[2], row[3])
        if durable_backend.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(store.path, isolation_level=None)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO memories (id, namespace, text, tags) VALUES (?, ?, ?, ?)", rows[5:])
            conn.execute("COMMIT")
            conn.close()
        else:
            import psycopg

            with psycopg.connect(durable_backend.url) as conn, conn.cursor() as cur:
                cur.executemany("INSERT INTO memories (id, namespace, text, tags) VALUES (%s, %s, %s, %s)",
                                rows[5:])
    store.memory_search("desk/alice", "refund", 5)  # warm
    started = time.perf_counter()
    for _ in range(10):
        found = store.memory_search("desk/alice", "refund damaged late policy", 5)
    elapsed = (time.perf_counter() - started) / 10
    assert len(found) == 5 and all(m["id"].startswith("desk/alice-") for m in found)
    assert elapsed < 0.1, elapsed
