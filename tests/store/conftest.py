"""Store fixtures: every store the protocol has, each in a fresh place per test.

PostgreSQL comes from ``pg_url`` (tests/conftest.py): a throwaway database per test run and one
schema per test inside it. Where no server answers, the PostgreSQL parameters are skipped locally and
fail in CI (``CI=true``), so CI never passes by not testing PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from corral.store.memory import MemoryStore
from tests.store.relay import relayed  # noqa: F401 - a fixture: the PostgreSQL tests through a relay


class Backend:
    """One store kind under test: opens stores on one place and reaches under them to tamper."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self._memory: MemoryStore | None = None  # made on first use, so a test may set the env first
        self._opened: list[Any] = []

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    @property
    def target(self) -> Any:
        """What ``Governor(store=...)`` takes: the URL, or the one in-memory store."""
        return self.open() if self.kind == "memory" else self.url

    def open(self, **options: Any) -> Any:
        """A store on this place: a new instance (a new connection pool) for the durable kinds."""
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore()
            return self._memory
        if self.kind == "sqlite":
            from corral.store.sqlite import SQLiteStore

            store = SQLiteStore(self.url, **options)
        else:
            from corral.store.postgres import PostgresStore

            store = PostgresStore(self.url, **options)
        self._opened.append(store)
        return store

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the database directly (``?`` placeholders), as an attacker or a bad disk would."""
        if self.kind == "sqlite":
            from corral.store.urls import parse_sqlite_url

            conn = sqlite3.connect(parse_sqlite_url(self.url).path, isolation_level=None, timeout=5)
            try:
                cur = conn.execute(statement, params)
                return cur.fetchall() if cur.description else []
            finally:
                conn.close()
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(statement.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        raise AssertionError("the memory store has no SQL")

    def close_all(self) -> None:
        for store in self._opened:
            try:
                store.close()
            except Exception:
                pass


def _backend(request: pytest.FixtureRequest, tmp_path: Any, kind: str) -> Iterator[Backend]:
    if kind == "memory":
        backend = Backend("memory", None)
    elif kind == "sqlite":
        backend = Backend("sqlite", f"sqlite:///{tmp_path}/corral.db")
    else:
        backend = Backend("postgres", request.getfixturevalue("pg_url"))
    yield backend
    backend.close_all()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    yield from _backend(request, tmp_path, request.param)


@pytest.fixture(params=["sqlite", "postgres"])
def durable_backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    yield from _backend(request, tmp_path, request.param)


@pytest.fixture
def store(backend: Backend) -> Any:
    return backend.open()
