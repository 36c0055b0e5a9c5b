"""``corral mcp-proxy`` end to end: the official MCP SDK client, real upstream servers, a real SQLite store.

The proxy runs as its own process (``python -m corral.cli.mcp``, what ``corral mcp-proxy`` runs);
approvals and phase moves come from other processes through the same store, as a person's would.
"""

from __future__ import annotations

import json
import queue
import re
import select
import socket
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from corral.harness.config import load_agent
from corral.harness.runtime import governor_from_config

PROXY = [sys.executable, "-m", "corral.cli.mcp"]
CORRAL = [sys.executable, "-m", "corral.cli"]
TIME_SERVER = [sys.executable, "-m", "mcp_server_time"]
GIT_SERVER = [sys.executable, "-m", "mcp_server_git"]
PHASE_TOOLS = ["corral_begin_decide", "corral_propose_plan", "corral_begin_commit", "corral_finish_commit",
               "corral_abort_commit", "corral_back_to_explore"]

RULES = """\
REQUIRE PLAN
BLOCK get_current_time WHEN arg.timezone IS "Antarctica/Troll" BECAUSE "nobody lives there"
REQUIRE APPROVAL FOR convert_time WHEN arg.target_timezone IS "Asia/Tokyo" BECAUSE "Tokyo needs a human"
BLOCK git_add WHEN arg.files CONTAINS "secret.txt" BECAUSE "never stage secrets"
"""

BROKEN_SERVER = (Path(__file__).resolve().parents[1] / "fixtures" / "broken_mcp_server.py").read_text()


def _agent(tmp_path: Path, tools: list[dict[str, Any]] | None = None) -> Path:
    (tmp_path / "policy.rules").write_text(RULES)
    agent = {
        "name": "proxy-desk",
        "model": {"provider": "openai", "id": "unused"},
        "tools": tools or [],
        "governance": {"rules": "policy.rules"},
        "store": f"sqlite:///{tmp_path / 'corral.db'}",
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


@asynccontextmanager
async def _proxied(tmp_path: Path, upstream: list[str], *options: str):
    agent = tmp_path / "agent.yaml"
    if not agent.exists():
        _agent(tmp_path)
    log = tmp_path / "proxy.log"
    params = StdioServerParameters(
        command=PROXY[0], args=[*PROXY[1:], "--agent", str(agent), "--as", "alice", *options, "--", *upstream]
    )
    with log.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            session_id = re.search(r"session (\S+)", log.read_text()).group(1)
            yield client, session_id


def _payload(result: Any) -> dict[str, Any]:
    return json.loads(result.content[0].text)


def _traces(tmp_path: Path, session_id: str) -> list[Any]:
    gov = governor_from_config(load_agent(tmp_path / "agent.yaml"))
    try:
        return [t for t in gov.session(id=session_id).traces if t.kind == "call"]
    finally:
        gov.close()


def _corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------------------------- stdio


async def test_lists_upstream_and_phase_tools_and_governs_reads(tmp_path):
    async with _proxied(tmp_path, TIME_SERVER) as (client, session_id):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert list(tools) == ["get_current_time", "convert_time", *PHASE_TOOLS]
        assert tools["get_current_time"].annotations.read_only_hint is True  # relayed unchanged
        assert "timezone" in tools["get_current_time"].input_schema["properties"]

        ok = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert not ok.is_error and ok.structured_content["timezone"] == "UTC"

        blocked = await client.call_tool("get_current_time", {"timezone": "Antarctica/Troll"})
        assert blocked.is_error
        refusal = _payload(blocked)
        assert refusal["blocked"] is True
        assert re.fullmatch(r"nobody lives there \(\S*policy\.rules:2\)", refusal["reason"])
        assert refusal["hint"] and refusal["trace"]

        unknown = await client.call_tool("set_time", {"to": "noon"})
        assert unknown.is_error and "unknown tool 'set_time'" in _payload(unknown)["reason"]

        failed = await client.call_tool("get_current_time", {"timezone": "Nowhere/Special"})
        assert failed.is_error and "Invalid timezone" in failed.content[0].text  # the server's own error

        await client.send_ping()  # relayed to the upstream
        assert (await client.list_prompts()).prompts == []

    decisions = [(t.tool, t.decision, (t.outcome or {}).get("status")) for t in _traces(tmp_path, session_id)]
    assert decisions == [
        ("get_current_time", "allowed", "ok"),
        ("get_current_time", "blocked", None),
        ("set_time", "blocked", None),
        ("get_current_time", "allowed", "error"),
    ]


async def test_a_pending_approval_lets_the_same_call_through_exactly_once(tmp_path):
    tokyo = {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
    async with _proxied(tmp_path, TIME_SERVER) as (client, session_id):
        pending = await client.call_tool("convert_time", tokyo)
        assert pending.is_error
        asked = _payload(pending)
        approval = asked["approval"]
        assert asked["pending"] is True and "Tokyo needs a human" in asked["reason"]
        assert f"corral approvals approve {approval}" in asked["hint"]

        again = await client.call_tool("convert_time", tokyo)  # still waiting: no new request, same id
        assert again.is_error and _payload(again)["approval"] == approval

        store = f"sqlite:///{tmp_path / 'corral.db'}"
        listed = json.loads(_corral("approvals", "list", "--store", store, "--json", cwd=tmp_path).stdout)
        assert [(a["id"], a["tool"], a["session"]) for a in listed] == [(approval, "convert_time", session_id)]
        self_approval = _corral("approvals", "approve", approval, "--as", "alice", "--store", store, cwd=tmp_path)
        assert self_approval.returncode == 1  # alice's own session
        approved = _corral("approvals", "approve", approval, "--as", "bob", "--store", store, cwd=tmp_path)
        assert approved.returncode == 0, approved.stderr

        ran = await client.call_tool("convert_time", tokyo)
        assert not ran.is_error and ran.structured_content["target"]["timezone"] == "Asia/Tokyo"
        once = await client.call_tool("convert_time", tokyo)
        second = _payload(once)["approval"]
        assert once.is_error and second != approval  # a new request: an approval is used once

    # approved while no proxy runs; a new proxy resumes the session and the call runs
    assert _corral("approvals", "approve", second, "--as", "bob", "--store", store, cwd=tmp_path).returncode == 0
    async with _proxied(tmp_path, TIME_SERVER, "--session", session_id) as (client, resumed):
        assert resumed == session_id
        assert not (await client.call_tool("convert_time", tokyo)).is_error

    traces = _traces(tmp_path, session_id)
    assert [t.decision for t in traces] == ["pending", "pending", "approved", "pending", "approved"]
    assert traces[2].outcome["status"] == "ok" and traces[4].outcome["status"] == "ok"
    assert any(c.get("approver") == "bob" for c in traces[2].checks)


async def test_writes_wait_for_commit_follow_the_plan_and_irreversible_ones_wait_for_finish(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README").write_text("r")
    subprocess.run(["git", "-C", str(repo), "add", "README"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
                   check=True)
    for name in ("a.txt", "b.txt", "secret.txt"):
        (repo / name).write_text(name)
    r = str(repo)

    def staged() -> list[str]:
        return subprocess.run(["git", "-C", r, "diff", "--cached", "--name-only"], capture_output=True,
                              text=True).stdout.split()

    def branches() -> list[str]:
        out = subprocess.run(["git", "-C", r, "branch", "--format=%(refname:short)"], capture_output=True, text=True)
        return sorted(out.stdout.split())

    async def call(tool: str, **args: Any) -> Any:
        return await client.call_tool(tool, args)

    async with _proxied(tmp_path, GIT_SERVER) as (client, session_id):
        status = await call("git_status", repo_path=r)
        assert not status.is_error and "a.txt" in status.content[0].text

        write = await call("git_add", repo_path=r, files=["a.txt"])  # git_add has no compensation: irreversible
        assert write.is_error
        refusal = _payload(write)
        assert "not allowed in explore" in refusal["reason"] and "corral_begin_decide" in refusal["hint"]
        assert refusal["session"] == session_id

        # a person moves the session from a shell; the proxy sees it on its next call
        moved = _corral("phase", session_id, "decide", "--agent", str(tmp_path / "agent.yaml"), cwd=tmp_path)
        assert moved.returncode == 0, moved.stderr
        still = await call("git_add", repo_path=r, files=["a.txt"])
        assert "not allowed in decide" in _payload(still)["reason"]

        plan = _payload(await call("corral_propose_plan", steps=[
            {"tool": "git_add", "args": {"repo_path": "*", "files": ["a.txt"]}},
            {"tool": "git_add", "args": {"repo_path": "*", "files": ["secret.txt"]}},
            {"tool": "git_create_branch", "args": {"repo_path": "*", "branch_name": "feature"}},
        ]))
        assert plan["steps"] == 3
        begun = await call("corral_begin_commit")
        assert not begun.is_error and _payload(begun)["plan_id"] == plan["plan_id"]

        # irreversible calls are checked when made: a refusal comes back at once …
        off_plan = await call("git_add", repo_path=r, files=["b.txt"])
        assert "not in plan" in _payload(off_plan)["reason"]
        secret = await call("git_add", repo_path=r, files=["secret.txt"])  # in the plan, but a rule blocks it
        assert re.fullmatch(r"never stage secrets \(\S*policy\.rules:4\)", _payload(secret)["reason"])
        # … and an allowed one is deferred: nothing happens upstream before corral_finish_commit
        added = await call("git_add", repo_path=r, files=["a.txt"])
        assert not added.is_error and _payload(added) == {"deferred": True, "runs_at": "corral_finish_commit"}
        branch = await call("git_create_branch", repo_path=r, branch_name="feature")
        assert _payload(branch) == {"deferred": True, "runs_at": "corral_finish_commit"}
        assert staged() == [] and "feature" not in branches()

        finished = _payload(await call("corral_finish_commit"))
        assert finished["committed"] is True
        assert [s["tool"] for s in finished["steps"]] == ["git_add", "git_create_branch"]
        assert staged() == ["a.txt"] and "feature" in branches()

        # a deferred step that fails at finish rolls the transaction back, and the session is usable again
        await call("corral_begin_decide")
        await call("corral_propose_plan", steps=[{"tool": "git_add", "args": {"repo_path": "*", "files": "*"}}])
        await call("corral_begin_commit")
        assert _payload(await call("git_add", repo_path=r, files=["missing.txt"]))["deferred"] is True
        broken = _payload(await call("corral_finish_commit"))
        assert broken["transaction"] in ("rolled_back", "needs_attention") and "missing.txt" in broken["error"]
        again = await call("git_add", repo_path=r, files=["b.txt"])
        assert "not allowed in explore" in _payload(again)["reason"]

    decisions = [(t.tool, t.decision) for t in _traces(tmp_path, session_id)]
    assert ("git_add", "blocked") in decisions and ("corral_begin_commit", "allowed") in decisions
    # run at finish: a.txt, the branch, and the one that failed upstream
    assert decisions.count(("git_add", "allowed")) == 2 and decisions.count(("git_create_branch", "allowed")) == 1


async def test_an_upstream_that_breaks_mid_call_gives_errors_and_the_proxy_keeps_serving(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(BROKEN_SERVER)
    upstream = [sys.executable, str(script)]
    # the agent file's entry for this command supplies the effect (an unannotated tool is irreversible)
    _agent(tmp_path, tools=[{"mcp": {"command": upstream}, "effects": {"work": "read"}}])
    async with _proxied(tmp_path, upstream, "--timeout", "1") as (client, session_id):
        assert _payload_text(await client.call_tool("work", {"how": "fine"})) == "worked fine"

        garbage = await client.call_tool("work", {"how": "garbage"})
        assert garbage.is_error and "not valid JSON-RPC" in _payload(garbage)["error"]

        started = time.monotonic()
        hung = await client.call_tool("work", {"how": "hang"})
        assert hung.is_error and "did not answer tools/call work" in _payload(hung)["error"]
        assert time.monotonic() - started < 4

    script_die = tmp_path / "die"
    script_die.mkdir()
    _agent(script_die, tools=[{"mcp": {"command": upstream}, "effects": {"work": "read"}}])
    async with _proxied(script_die, upstream) as (client, session_id):
        died = await client.call_tool("work", {"how": "die"})
        assert died.is_error and "is gone during tools/call work" in _payload(died)["error"]
        after = await client.call_tool("work", {"how": "fine"})
        assert after.is_error and "not available" in _payload(after)["error"]
        assert [t.name for t in (await client.list_tools()).tools][:1] == ["work"]  # still serving

    statuses = [(t.decision, t.outcome["status"]) for t in _traces(script_die, session_id)]
    assert statuses == [("allowed", "error"), ("allowed", "error")]


def _payload_text(result: Any) -> str:
    assert not result.is_error, result.content
    return result.content[0].text


# ------------------------------------------------------------------------------------- bad input


def _read_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if ready:
            line = proc.stdout.readline()
            assert line, "the proxy closed its stdout"
            return json.loads(line)
    raise AssertionError("the proxy did not answer in time")


def test_malformed_json_rpc_is_answered_and_the_proxy_keeps_serving(tmp_path):
    agent = _agent(tmp_path)
    proc = subprocess.Popen([*PROXY, "--agent", str(agent), "--as", "alice", "--", *TIME_SERVER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None

    def send(raw: bytes) -> None:
        proc.stdin.write(raw + b"\n")
        proc.stdin.flush()

    try:
        send(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"')  # cut short
        assert _read_line(proc)["error"]["code"] == -32700
        send(b"[1, 2, 3]")
        assert _read_line(proc)["error"]["code"] == -32600
        send(b'{"jsonrpc": "2.0", "id": 7, "method": 42}')
        answer = _read_line(proc)
        assert answer["id"] == 7 and answer["error"]["code"] == -32600
        send(b'{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "get_current_time", '
             b'"arguments": {"timezone": "' + b"x" * (5 * 1024 * 1024) + b'"}}}')
        too_big = _read_line(proc)
        assert too_big["error"]["code"] == -32600 and "larger than" in too_big["error"]["message"]

        send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        }).encode())
        assert _read_line(proc)["result"]["serverInfo"]["name"] == "mcp-time"
        send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        send(b'{"jsonrpc": "2.0", "id": 10, "method": "no/such/method"}')
        assert _read_line(proc)["error"]["code"] == -32601
        send(b'{"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"arguments": {}}}')  # no name
        assert _read_line(proc)["error"]["code"] == -32602
        send(b"\xff\xfe not utf-8")
        assert _read_line(proc)["error"]["code"] == -32700
        send(b'{"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {"name": "get_current_time", '
             b'"arguments": {"timezone": "UTC"}}}')
        served = _read_line(proc)
        assert served["id"] == 12 and served["result"]["isError"] is False
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0  # end of input ends the proxy cleanly


def test_sigterm_stops_the_stdio_proxy_and_its_upstream(tmp_path):
    agent = _agent(tmp_path)
    pidfile = tmp_path / "upstream.pid"
    launcher = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); sys.argv = sys.argv[:1]; "
                "from mcp_server_time import main; main()")
    proc = subprocess.Popen([*PROXY, "--agent", str(agent), "--", sys.executable, "-c", launcher, str(pidfile)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = _stderr_lines(proc)
    _wait_for(lines, r"session (\S+)")
    upstream_pid = int(pidfile.read_text())
    proc.terminate()  # stdin stays open: the signal alone must end it
    assert proc.wait(timeout=20) == 0
    deadline = time.monotonic() + 10
    while not _ended(upstream_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ended(upstream_pid)  # the proxy stopped its upstream on the way out


def _ended(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


# ------------------------------------------------------------------------------------ streamable HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def _stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], pattern: str, timeout: float = 30.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} in: {''.join(seen)}")


async def test_streamable_http_on_both_sides(tmp_path):
    agent = _agent(tmp_path)
    port = _free_port()
    server = tmp_path / "time_http.py"
    server.write_text("import sys\nfrom mcp_server_time.server import create_server\n"
                      "create_server('UTC').run('streamable-http', host='127.0.0.1', port=int(sys.argv[1]))\n")
    upstream = subprocess.Popen([sys.executable, str(server), str(port)], stderr=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
    proxy = None
    try:
        _wait_for_port(port)
        proxy = subprocess.Popen(
            [*PROXY, "--agent", str(agent), "--as", "alice", "--listen", "127.0.0.1:0",
             "--upstream", f"http://127.0.0.1:{port}/mcp"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        lines = _stderr_lines(proxy)
        url = _wait_for(lines, r"serving MCP on (\S+)").group(1)
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as alice:
            await alice.initialize()
            names = [t.name for t in (await alice.list_tools()).tools]
            assert names == ["get_current_time", "convert_time", *PHASE_TOOLS]
            first = _wait_for(lines, r"session (\S+) for client (\S+)").group(1)
            ok = await alice.call_tool("get_current_time", {"timezone": "Europe/Berlin"})
            assert not ok.is_error and ok.structured_content["timezone"] == "Europe/Berlin"
            assert not (await alice.call_tool("corral_begin_decide", {})).is_error

            # a second client of the same proxy is a session of its own: its own phase, its own chain
            async with streamable_http_client(url) as (read2, write2), ClientSession(read2, write2) as bob:
                await bob.initialize()
                blocked = await bob.call_tool("get_current_time", {"timezone": "Antarctica/Troll"})
                assert blocked.is_error and _payload(blocked)["reason"].startswith("nobody lives there")
                second = _wait_for(lines, r"session (\S+) for client (\S+)").group(1)
                assert second != first and _payload(blocked)["session"] == second
                explore = _payload(await bob.call_tool("corral_back_to_explore", {}))
                assert explore == {"phase": "explore"}

            upstream.kill()
            upstream.wait(timeout=10)
            gone = await alice.call_tool("get_current_time", {"timezone": "UTC"})
            assert gone.is_error and "MCP server 'http://127.0.0.1" in _payload(gone)["error"]
        proxy.terminate()
        assert proxy.wait(timeout=20) == 0  # SIGTERM: a graceful stop, the session closed
    finally:
        for proc in (proxy, upstream):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    calls = [(t.tool, t.decision) for t in _traces(tmp_path, first)]
    assert calls == [("get_current_time", "allowed"), ("corral_begin_decide", "allowed"),
                     ("get_current_time", "allowed")]
    assert [(t.tool, t.decision) for t in _traces(tmp_path, second)] == [
        ("get_current_time", "blocked"), ("corral_back_to_explore", "allowed")]
    gov = governor_from_config(load_agent(agent))
    try:
        assert gov.session(id=first).phase == "decide" and gov.session(id=second).phase == "explore"
    finally:
        gov.close()
