"""Schema versions, bad URLs and bad rows: each is a clear error, never a half-migrated database or a crash."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from corral.errors import ConfigError, StoreError
from corral.store import migrations as mig
from corral.store import open_store
from corral.store.sqlite import SQLiteStore


def test_a_fresh_database_gets_the_current_version(durable_backend: Any) -> None:
    store = durable_backend.open()
    assert store.schema_version() == mig.CURRENT_VERSION
    store.close()
    assert durable_backend.open().schema_version() == mig.CURRENT_VERSION  # reopening changes nothing
    rows = durable_backend.sql("SELECT version, description FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in mig.MIGRATIONS]


def test_a_newer_database_is_refused(durable_backend: Any) -> None:
    durable_backend.open().close()
    newer = mig.CURRENT_VERSION + 41
    durable_backend.sql("INSERT INTO schema_version (version, description) VALUES (?, ?)"
                        if durable_backend.kind == "postgres" else
                        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, 'now')",
                        (newer, "from the future"))
    with pytest.raises(StoreError) as caught:
        durable_backend.open()
    message = str(caught.value)
    assert f"schema version {newer}" in message and f"version {mig.CURRENT_VERSION}" in message


def test_a_failing_migration_leaves_the_last_complete_version(
    durable_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable_backend.open().close()
    broken = mig.Migration(
        mig.CURRENT_VERSION + 1,
        "a migration that fails half way",
        ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"),
        ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"),
    )
    monkeypatch.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, broken))
    target = "corral.store.postgres" if durable_backend.kind == "postgres" else "corral.store.sqlite"
    monkeypatch.setattr(f"{target}.CURRENT_VERSION", broken.version)
    with pytest.raises(StoreError, match=r"migration \d+ \(a migration that fails half way\) failed"):
        durable_backend.open()
    monkeypatch.undo()
    store = durable_backend.open()
    assert store.schema_version() == mig.CURRENT_VERSION
    exists = (
        durable_backend.sql("SELECT to_regclass('half_done')")[0][0]
        if durable_backend.kind == "postgres"
        else durable_backend.sql("SELECT name FROM sqlite_master WHERE name = 'half_done'")
    )
    assert not exists  # the migration's first statement was rolled back with it


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in mig.MIGRATIONS] == list(range(1, len(mig.MIGRATIONS) + 1))
    assert all(m.sqlite or m.postgres for m in mig.MIGRATIONS)
    # only version 6 leaves SQLite alone (a PostgreSQL function; SQLite's writes check in-process)
    assert [m.version for m in mig.MIGRATIONS if not (m.sqlite and m.postgres)] == [6]


# -------------------------------------------------------------------------------------------- URLs


def test_sqlite_urls_relative_and_absolute(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///nested/dir/rel.db")
    assert relative.path == str(tmp_path / "nested" / "dir" / "rel.db") and os.path.exists(relative.path)
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.path == str(tmp_path / "abs.db")
    assert open_store(f"sqlite:///{tmp_path}/t.db?timeout=0.25").timeout == 0.25
    monkeypatch.chdir("/")  # a relative store stays where it was opened
    relative.put_session({"id": "s1", "agent": "a"})
    assert os.path.getsize(tmp_path / "nested" / "dir" / "rel.db") > 0
    relative.close()
    absolute.close()


@pytest.mark.parametrize(("url", "why"), [
    ("sqlite://host/x.db", "three slashes"),
    ("sqlite:x.db", "three slashes"),
    ("sqlite:///", "no database file"),
    ("sqlite:///dir/", "no database file"),
    ("sqlite:///:memory:", "memory://"),
    ("sqlite:///x.db?mode=ro", "unknown option 'mode'"),
    ("sqlite:///x.db?timeout=soon", "timeout must be a number"),
    ("sqlite:///x.db?timeout=-1", "timeout must be a finite number"),
    ("postgresql://postgres@127.0.0.1:notaport/db", "port 'notaport' is not a number"),
    ("postgresql://postgres@127.0.0.1/db?bogus_option=1", "libpq cannot read it"),
    ("postgresql:/nohost", "expected postgresql://"),
    ("mysql://x/y", "unknown scheme 'mysql'"),
])
def test_a_bad_url_is_a_config_error_naming_it(url: str, why: str, tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    assert why in str(caught.value)
    assert url.split("?")[0].split("@")[-1] in str(caught.value)


def test_a_password_is_never_shown() -> None:
    from corral.store.urls import redact_url

    assert redact_url("postgresql://bob:hunter2@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact_url("postgresql://db/x?password=hunter2&sslmode=require") == (
        "postgresql://db/x?password=***&sslmode=require"
    )
    with pytest.raises(ConfigError) as caught:
        open_store("postgresql://bob:hunter2@127.0.0.1:notaport/x")
    assert "hunter2" not in str(caught.value) and "bob:***@" in str(caught.value)


def test_an_unreachable_server_is_a_store_error() -> None:
    from corral.store.postgres import PostgresStore

    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://nobody@127.0.0.1:1/x")
    assert "PostgreSQL store postgresql://nobody@127.0.0.1:1/x: connecting failed" in str(caught.value)


def test_a_file_that_is_not_a_database(tmp_path: Any) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a SQLite database, it is a shopping list: " * 100)
    with pytest.raises(StoreError, match="not a database"):
        SQLiteStore(f"sqlite:///{path}")


def test_a_directory_that_cannot_be_made(tmp_path: Any) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        SQLiteStore(f"sqlite:///{tmp_path}/file/sub/x.db")


# -------------------------------------------------------------------------------------- corrupted rows


def _corrupt(backend: Any, table: str, column: str, where: str, key: tuple[Any, ...]) -> None:
    backend.sql(f"UPDATE {table} SET {column} = ? WHERE {where}", ("{not json", *key))


def test_corrupted_rows_are_store_errors_naming_table_and_key(durable_backend: Any) -> None:
    store = durable_backend.open()
    store.put_session({"id": "s1", "agent": "a"})
    store.put_approval({"id": "a1", "binding": "b", "session": "s1", "status": "pending"})
    store.put_transaction({"id": "tx1", "state": "open"})
    store.log_step("tx1", {"status": "INTENT"})
    store.append("s1", {"id": "r1", "kind": "call"})
    _corrupt(durable_backend, "sessions", "doc", "id = ?", ("s1",))
    _corrupt(durable_backend, "approvals", "doc", "id = ?", ("a1",))
    _corrupt(durable_backend, "transactions", "doc", "id = ?", ("tx1",))
    _corrupt(durable_backend, "tx_steps", "entry", "tx_id = ?", ("tx1",))
    _corrupt(durable_backend, "audit", "record", "session_id = ?", ("s1",))
    cases = [
        (lambda: store.get_session("s1"), "'sessions', key 's1'"),
        (lambda: store.list_sessions(), "'sessions', key 's1'"),
        (lambda: store.get_approval("a1"), "'approvals', key 'a1'"),
        (lambda: store.find_approvals(binding="b"), "'approvals', key 'a1'"),
        (lambda: store.resolve_approval("a1", "pending", {"status": "used"}), "'approvals', key 'a1'"),
        (lambda: store.get_transaction("tx1"), "'transactions', key 'tx1'"),
        (lambda: store.transactions(["open"]), "'transactions', key 'tx1'"),
        (lambda: store.update_transaction("tx1", {"state": "committed"}), "'transactions', key 'tx1'"),
        (lambda: store.steps("tx1"), "'tx_steps', key 'tx1#1'"),
        (lambda: store.records("s1"), "'audit', key 's1#1'"),
        (lambda: store.chain_outline("s1"), "'audit', key 's1#1'"),
        (lambda: store.find_record("r1"), "'audit', key 's1#1'"),
    ]
    for call, where in cases:
        with pytest.raises(StoreError, match="corrupted row") as caught:
            call()
        assert where in str(caught.value)


def test_corrupted_amounts_are_store_errors(tmp_path: Any) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/x.db")
    rid = store.reserve([("agent:a", Decimal(1))], Decimal("0.5"), datetime(2030, 1, 1, tzinfo=UTC))
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("UPDATE budget_scopes SET spent = 'lots' WHERE key = 'agent:a'")
    conn.execute("UPDATE reservations SET scopes = 'oops' WHERE id = ?", (rid,))
    conn.close()
    with pytest.raises(StoreError, match="'budget_scopes', key 'agent:a'"):
        store.usage(["agent:a"])
    with pytest.raises(StoreError, match="'reservations', key '" + rid):
        store.settle(rid, Decimal(0))


def test_a_record_that_cannot_be_json_is_refused(durable_backend: Any) -> None:
    store = durable_backend.open()
    with pytest.raises(StoreError, match="cannot be stored as JSON"):
        store.append("s1", {"id": "r1", "text": "\ud800"})  # a lone surrogate is no UTF-8
    assert store.records("s1") == []
