"""The store surface ``corral serve`` needs — principals, leases, session listing — on every store.

The memory store is the reference; SQLite and PostgreSQL must answer the same, and the SQL stores must
use the listing indexes (keyset pagination, never OFFSET) so a page stays fast at 10,000 sessions.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.store.conftest import Backend

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _principal(key: str, token: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": key.title(), "roles": ["user"], "token_sha256": token,
            "created": "2026-11-24T10:00:00.000Z", "revoked": None, **extra}


# ---------------------------------------------------------------------------------------- principals


def test_principals_are_added_once_found_by_token_and_updated(store: Any) -> None:
    assert store.add_principal(_principal("alice", "a" * 64))
    assert not store.add_principal(_principal("alice", "b" * 64))  # the name is taken
    assert not store.add_principal(_principal("bob", "a" * 64))  # the token digest is taken
    assert store.add_principal(_principal("bob", "b" * 64, roles=["approver"]))
    assert store.get_principal("alice")["name"] == "Alice"
    assert store.get_principal("nobody") is None
    assert store.principal_by_token("b" * 64)["key"] == "bob"
    assert store.principal_by_token("c" * 64) is None
    assert [p["key"] for p in store.list_principals()] == ["alice", "bob"]
    assert store.update_principal("alice", {"revoked": "2026-11-24T11:00:00.000Z"})
    assert not store.update_principal("nobody", {"revoked": "x"})
    assert store.principal_by_token("a" * 64)["revoked"] == "2026-11-24T11:00:00.000Z"
    found = store.get_principal("bob")
    found["roles"].append("admin")  # a copy: changing it changes nothing stored
    assert store.get_principal("bob")["roles"] == ["approver"]


def test_a_revocation_is_seen_at_once_by_another_store_instance(durable_backend: Backend) -> None:
    one, two = durable_backend.open(), durable_backend.open()
    one.add_principal(_principal("alice", "a" * 64))
    assert two.principal_by_token("a" * 64)["revoked"] is None
    one.update_principal("alice", {"revoked": "2026-11-24T11:00:00.000Z"})
    assert two.principal_by_token("a" * 64)["revoked"] == "2026-11-24T11:00:00.000Z"


# -------------------------------------------------------------------------------------------- leases


def test_a_lease_is_held_until_it_expires_renewed_and_released(store: Any) -> None:
    until = NOW + timedelta(seconds=30)
    assert store.acquire_lease("session:s1", "server-a", NOW, until)
    assert not store.acquire_lease("session:s1", "server-b", NOW + timedelta(seconds=29), until)
    assert store.acquire_lease("session:s1", "server-a", NOW, until + timedelta(seconds=5))  # its own: renewed
    assert store.get_lease("session:s1")["holder"] == "server-a"
    assert store.get_lease("session:s1")["expires_at"] == until + timedelta(seconds=5)
    assert store.renew_lease("session:s1", "server-a", NOW + timedelta(seconds=60))
    assert not store.renew_lease("session:s1", "server-b", NOW + timedelta(seconds=90))
    assert not store.acquire_lease("session:s1", "server-b", NOW + timedelta(seconds=59), until)
    # expired: another holder takes it, and the first one can no longer renew it
    assert store.acquire_lease("session:s1", "server-b", NOW + timedelta(seconds=60), NOW + timedelta(seconds=90))
    assert not store.renew_lease("session:s1", "server-a", NOW + timedelta(seconds=120))
    store.release_lease("session:s1", "server-a")  # not its lease any more: nothing happens
    assert store.get_lease("session:s1")["holder"] == "server-b"
    store.release_lease("session:s1", "server-b")
    assert store.get_lease("session:s1") is None
    assert store.acquire_lease("session:s1", "server-a", NOW, until)


def test_of_many_racing_holders_exactly_one_gets_a_lease(durable_backend: Backend) -> None:
    stores = [durable_backend.open() for _ in range(6)]
    winners: list[int] = []
    barrier = threading.Barrier(len(stores))

    def take(index: int) -> None:
        barrier.wait()
        if stores[index].acquire_lease("session:race", f"holder-{index}", NOW, NOW + timedelta(seconds=30)):
            winners.append(index)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert stores[0].get_lease("session:race")["holder"] == f"holder-{winners[0]}"


# ----------------------------------------------------------------------------------- session listing


def _session(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"s{i:05d}", "agent": "desk" if i % 2 else "mail", "principal": "alice" if i % 3 else "bob",
            "roles": ["user"], "phase": "explore", "created": f"2026-11-24T10:{i // 60:02d}:{i % 60:02d}.000Z",
            "updated": None, **extra}


def test_sessions_are_listed_newest_first_filtered_and_paged_by_key(store: Any) -> None:
    for i in range(40):
        store.put_session(_session(i, status="awaiting_approval" if i % 5 == 0 else "idle",
                                   harness={"stop_reason": "end_turn", "transcript": ["long"] * 3}))
    page = store.query_sessions(limit=7)
    assert [s["id"] for s in page] == [f"s{i:05d}" for i in range(39, 32, -1)]
    assert set(page[0]) == {"id", "agent", "principal", "phase", "status", "stop_reason", "created", "updated"}
    assert page[0]["stop_reason"] == "end_turn" and page[0]["status"] == "idle"
    seen, before = [], None
    while True:
        page = store.query_sessions(agent="desk", limit=6, before=before)
        if not page:
            break
        seen.extend(s["id"] for s in page)
        before = (page[-1]["created"], page[-1]["id"])
    assert seen == [f"s{i:05d}" for i in range(39, -1, -1) if i % 2]
    assert [s["id"] for s in store.query_sessions(principal="bob", agent="mail")] == \
        [f"s{i:05d}" for i in range(39, -1, -1) if i % 3 == 0 and i % 2 == 0]
    waiting = store.query_sessions(status="awaiting_approval")
    assert [s["id"] for s in waiting] == [f"s{i:05d}" for i in range(35, -1, -5)]
    assert store.query_sessions(agent="nobody") == []


def test_sessions_with_one_created_time_are_paged_by_id(store: Any) -> None:
    for i in range(5):
        store.put_session({**_session(i), "created": "2026-11-24T10:00:00.000Z"})
    first = store.query_sessions(limit=2)
    rest = store.query_sessions(limit=10, before=(first[-1]["created"], first[-1]["id"]))
    assert [s["id"] for s in first + rest] == ["s00004", "s00003", "s00002", "s00001", "s00000"]


def test_the_sql_listing_uses_its_indexes(durable_backend: Backend) -> None:
    store = durable_backend.open()
    store.put_session(_session(1))
    query = ("SELECT id FROM sessions WHERE principal = ? AND (created, id) < (?, ?) "
             "ORDER BY created DESC, id DESC LIMIT 50")
    params = ("alice", "2027", "x")
    if durable_backend.kind == "sqlite":
        plan = durable_backend.sql("EXPLAIN QUERY PLAN " + query, params)
    else:
        import psycopg

        with psycopg.connect(durable_backend.url, autocommit=True) as conn:
            conn.execute("SET enable_seqscan = off")
            plan = conn.execute("EXPLAIN " + query.replace("?", "%s"), params).fetchall()
    assert "sessions_principal_newest" in " ".join(str(row) for row in plan)
    assert "TEMP B-TREE" not in " ".join(str(row) for row in plan).upper()  # no sort: the index is the order


def test_a_version_3_database_gets_its_sessions_summaries_at_version_4(durable_backend: Backend, monkeypatch: Any) -> None:
    import corral.store.migrations as mig

    target = "corral.store.postgres" if durable_backend.kind == "postgres" else "corral.store.sqlite"
    monkeypatch.setattr(mig, "MIGRATIONS", mig.MIGRATIONS[:3])
    monkeypatch.setattr(f"{target}.CURRENT_VERSION", 3)
    durable_backend.open().close()
    monkeypatch.undo()
    doc = ('{"id": "old", "agent": "desk", "principal": "alice", "phase": "decide", "created": "2026-11-24T09:00:00Z",'
           ' "harness": {"stop_reason": "awaiting_approval"}}')
    durable_backend.sql("INSERT INTO sessions (id, agent, doc) VALUES (?, ?, ?)", ("old", "desk", doc))
    durable_backend.sql("INSERT INTO sessions (id, agent, doc) VALUES (?, ?, ?)", ("broken", "desk", "{not json"))
    store = durable_backend.open()  # migrates to the newest version: the damaged row does not stop it
    assert store.schema_version() == mig.CURRENT_VERSION
    assert store.query_sessions(principal="alice") == [
        {"id": "old", "agent": "desk", "principal": "alice", "phase": "decide", "status": None,
         "stop_reason": "awaiting_approval", "created": "2026-11-24T09:00:00Z", "updated": None}]
