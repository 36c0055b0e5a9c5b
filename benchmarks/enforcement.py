"""Enforcement points: what governing another agent's tool calls adds, end to end, across processes.

The MCP rows time ``tools/call get_current_time`` with the official MCP SDK client (stdio), once
straight to ``mcp-server-time`` and once through ``corral mcp-proxy`` in front of the same server with a
SQLite store: the difference is what the proxy adds per call (a JSON-RPC hop, the governed call, its
trace on disk). Process start and the handshake are not timed.

The hook rows time ``corral hook claude-code`` as Claude Code runs it — a new process per event — from
the spawn to its answer for a ``PreToolUse`` ``Read``, next to a Python that loads ``json`` and ``sqlite3``
(what any hook reading an event and a store needs). Its targets (≤ 100 ms p50, and ≤ 3× that baseline)
and the proxy's (≤ 1 ms added per call at p50) are reported, never enforced.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.registry import Run, Skip, Target, Versus, case
from benchmarks.timing import Stats, process_env

ENFORCEMENT = "enforcement points"
MCP_DIRECT = "MCP tools/call, straight to mcp-server-time"
MCP_PROXIED = "MCP tools/call through corral mcp-proxy (SQLite store)"
PYTHON_START = 'python -c "import json, sqlite3" (process start floor)'
HOOK = "Claude Code hook: process start to decision (PreToolUse Read)"
HOOK_TARGET_MS = 100.0
HOOK_TARGET = Target("<=", 3.0, "the hook within 3× of a Python that loads json and sqlite3")
PROXY_TARGET_MS = 1.0  # added per tools/call at p50

TIME_SERVER = [sys.executable, "-m", "mcp_server_time"]
PROXY = [sys.executable, "-m", "corral.cli.mcp"]


# -------------------------------------------------------------------------------------- how much


def _mcp_calls(run: Run) -> int:
    """Timed ``tools/call``s per MCP row and round (each is a pipe round trip or two, ~1 ms)."""
    return {"full": 200, "quick": 150}.get(run.mode.name, 20)


def _hook_runs(run: Run) -> int:
    """Hook processes per row and round (each is a Python start, ~0.1 s)."""
    return {"full": 30, "quick": 20}.get(run.mode.name, 3)


def _folder(run: Run) -> Path:
    return run.shared("enforcement-folder", lambda: Path(tempfile.mkdtemp(prefix="corral-bench-")),
                      close=shutil.rmtree)


def _agent(folder: Path) -> Path:
    """An agent file with a budget, a rule and a SQLite store: what either point reads at start."""
    (folder / "bench.rules").write_text(
        'BLOCK get_current_time WHEN arg.timezone IS "Antarctica/Troll" BECAUSE "nobody lives there"\n'
        'BLOCK Bash WHEN arg.command MATCHES "*rm -rf*" BECAUSE "no recursive deletes"\n',
        encoding="utf-8",
    )
    path = folder / "agent.yaml"
    path.write_text(
        "name: bench-enforcement\n"
        "model: {provider: anthropic, id: unused}\n"
        "governance: {budget: 1000, rules: bench.rules}\n"
        f"store: sqlite:///{folder / 'corral.db'}\n",
        encoding="utf-8",
    )
    return path


# ------------------------------------------------------------------------------------------- MCP


def _time_calls(command: list[str], count: int, warmup: int, errlog: Path) -> list[float]:
    """Start the server (untimed), then ``count`` timed ``tools/call``s, in ns each."""
    try:
        from mcp import ClientSession, StdioServerParameters, stdio_client
    except ImportError:
        raise Skip("the mcp SDK is not installed") from None

    async def measure() -> list[float]:
        params = StdioServerParameters(command=command[0], args=command[1:])
        with errlog.open("w") as err:
            async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                args = {"timezone": "UTC"}
                for _ in range(warmup):
                    await client.call_tool("get_current_time", args)
                out = []
                clock = time.perf_counter_ns
                for _ in range(count):
                    t0 = clock()
                    result = await client.call_tool("get_current_time", args)
                    out.append(clock() - t0)
                    if result.is_error:
                        raise RuntimeError(f"get_current_time failed: {result.content}")
                return out

    return asyncio.run(measure())


def _has_time_server() -> None:
    import importlib.util

    if importlib.util.find_spec("mcp_server_time") is None or importlib.util.find_spec("mcp") is None:
        raise Skip("mcp-server-time (and the mcp SDK) are not installed: pip install mcp-server-time")


@case(MCP_DIRECT, section=ENFORCEMENT, group="mcp-proxy")
def mcp_direct(run: Run) -> list[float]:
    _has_time_server()
    samples = _time_calls(TIME_SERVER, _mcp_calls(run), max(5, _mcp_calls(run) // 10),
                          _folder(run) / "direct.log")
    run.shared("mcp-direct-samples", dict)[run.round] = samples
    return samples


@case(MCP_PROXIED, section=ENFORCEMENT, group="mcp-proxy", versus=[Versus(MCP_DIRECT)])
def mcp_proxied(run: Run) -> list[float]:
    _has_time_server()
    folder = _folder(run)
    agent = _agent(folder)
    command = [*PROXY, "--agent", str(agent), "--as", "bench", "--", *TIME_SERVER]
    samples = _time_calls(command, _mcp_calls(run), max(5, _mcp_calls(run) // 10), folder / "proxy.log")
    direct = run.shared("mcp-direct-samples", dict).get(run.round)
    if direct:
        added = _median(samples) - _median(direct)
        run.note(f"corral mcp-proxy adds {added / 1e6:,.2f} ms per tools/call at p50 "
                 f"({_median(samples) / 1e6:,.2f} ms vs {_median(direct) / 1e6:,.2f} ms straight to the server); "
                 f"target ≤ {PROXY_TARGET_MS:g} ms: {'met' if added / 1e6 <= PROXY_TARGET_MS else 'NOT met'} "
                 "(reported, not enforced)")
    return samples


# ------------------------------------------------------------------------------------------ hook


def _corral_command() -> list[str]:
    """``corral`` as Claude Code finds it on PATH: the console script beside this interpreter."""
    script = Path(sys.executable).with_name("corral")
    return [str(script)] if script.exists() else [sys.executable, "-m", "corral.cli"]


def _time_processes(command: list[str], stdin: bytes, count: int, warmup: int, cwd: Path,
                    check: Any = None) -> list[float]:
    """``count`` timed runs of ``command`` (spawn to exit, its answer read), in ns each."""
    out = []
    environment = process_env()
    for i in range(warmup + count):
        t0 = time.perf_counter_ns()
        done = subprocess.run(command, input=stdin, capture_output=True, cwd=cwd, env=environment, timeout=60)
        elapsed = time.perf_counter_ns() - t0
        if check is not None:
            check(done)
        if i >= warmup:
            out.append(elapsed)
    return out


@case(PYTHON_START, section=ENFORCEMENT, group="hook")
def python_start(run: Run) -> list[float]:
    return _time_processes([sys.executable, "-c", "import json, sqlite3"], b"", _hook_runs(run), 2, _folder(run))


@case(HOOK, section=ENFORCEMENT, group="hook", versus=[Versus(PYTHON_START, HOOK_TARGET)])
def claude_code_hook(run: Run) -> list[float]:
    folder = _folder(run)
    agent = _agent(folder)
    event = json.dumps({
        "session_id": "bench-hook", "transcript_path": str(folder / "transcript.jsonl"), "cwd": str(folder),
        "hook_event_name": "PreToolUse", "tool_name": "Read", "tool_input": {"file_path": str(agent)},
        "tool_use_id": "toolu_bench",
    }).encode()

    def allowed(done: subprocess.CompletedProcess[bytes]) -> None:
        answer = json.loads(done.stdout or b"{}").get("hookSpecificOutput", {}) if done.returncode == 0 else {}
        if answer.get("permissionDecision") != "allow":
            raise RuntimeError(f"the hook did not allow Read (exit {done.returncode}): "
                               f"{done.stdout.decode()[:200]} {done.stderr.decode()[-300:]}")

    command = [*_corral_command(), "hook", "claude-code", "--agent", str(agent), "--as", "bench"]
    samples = _time_processes(command, event, _hook_runs(run), 2, folder, check=allowed)
    p50 = _median(samples) / 1e6
    verdict = "met" if p50 <= HOOK_TARGET_MS else "NOT met"
    run.note(f"Claude Code hook: p50 {p50:,.0f} ms from process start to decision; target ≤ {HOOK_TARGET_MS:g} ms "
             f"p50: {verdict} (reported, not enforced)")
    return samples


def _median(samples: list[float]) -> float:
    """p50 as the table reports it."""
    return Stats.of(samples).p50
