"""``corral serve``: the decision point over HTTP, measured against real uvicorn processes.

Each ``/v1/check`` row starts ``corral serve`` (untimed) with a governance-only agent, then drives
``POST /v1/check`` for a read call (Claude Code's ``Read``) from ``CLIENTS`` keep-alive connections at
once, each its own session, and reports each request's latency; the rate all of them reached together
(decisions per second, wall clock) is printed under the table with the target (≥ 1,500/s with p99 under
20 ms on SQLite). The load generator shares the machine with the server, as a client on the same host
would. "two servers" splits the same load over two ``corral serve`` processes on one PostgreSQL.

The hook row is ``corral hook claude-code --server URL`` as Claude Code runs it: a new process per event,
timed from spawn to its answer, against a running server (target ≤ 40 ms p50).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.registry import Run, Skip, Versus, case
from benchmarks.timing import Stats, process_env

SERVER = "corral serve"
CLIENTS = 8
RATE_TARGET = 1_500.0
P99_TARGET_MS = 20.0
HOOK_TARGET_MS = 40.0
CHECK_SQLITE_1 = "/v1/check read call, SQLite, 1 uvicorn worker"
CHECK_SQLITE_2 = "/v1/check read call, SQLite, 2 uvicorn workers"
CHECK_PG_1 = "/v1/check read call, PostgreSQL, 1 uvicorn worker"
CHECK_PG_2 = "/v1/check read call, PostgreSQL, 2 uvicorn workers"
CHECK_PG_TWO = "/v1/check read call, two servers on one PostgreSQL"
HOOK_SERVER = "Claude Code hook via --server: process start to decision"
PYTHON_START = "python -c pass (process start floor)"


def _requests(run: Run) -> int:
    """Timed checks per row and round, over all connections."""
    return {"full": 6_000, "quick": 1_000}.get(run.mode.name, 80)


def _hook_runs(run: Run) -> int:
    return {"full": 30, "quick": 15}.get(run.mode.name, 3)


# ------------------------------------------------------------------------------------------ fixtures


def _folder(run: Run) -> Path:
    return run.shared("server-folder", lambda: Path(tempfile.mkdtemp(prefix="corral-bench-serve-")),
                      close=shutil.rmtree)


def _agent(folder: Path) -> Path:
    (folder / "gate.rules").write_text(
        'BLOCK Bash WHEN arg.command MATCHES "*rm -rf*" BECAUSE "no recursive deletes"\n'
        'FLAG Read WHEN arg.file_path MATCHES "*.env"\n'
        "BLOCK Read WHEN arg.file_path MATCHES \"/etc/shadow*\"\n", encoding="utf-8")
    path = folder / "gate.yaml"
    path.write_text("name: gate\ngovernance: {budget: {session: 1000}, rules: gate.rules}\n", encoding="utf-8")
    return path


class _Postgres:
    def __init__(self) -> None:
        self.admin = os.environ.get("CORRAL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
        self.schema: str | None = None
        self.url: str | None = None
        self.why: str | None = None
        try:
            import psycopg

            with psycopg.connect(self.admin, autocommit=True, connect_timeout=3) as conn:
                self.schema = f"corral_bench_serve_{secrets.token_hex(4)}"
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
        except Exception as exc:
            self.why = f"PostgreSQL not reachable ({str(exc).strip().splitlines()[0]})"
            if os.environ.get("CI", "").lower() == "true":
                raise RuntimeError(f"{self.why}; with CI=true the PostgreSQL rows must run") from None
            return
        joiner = "&" if "?" in self.admin else "?"
        self.url = f"{self.admin}{joiner}options={quote(f'-csearch_path={self.schema}')}"

    def close(self) -> None:
        if self.schema is not None:
            import psycopg

            with psycopg.connect(self.admin, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')


def _store(run: Run, kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{_folder(run)}/serve-{run.round}-{secrets.token_hex(3)}.db"
    pg = run.shared("server-postgres", _Postgres, close=lambda p: p.close())
    if pg.url is None:
        raise Skip(pg.why)
    return pg.url


def _token(store: str) -> str:
    from corral.server.identity import add_principal
    from corral.store import open_store

    st = open_store(store)
    try:
        return add_principal(st, f"bench-{secrets.token_hex(4)}", ["user"])[1]
    finally:
        st.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """``corral serve`` in its own process, stopped by its pid."""

    def __init__(self, folder: Path, store: str, workers: int) -> None:
        self.port = _free_port()
        self.log = folder / f"serve-{self.port}.log"
        script = Path(sys.executable).with_name("corral")
        command = [str(script), "serve", str(_agent(folder)), "--store", store, "--port", str(self.port),
                   "--workers", str(workers)]
        self.process = subprocess.Popen(command, cwd=folder, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self._up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"corral serve did not start: {self.log.read_text()[-800:]}")
            time.sleep(0.1)

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


# ------------------------------------------------------------------------------------------ the load


async def _connection(port: int, token: str, session: str, count: int, out: list[int], problems: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /v1/check HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n")
    try:
        for i in range(count):
            body = json.dumps({"agent": "gate", "session": session, "tool": "Read",
                               "args": {"file_path": f"/src/file{i % 50}.py"}}).encode()
            request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter_ns()
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in header.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            payload = await reader.readexactly(length)
            out.append(time.perf_counter_ns() - t0)
            if not header.startswith(b"HTTP/1.1 200") or b'"decision":"allowed"' not in payload:
                problems.append(f"{header.split(b' ', 2)[1].decode()} {payload[:200].decode(errors='replace')}")
                return
    finally:
        writer.close()


def _drive(ports: list[int], token: str, total: int) -> tuple[list[float], float]:
    """``total`` checks from ``CLIENTS`` connections spread over ``ports``: (latencies ns, decisions/s)."""
    latencies: list[int] = []
    problems: list[str] = []
    per = max(1, total // CLIENTS)
    tag = secrets.token_hex(3)

    async def main() -> float:
        warm = [_connection(ports[i % len(ports)], token, f"bench-{tag}-{i}", 20, [], problems)
                for i in range(CLIENTS)]
        await asyncio.gather(*warm)  # sessions made and cached, connections warm
        began = time.perf_counter()
        await asyncio.gather(*(_connection(ports[i % len(ports)], token, f"bench-{tag}-{i}", per, latencies,
                                           problems) for i in range(CLIENTS)))
        return time.perf_counter() - began

    wall = asyncio.run(main())
    if problems:
        raise RuntimeError(f"/v1/check did not allow the read: {problems[0]}")
    return [float(x) for x in latencies], len(latencies) / wall


def _check_row(run: Run, name: str, kind: str, workers: int, servers: int = 1) -> list[float]:
    folder = _folder(run)
    store = _store(run, kind)
    token = _token(store)
    started = [_Server(folder, store, workers) for _ in range(servers)]
    try:
        samples, rate = _drive([s.port for s in started], token, _requests(run))
    finally:
        for server in started:
            server.stop()
    stats = Stats.of(samples)
    met = rate >= RATE_TARGET and stats.p99 / 1e6 < P99_TARGET_MS
    run.note(f"{name}: {rate:,.0f} decisions/s from {CLIENTS} connections, p50 {stats.p50 / 1e6:.1f} ms, "
             f"p99 {stats.p99 / 1e6:.1f} ms (target ≥ {RATE_TARGET:,.0f}/s with p99 < {P99_TARGET_MS:g} ms: "
             f"{'met' if met else 'NOT met'}; reported, not enforced)")
    return samples


@case(CHECK_SQLITE_1, section=SERVER, group="serve-sqlite")
def check_sqlite_one(run: Run) -> list[float]:
    return _check_row(run, CHECK_SQLITE_1, "sqlite", 1)


@case(CHECK_SQLITE_2, section=SERVER, group="serve-sqlite", versus=[Versus(CHECK_SQLITE_1)])
def check_sqlite_two(run: Run) -> list[float]:
    return _check_row(run, CHECK_SQLITE_2, "sqlite", 2)


@case(CHECK_PG_1, section=SERVER, group="serve-postgres")
def check_postgres_one(run: Run) -> list[float]:
    return _check_row(run, CHECK_PG_1, "postgres", 1)


@case(CHECK_PG_2, section=SERVER, group="serve-postgres", versus=[Versus(CHECK_PG_1)])
def check_postgres_two(run: Run) -> list[float]:
    return _check_row(run, CHECK_PG_2, "postgres", 2)


@case(CHECK_PG_TWO, section=SERVER, group="serve-postgres", versus=[Versus(CHECK_PG_1)])
def check_postgres_two_servers(run: Run) -> list[float]:
    return _check_row(run, CHECK_PG_TWO, "postgres", 1, servers=2)


# ------------------------------------------------------------------------------------------ the hook


@case(PYTHON_START + " ", section=SERVER, group="serve-hook")
def python_start(run: Run) -> list[float]:
    return _spawn([sys.executable, "-c", "pass"], b"", _hook_runs(run), _folder(run), {})


def _spawn(command: list[str], stdin: bytes, count: int, cwd: Path, env: dict[str, str],
           check: Any = None) -> list[float]:
    out = []
    environment = process_env(env)
    for i in range(2 + count):
        t0 = time.perf_counter_ns()
        done = subprocess.run(command, input=stdin, capture_output=True, cwd=cwd, env=environment, timeout=60)
        elapsed = time.perf_counter_ns() - t0
        if check is not None:
            check(done)
        if i >= 2:
            out.append(float(elapsed))
    return out


@case(HOOK_SERVER, section=SERVER, group="serve-hook", versus=[Versus(PYTHON_START + " ")])
def hook_via_server(run: Run) -> list[float]:
    folder = _folder(run)
    store = _store(run, "sqlite")
    token = _token(store)
    server = run.shared("serve-hook-server", lambda: _Server(folder, store, 1), close=lambda s: s.stop())
    event = json.dumps({"session_id": f"bench-hook-{secrets.token_hex(3)}", "cwd": str(folder),
                        "hook_event_name": "PreToolUse", "tool_name": "Read",
                        "tool_input": {"file_path": "README.md"}, "tool_use_id": "toolu_bench"}).encode()

    def allowed(done: subprocess.CompletedProcess[bytes]) -> None:
        answer = json.loads(done.stdout or b"{}").get("hookSpecificOutput", {}) if done.returncode == 0 else {}
        if answer.get("permissionDecision") != "allow":
            raise RuntimeError(f"the hook did not allow Read (exit {done.returncode}): {done.stderr.decode()[-300:]}")

    command = [str(Path(sys.executable).with_name("corral")), "hook", "claude-code", "--server",
               f"http://127.0.0.1:{server.port}", "--agent", "gate"]
    samples = _spawn(command, event, _hook_runs(run), folder,
                     {"CORRAL_TOKEN": token, "CORRAL_CLAUDE_CODE_DIR": str(folder / "hook")}, check=allowed)
    p50 = Stats.of(samples).p50 / 1e6
    run.note(f"{HOOK_SERVER}: p50 {p50:,.1f} ms; target ≤ {HOOK_TARGET_MS:g} ms p50: "
             f"{'met' if p50 <= HOOK_TARGET_MS else 'NOT met'} (reported, not enforced)")
    return samples


# ------------------------------------------------------------------------------------ session listing

LIST_SQLITE = "sessions page (50 of 10,000, newest first, one principal's), SQLite"
LIST_PG = "sessions page (50 of 10,000, newest first, one principal's), PostgreSQL"
LIST_TARGET_MS = 300.0


def _listing_store(run: Run, kind: str) -> Any:
    from corral.store import open_store

    def build() -> Any:
        store = open_store(_store(run, kind))
        for i in range(10_000):
            store.put_session({"id": f"s{i:05d}", "agent": "desk" if i % 2 else "mail",
                               "principal": f"user{i % 20}", "roles": ["user"], "phase": "explore",
                               "status": "idle", "stop_reason": "end_turn",
                               "created": f"2026-11-{1 + i // 1000:02d}T10:{(i // 60) % 60:02d}:{i % 60:02d}.000Z",
                               "harness": {"stop_reason": "end_turn", "transcript": [{"role": "user",
                                                                                      "content": "x" * 200}] * 6}})
        return store

    return run.shared(f"listing-{kind}", build, close=lambda s: s.close())


def _listing(run: Run, kind: str, name: str) -> list[float]:
    from corral.server.identity import Principal
    from corral.server.queries import list_sessions

    store = _listing_store(run, kind)
    alice, auditor = Principal("user7", ("user",)), Principal("carol", ("auditor",))
    pages = [None]
    first = list_sessions(store, auditor, limit=50)
    pages.append(first["next"])

    def page() -> object:
        list_sessions(store, alice, limit=50)
        return list_sessions(store, auditor, agent="desk", limit=50, after=pages[-1])

    samples = run.sample(page, count=min(run.mode.iterations, 300), warmup=10)
    p99 = Stats.of(samples).p99 / 1e6
    run.note(f"{name}: two pages per sample, p99 {p99:.1f} ms; target < {LIST_TARGET_MS:g} ms: "
             f"{'met' if p99 < LIST_TARGET_MS else 'NOT met'}")
    return samples


@case(LIST_SQLITE, section=SERVER, group="serve-listing")
def listing_sqlite(run: Run) -> list[float]:
    return _listing(run, "sqlite", LIST_SQLITE)


@case(LIST_PG, section=SERVER, group="serve-listing")
def listing_postgres(run: Run) -> list[float]:
    return _listing(run, "postgres", LIST_PG)
