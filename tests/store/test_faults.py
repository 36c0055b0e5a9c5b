"""The store's faults through the kernel: a store that cannot be written blocks the call before the tool runs."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from corral import Blocked, Governor
from corral.errors import StoreError
from corral.store.audit import verify_chain
from corral.store.sqlite import SQLiteStore


def test_a_locked_sqlite_database_blocks_the_call_before_the_tool_runs(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    ran: list[str] = []
    gov = Governor(agent="desk", budget=1.0, store=SQLiteStore(url, timeout=0.1), phases=False)
    gov.register("priced_read", lambda: ran.append("read"), effect="read", cost=0.01)
    gov.register("wipe", lambda: ran.append("wipe"), effect="irreversible")
    s = gov.session("alice")
    s.call("priced_read")
    locker = sqlite3.connect(str(tmp_path / "locked.db"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Blocked) as refused:
            s.call("priced_read")  # the reservation cannot be written
        assert "locked" in refused.value.reason and "budget ledger" in refused.value.reason
        assert refused.value.trace.decision == "blocked"
        with pytest.raises(Blocked) as refused:
            s.call("wipe")  # the decision cannot be made durable
        assert "locked" in refused.value.reason
        assert ran == ["read"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    s.call("wipe")
    assert ran == ["read", "wipe"]
    assert s.budget.spent == pytest.approx(0.01) and s.budget.reserved == 0
    gov.close()


def test_a_locked_sqlite_database_is_a_store_error_with_its_cause(tmp_path: Any) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/x.db?timeout=0.05")
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="database is locked") as caught:
            store.append("s1", {"id": "r1"})
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StoreError, match="reserve failed"):
            store.reserve([("agent:a", Decimal(1))], Decimal("0.1"), datetime.now(UTC))
        store.append("s1", {"id": "r2"}, durable=False)  # a read record waits in memory meanwhile
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert [r["id"] for r in store.records("s1")] == ["r2"]
    store.close()


def _kill_connections(pg_url: str) -> int:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
    return len(rows)


def test_a_killed_postgres_connection_never_lets_a_tool_run_undecided(pg_url: str) -> None:
    ran: list[str] = []
    gov = Governor(agent="desk", budget=1.0, store=pg_url, phases=False)
    gov.register("priced_read", lambda: ran.append("read"), effect="read", cost=0.01)
    gov.register("wipe", lambda: ran.append("wipe"), effect="irreversible")
    s = gov.session("alice")
    s.call("priced_read")
    s.call("wipe")
    outcomes = []
    for tool in ("wipe", "priced_read", "wipe", "priced_read"):
        assert _kill_connections(pg_url) >= 1
        before = len(ran)
        try:
            s.call(tool)
        except Blocked as exc:
            outcomes.append("blocked")
            assert len(ran) == before, "a blocked call must not have run"
            assert "PostgreSQL store" in exc.reason
        else:
            outcomes.append("ran")
            assert len(ran) == before + 1
    s.call("wipe")  # the store has recovered: fresh pooled connections
    records = gov.store.records(s.id)
    assert verify_chain(records, gov.store.head(s.id))[0]
    wipes = [r for r in records if r.get("tool") == "wipe" and r.get("kind") == "call"]
    assert len([r for r in wipes if r["decision"] == "allowed"]) == ran.count("wipe")  # each ran one decided
    assert outcomes == ["ran"] * 4  # a dropped connection is not lent, or its unstarted work runs again
    gov.close()


def test_a_killed_postgres_connection_under_the_store(pg_url: str) -> None:
    from corral.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    store.append("s1", {"id": "r1"})
    _kill_connections(pg_url)
    store.append("s1", {"id": "r2"})
    store.append("s1", {"id": "r3"}, durable=False)
    _kill_connections(pg_url)
    assert [r["id"] for r in store.records("s1")] == ["r1", "r2", "r3"]
    store.close()
