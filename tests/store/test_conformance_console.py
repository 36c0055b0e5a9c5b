"""The store surface the console needs — sign-ins and the listing by stop reason — on every store.

The memory store is the reference; SQLite and PostgreSQL must answer the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.errors import StoreError
from tests.store.conftest import Backend

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_a_sign_in_is_found_by_its_digest_until_it_runs_out(store: Any) -> None:
    store.add_signin("d" * 64, "alice", {"token_sha256": "t" * 64, "created": "2026-11-24T10:00:00.000Z"},
                     NOW + timedelta(hours=8))
    found = store.get_signin("d" * 64, NOW)
    assert found["principal"] == "alice" and found["token_sha256"] == "t" * 64
    assert found["expires_at"] == NOW + timedelta(hours=8)
    assert store.get_signin("d" * 64, NOW + timedelta(hours=8)) is None  # run out: never returned
    assert store.get_signin("e" * 64, NOW) is None
    found["principal"] = "mallory"  # a copy: changing it changes nothing stored
    assert store.get_signin("d" * 64, NOW)["principal"] == "alice"


def test_a_sign_in_digest_is_kept_once(store: Any) -> None:
    store.add_signin("d" * 64, "alice", {}, NOW + timedelta(hours=1))
    with pytest.raises(StoreError):
        store.add_signin("d" * 64, "bob", {}, NOW + timedelta(hours=1))
    assert store.get_signin("d" * 64, NOW)["principal"] == "alice"


def test_sign_ins_are_removed_one_by_one_or_when_they_ran_out(store: Any) -> None:
    store.add_signin("a" * 64, "alice", {}, NOW + timedelta(minutes=1))
    store.add_signin("b" * 64, "alice", {}, NOW + timedelta(hours=1))
    store.add_signin("c" * 64, "bob", {}, NOW + timedelta(hours=2))
    store.remove_signin("c" * 64)
    store.remove_signin("c" * 64)  # removing twice is no error
    assert store.get_signin("c" * 64, NOW) is None
    assert store.remove_expired_signins(NOW + timedelta(minutes=30)) == 1
    assert store.get_signin("a" * 64, NOW) is None
    assert store.get_signin("b" * 64, NOW)["principal"] == "alice"


def test_a_sign_in_made_by_one_server_is_seen_and_removed_by_another(durable_backend: Backend) -> None:
    one, two = durable_backend.open(), durable_backend.open()
    one.add_signin("d" * 64, "alice", {"token_sha256": "t" * 64}, NOW + timedelta(hours=1))
    assert two.get_signin("d" * 64, NOW)["token_sha256"] == "t" * 64
    two.remove_signin("d" * 64)
    assert one.get_signin("d" * 64, NOW) is None


def test_the_store_keeps_only_the_digest(durable_backend: Backend) -> None:
    store = durable_backend.open()
    store.add_signin("d" * 64, "alice", {"token_sha256": "t" * 64}, NOW + timedelta(hours=1))
    assert durable_backend.sql("SELECT id_sha256, principal FROM signins") == [("d" * 64, "alice")]


def test_sessions_are_listed_by_stop_reason_newest_first(store: Any) -> None:
    reasons = ("end_turn", "awaiting_approval", "budget_stop")
    for i in range(12):
        record = {"id": f"s{i:05d}", "agent": "desk", "principal": "alice", "phase": "explore",
                  "created": f"2026-11-24T10:00:{i:02d}.000Z", "status": "idle"}
        if i % 4 == 3:
            record["harness"] = {"stop_reason": reasons[i % 3]}  # only the harness state says why it stopped
        else:
            record["stop_reason"] = reasons[i % 3]
        store.put_session(record)
    waiting = store.query_sessions(stop_reason="awaiting_approval")
    assert [s["id"] for s in waiting] == [f"s{i:05d}" for i in range(11, -1, -1) if i % 3 == 1]
    assert all(s["stop_reason"] == "awaiting_approval" for s in waiting)
    first = store.query_sessions(stop_reason="end_turn", limit=2)
    rest = store.query_sessions(stop_reason="end_turn", before=(first[-1]["created"], first[-1]["id"]))
    assert [s["id"] for s in first + rest] == ["s00009", "s00006", "s00003", "s00000"]
    assert store.query_sessions(stop_reason="timeout") == []


def test_the_listing_by_stop_reason_uses_its_index(durable_backend: Backend) -> None:
    durable_backend.open()
    query = ("SELECT id FROM sessions WHERE stop_reason = ? AND (created, id) < (?, ?) "
             "ORDER BY created DESC, id DESC LIMIT 50")
    params = ("end_turn", "2027", "x")
    if durable_backend.kind == "sqlite":
        plan = durable_backend.sql("EXPLAIN QUERY PLAN " + query, params)
    else:
        import psycopg

        with psycopg.connect(durable_backend.url, autocommit=True) as conn:
            conn.execute("SET enable_seqscan = off")
            plan = conn.execute("EXPLAIN " + query.replace("?", "%s"), params).fetchall()
    assert "sessions_stop_reason_newest" in " ".join(str(row) for row in plan)
