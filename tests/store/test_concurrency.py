"""Several processes on one store: the budget is never overspent and every chain stays one chain."""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any

from corral.store.audit import verify_chain

from . import workers

PROCESSES = 4


def _race(target: Any, args_for: Any) -> list[tuple[str, Any, float]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(n), barrier, results)) for n in range(PROCESSES)]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    errors = [r for r in out if r[0] != "ok"]
    assert not errors, errors
    return out


def test_processes_racing_for_one_budget_never_overspend(durable_backend: Any) -> None:
    store = durable_backend.open()  # migrate once, before the race
    out = _race(workers.reserve, lambda n: (durable_backend.url, 40, "1.00", "0.01"))
    granted = sum(r[1] for r in out)
    assert granted == 100  # 4 × 40 attempts of 0.01 on a 1.00 budget: exactly the ones that fit
    assert store.usage(["agent:race", "tenant:race"]) == [(Decimal(0), Decimal("1.00"))] * 2
    assert len(durable_backend.sql("SELECT id FROM reservations")) == 100


def test_processes_extending_one_chain_keep_it_one_chain(durable_backend: Any) -> None:
    store = durable_backend.open()
    _race(workers.append, lambda n: (durable_backend.url, "shared", n, 30))
    records = store.records("shared")
    assert len(records) == PROCESSES * 30
    assert verify_chain(records, store.head("shared")) == (True, None, "intact")
    for n in range(PROCESSES):  # within a process, chain order is call order
        assert [r["i"] for r in records if r["worker"] == n] == list(range(30))


def test_buffered_reads_are_written_at_exit(durable_backend: Any) -> None:
    """A process that never closes its store still writes its buffered read records when it exits."""
    import subprocess
    import sys

    durable_backend.open()
    kind = "SQLiteStore" if durable_backend.kind == "sqlite" else "PostgresStore"
    module = "sqlite" if durable_backend.kind == "sqlite" else "postgres"
    script = (
        f"from corral.store.{module} import {kind}\n"
        f"store = {kind}({durable_backend.url!r}, flush_interval=3600)\n"
        "for i in range(3):\n"
        "    store.append('exiting', {'id': f'r{i}'}, durable=False)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    store = durable_backend.open()
    assert [r["id"] for r in store.records("exiting")] == ["r0", "r1", "r2"]
    assert verify_chain(store.records("exiting"), store.head("exiting"))[0]
