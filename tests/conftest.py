"""Shared fixtures: a clock the tests move by hand, so time rules and expiry are deterministic; and
PostgreSQL, for every test that runs on it.

PostgreSQL: one throwaway database per test run (``corral_test_<random>``, dropped at the end) and one
schema per test inside it (``pg_url``). Where no server answers, tests that need it are skipped locally
and fail in CI (``CI=true``), so CI never passes by not testing PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

# real ``corral serve`` processes (serve, work, sqlite_url), for every test
pytest_plugins = ["tests.server.serving"]


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ADMIN_URL = os.environ.get("CORRAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
UNREACHABLE = f"PostgreSQL not reachable at {ADMIN_URL}; CI fails here instead of skipping"


def _admin_connect() -> Any:
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """The URL of this run's throwaway database, or None (with the reason recorded) when unreachable."""
    try:
        admin = _admin_connect()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{UNREACHABLE}: {exc}", pytrace=False)
        yield None
        return
    name = f"corral_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str | None) -> str:
    """A URL whose tables live in a schema of their own, so each test starts empty."""
    if pg_database is None:
        pytest.skip(UNREACHABLE)
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{pg_database}?options={quote(f'-csearch_path={schema}')}"
