"""Durable stores: what governance costs when its records must be on disk before a call may run.

The baselines are one single-row commit — SQLite in WAL with ``synchronous=FULL``, and PostgreSQL — the
floor for anything that is durable when it returns. A governed write (a reversible tool via ``tx.call``
in commit, with a budget, so it reserves and settles) is two store batches of one commit each: the
reservation, the decision and the INTENT before the tool runs; the settlement, DONE and the outcome
after. A governed read without a cost commits nothing of its own: its trace is group-committed. The
ledger rows time four spawned processes reserving on one agent budget, all at once.

PostgreSQL is ``CORRAL_BENCH_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``), in a
schema of its own that is dropped afterwards. Where no server answers, its rows are skipped with a note —
unless ``CI=true``, where that is an error and the run fails.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.cases import READ_CALL, build_governor, governed_calls
from benchmarks.policies import FEW, corral_text
from benchmarks.registry import Run, Skip, Target, Versus, case
from benchmarks.timing import Stats, sample, sample_batched

DURABLE = "durable stores"
SQLITE_COMMIT = "SQLite commit, synchronous=FULL (one row, WAL)"
POSTGRES_COMMIT = "PostgreSQL commit (one row)"
WRITE_TOOL = "update_order"
PROCESSES = 4
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

# the targets of the kernel-seams issue: the two synchronous commits DESIGN §7-§8 need, and little besides
SQLITE_WRITE = Target("<=", 2.2, "a durable write on SQLite within 2.2× of one synchronous=FULL commit")
POSTGRES_WRITE = Target("<=", 3.0, "a durable write on PostgreSQL within 3× of one PostgreSQL commit")
GROUP_READ = Target("<=", 1.5, "a group-committed read within 1.5× of the in-memory call")


# ------------------------------------------------------------------------------------------ tools


def update_order(order_id: str) -> dict[str, Any]:
    """The governed write: trivial, so what is timed is governance and the store."""
    return {"order_id": order_id, "status": "updated"}


def restore_order(call: Any) -> None:
    """Its compensation (never run here: every benchmark transaction stays open)."""


# -------------------------------------------------------------------------------------- how much


def _writes(run: Run) -> int:
    """Durable calls per row and round: a tenth of the in-memory rows' (each costs a disk flush or two)."""
    return max(20, run.mode.iterations // 10)


def _warmup(run: Run) -> int:
    return max(5, _writes(run) // 5)


def _per_process(run: Run) -> int:
    return max(25, run.mode.iterations // 20)


# -------------------------------------------------------------------------------------- fixtures


def _folder(run: Run) -> Path:
    return run.shared("durable-folder", lambda: Path(tempfile.mkdtemp(prefix="corral-bench-")), close=shutil.rmtree)


@dataclass
class _Postgres:
    """This run's PostgreSQL: a URL into a fresh schema, or why there is none."""

    admin: str
    url: str | None = None
    schema: str | None = None
    why: str | None = None


def _connect_postgres() -> _Postgres:
    from corral.store.urls import redact_url

    admin = os.environ.get("CORRAL_BENCH_POSTGRES", DEFAULT_POSTGRES)
    try:
        import psycopg

        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except Exception as exc:
        why = f"PostgreSQL not reachable at {redact_url(admin)} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI", "").lower() == "true":
            raise RuntimeError(f"{why}; with CI=true the PostgreSQL rows must run") from None
        return _Postgres(admin, why=why + "; set CORRAL_BENCH_POSTGRES to measure it")
    schema = f"corral_bench_{secrets.token_hex(4)}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    joiner = "&" if "?" in admin else "?"
    return _Postgres(admin, f"{admin}{joiner}options={quote(f'-csearch_path={schema}')}", schema)


def _drop_schema(pg: _Postgres) -> None:
    if pg.schema is None:
        return
    import psycopg

    with psycopg.connect(pg.admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP SCHEMA "{pg.schema}" CASCADE')


def _url(run: Run, kind: str) -> str:
    """The store URL of this group's database; for PostgreSQL, ``Skip`` when there is no server."""
    if kind == "sqlite":
        return f"sqlite:///{_folder(run)}/corral.db"
    pg = run.shared("durable-postgres", _connect_postgres, close=_drop_schema)
    if pg.url is None:
        raise Skip(pg.why)
    return pg.url


def _close(gov: Any) -> None:
    gov.close()


def _reader(run: Run, kind: str) -> Any:
    """The in-memory read row's governor (the same rules, no budget), on a durable store."""
    url = _url(run, kind)
    return run.shared(f"durable-{kind}-reader", lambda: build_governor(FEW, store=url), close=_close)


def _writer(run: Run, kind: str) -> Any:
    """A governor with an agent budget and a priced reversible tool, so a write reserves and settles."""
    url = _url(run, kind)

    def build() -> Any:
        from corral import Governor

        gov = Governor(agent="bench-writes", rules=corral_text(FEW), budget={"agent": 1_000_000}, store=url)
        gov.register(WRITE_TOOL, update_order, effect="reversible", compensate=restore_order, cost=0.0001)
        return gov

    return run.shared(f"durable-{kind}-writer", build, close=_close)


# --------------------------------------------------------------------------------- measurements


def _commit_sqlite(run: Run) -> list[float]:
    """One row inserted and committed on its own, as SQLite does a single statement outside BEGIN."""
    conn = sqlite3.connect(_folder(run) / "commit.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS commits (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
        doc = '{"decision":"allowed","tool":"update_order"}'
        return run.sample(lambda: conn.execute("INSERT INTO commits (doc) VALUES (?)", (doc,)),
                          _writes(run) * 2, warmup=_warmup(run))
    finally:
        conn.close()


def _commit_postgres(run: Run) -> list[float]:
    import psycopg

    with psycopg.connect(_url(run, "postgres"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS commits (id BIGSERIAL PRIMARY KEY, doc TEXT NOT NULL)")
        doc = '{"decision":"allowed","tool":"update_order"}'
        return run.sample(lambda: conn.execute("INSERT INTO commits (doc) VALUES (%s)", (doc,)),
                          _writes(run) * 2, warmup=_warmup(run))


def _governed_writes(run: Run, kind: str) -> list[float]:
    """``tx.call("update_order", order_id="A1")`` in an open commit block, a fresh session every batch;
    measured once per round and shared with the overhead row."""
    box = run.shared(f"durable-{kind}-write-samples", dict)
    if box.get("round") == run.round:
        return box["samples"]
    gov = _writer(run, kind)
    probe = gov.session(principal="alice", roles=["analyst"])
    probe.back_to("decide")
    probe.begin_commit().call(WRITE_TOOL, order_id="A1")
    last = probe.last_trace
    if last.decision != "allowed" or not last.budget or not last.outcome or not last.outcome["cost"]:
        run.problem(f"the timed write was {last.decision} (budget {last.budget}), expected allowed and priced")

    def fresh() -> Any:
        s = gov.session(principal="alice", roles=["analyst"])
        s.back_to("decide")
        call = s.begin_commit().call
        return lambda: call(WRITE_TOOL, order_id="A1")

    count = _writes(run)
    box["samples"] = sample_batched(fresh, count, batch=min(count, run.mode.session_batch), warmup=_warmup(run))
    box["round"] = run.round
    return box["samples"]


def _overhead(run: Run, kind: str) -> list[float]:
    """The governed write's samples less the raw call's p50: what governance (and its store) adds."""
    writes = _governed_writes(run, kind)
    raw = Stats.of(sample(lambda: update_order(order_id="A1"), 50, inner=run.mode.raw_inner, warmup=1)).p50
    return [w - raw for w in writes]


def reserve_in_a_race(url: str, worker: int, count: int, scope: str, barrier: Any, results: Any) -> None:
    """One of the racing processes: ``count`` reservations on the shared agent scope (and its own session
    scope), each its own transaction; reports when it started and when each one was granted."""
    from datetime import UTC, datetime, timedelta

    from corral.store import open_store

    try:
        store = open_store(url)
        scopes = [(f"session:race-{worker}", Decimal(1_000_000)), (scope, Decimal(1_000_000))]
        expires = datetime.now(UTC) + timedelta(hours=1)
        store.usage([scope])  # connected before the start line
        barrier.wait(timeout=60)
        started = time.perf_counter_ns()
        done = []
        for _ in range(count):
            if store.reserve(scopes, Decimal("0.01"), expires) is None:
                raise RuntimeError("a reservation did not fit a budget sized for all of them")
            done.append(time.perf_counter_ns())
        store.close()
        results.put(("ok", started, done))
    except BaseException as exc:
        results.put(("error", repr(exc), []))


def _race(run: Run, kind: str) -> list[float]:
    """Four spawned processes reserve at once on one agent budget. The samples are the gaps between
    successive grants, all processes together: their mean is the wall time per reservation, so the
    row's ops/s is reservations per second for the four together."""
    url = _url(run, kind)
    from corral.store import open_store

    open_store(url).close()  # create the schema before the processes race to
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    scope = f"agent:bench-race-{secrets.token_hex(4)}"
    count = _per_process(run)
    procs = [ctx.Process(target=reserve_in_a_race, args=(url, n, count, scope, barrier, results), daemon=True)
             for n in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    failed = [detail for status, detail, _ in out if status != "ok"]
    if failed:
        raise RuntimeError(f"a racing process failed: {failed[0]}")
    start = min(started for _, started, _ in out)
    grants = sorted(t for _, _, done in out for t in done)
    per_process = [(done[-1] - started) / len(done) for _, started, done in out]
    run.note(
        f"{kind}: {PROCESSES} processes × {count} reservations on one agent budget; each process "
        f"{sum(per_process) / len(per_process) / 1e3:,.0f} µs per reservation on average"
    )
    return [b - a for a, b in zip([start, *grants[:-1]], grants, strict=True)]


# ------------------------------------------------------------------------------------------ rows

_MODES = ("full", "quick")  # the test suite's tiny mode leaves the disks and the servers alone


def _register() -> None:
    for kind, label, commit in (("sqlite", "SQLite", SQLITE_COMMIT), ("postgres", "PostgreSQL", POSTGRES_COMMIT)):
        group = f"durable {kind}"
        baseline = _commit_sqlite if kind == "sqlite" else _commit_postgres
        case(commit, section=DURABLE, modes=_MODES, group=group)(baseline)
        case(f"governed read call, {label} store (group commit)", section=DURABLE, modes=_MODES, group=group,
             versus=[Versus(READ_CALL, GROUP_READ)])(
            lambda run, kind=kind: governed_calls(run, _reader(run, kind))
        )
        case(f"governed write call, {label} store (tx.call, reserve + settle)", section=DURABLE, modes=_MODES,
             group=group, versus=[Versus(commit, None if kind == "sqlite" else POSTGRES_WRITE)])(
            lambda run, kind=kind: _governed_writes(run, kind)
        )
        if kind == "sqlite":
            case(f"durable write governance overhead, {label} (governed − raw call)", section=DURABLE,
                 modes=_MODES, group=group, versus=[Versus(commit, SQLITE_WRITE)])(
                lambda run, kind=kind: _overhead(run, kind)
            )
        case(f"reservations, {PROCESSES} processes on one agent budget, {label} (ops/s: all together)",
             section=DURABLE, modes=_MODES, group=group)(lambda run, kind=kind: _race(run, kind))


_register()
