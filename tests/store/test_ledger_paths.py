"""PostgreSQL's ledger checked by the server (one reservation or settlement, one round trip) and by the
client (the rows read first: several in one batch) decide exactly as the in-memory ledger does.

A property test (hypothesis): random reservations — one to three scopes, each with its limit, some with a
gate — and settlements, applied one by one, in pairs in one batch, and beside an audit record, to a
``MemoryStore`` and a ``PostgresStore``; every grant or refusal and every scope's usage must agree.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.store.memory import MemoryStore
from corral.store.protocol import Append, Reserve, Settle

LATER = datetime.now(UTC) + timedelta(days=1)
SCOPES = ("agent", "principal", "session")

money = st.integers(min_value=1, max_value=120).map(lambda cents: Decimal(cents) / 100)
limits = st.integers(min_value=50, max_value=200).map(lambda cents: Decimal(cents) / 100)
gates = st.sampled_from([None, Decimal("0.5"), Decimal("0.8"), Decimal("1")])
reserve = st.tuples(st.just("reserve"), st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3, unique=True),
                    money, limits, gates, st.sampled_from(["alone", "with a record", "paired"]))
settle = st.tuples(st.just("settle"), st.integers(min_value=0, max_value=30), money, st.booleans())
programs = st.lists(st.one_of(reserve, settle), min_size=1, max_size=14)


def _run(store: Any, prefix: str, program: list[tuple[Any, ...]]) -> list[Any]:
    """What each step answered, and every scope's usage after it."""
    seen: list[Any] = []
    granted: list[str] = []
    for step in program:
        if step[0] == "settle":
            _, pick, actual, in_batch = step
            if granted:
                rid = granted.pop(pick % len(granted))
                if in_batch:
                    store.batch([Settle(rid, actual), Append(f"{prefix}-s", {"id": secrets.token_hex(4)})])
                else:
                    store.settle(rid, actual)
            answer: Any = "settled"
        else:
            _, names, amount, limit, gate, how = step
            op = Reserve([(f"{prefix}:{name}", limit) for name in names], amount, LATER, gate=gate)
            if how == "alone":
                answers = [store.reserve(op.scopes, amount, LATER) if gate is None else _one(store.batch([op]))]
            elif how == "with a record":
                answers = [_one(store.batch([op, Append(f"{prefix}-s", {"id": secrets.token_hex(4)})]))]
            else:  # two in one batch: the client reads the rows first
                twin = Reserve(op.scopes, amount, LATER, gate=gate)
                out = store.batch([op, twin])
                answers = [None, None] if out is None else out
            granted.extend(rid for rid in answers if rid)
            answer = [bool(rid) for rid in answers]
        usage = store.usage([f"{prefix}:{name}" for name in SCOPES])
        seen.append((answer, [(spent.normalize(), reserved.normalize()) for spent, reserved in usage]))
    return seen


def _one(out: list[Any] | None) -> Any:
    return None if out is None else out[0]


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Any]:
    from corral.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    yield store
    store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=programs)
def test_the_server_checked_ledger_decides_as_the_in_memory_one(pg_store: Any, program: list[Any]) -> None:
    prefix = secrets.token_hex(5)  # a fresh set of scopes per example, in one database
    assert _run(pg_store, prefix, program) == _run(MemoryStore(), prefix, program)
