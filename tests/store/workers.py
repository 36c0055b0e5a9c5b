"""Work for the processes the concurrency tests spawn (a module of its own, so a child imports little)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from corral.store import open_store

EXPIRES = datetime(2099, 1, 1, tzinfo=UTC)


def reserve(url: str, attempts: int, limit: str, amount: str, barrier: Any, results: Any) -> None:
    """Race the other processes for one agent budget; report how many reservations were granted."""
    try:
        store = open_store(url)
        store.usage(["agent:race"])  # connect before the start line
        barrier.wait(timeout=30)
        started = time.perf_counter()
        granted = sum(
            store.reserve([("agent:race", Decimal(limit)), ("tenant:race", Decimal("1000"))], Decimal(amount),
                          EXPIRES) is not None
            for _ in range(attempts)
        )
        results.put(("ok", granted, time.perf_counter() - started))
        store.close()
    except BaseException as exc:
        results.put(("error", repr(exc), 0.0))


def append(url: str, session: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    """Extend one session's chain alongside the other processes; every third record is durable."""
    try:
        store = open_store(url)
        store.head(session)
        barrier.wait(timeout=30)
        for i in range(count):
            store.append(session, {"id": f"w{worker}-{i}", "worker": worker, "i": i}, durable=i % 3 == 0)
            if i % 7 == 0:
                time.sleep(0)  # let the others in
        store.close()
        results.put(("ok", worker, 0.0))
    except BaseException as exc:
        results.put(("error", repr(exc), 0.0))



def reserve_in_batches(url: str, worker: int, attempts: int, limit: str, amount: str, barrier: Any,
                       results: Any) -> None:
    """Race for one agent budget as the kernel does: each reservation in a batch with its decision record."""
    from corral.store import Append, Reserve

    try:
        store = open_store(url)
        store.usage(["agent:race"])
        barrier.wait(timeout=30)
        started = time.perf_counter()
        granted = 0
        for i in range(attempts):
            scopes = [("agent:race", Decimal(limit)), ("tenant:race", Decimal("1000"))]
            record = {"id": f"w{worker}-{i}", "worker": worker, "i": i}
            granted += store.batch([Reserve(scopes, Decimal(amount), EXPIRES), Append("race", record)]) is not None
        results.put(("ok", granted, time.perf_counter() - started))
        store.close()
    except BaseException as exc:
        results.put(("error", repr(exc), 0.0))
