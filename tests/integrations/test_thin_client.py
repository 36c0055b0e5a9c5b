"""The thin client: ``corral hook claude-code --server URL`` asks a real ``corral serve``; it imports only the
standard library, and a server it cannot reach, or that does not answer in time, means deny."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.server.serving import CORRAL, Team

from corral.integrations.thin_client import Client, ServerError

STDLIB_ONLY = """
import sys
sys.argv = ["corral", "hook", "claude-code", "--server", "http://127.0.0.1:1", "--agent", "gate"]
import corral.launch
corral.launch.end_hook_process = sys.exit  # the real one ends the process before we can look
try:
    corral.launch.main()
except SystemExit:
    pass
third = sorted(m for m in sys.modules if m.split(".")[0] in
               ("click", "typer", "rich", "pydantic", "yaml", "lark", "httpx", "psycopg", "fastapi", "http"))
ours = sorted(m for m in sys.modules if m.startswith("corral.") and m not in
              ("corral.errors", "corral.version", "corral.launch", "corral.integrations",
               "corral.integrations.thin_client"))
print(third, ours)
"""


def hook(server_url: str, event: dict[str, Any], token: str | None, work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_TOKEN"}
    if token is not None:
        env["CORRAL_TOKEN"] = token
    env["CORRAL_CLAUDE_CODE_DIR"] = str(work / "hook-state")
    return subprocess.run([CORRAL, "hook", "claude-code", "--server", server_url, "--agent", "gate", *args],
                          input=json.dumps(event), capture_output=True, text=True, env=env, timeout=30)


def event(name: str, tool: str, tool_input: dict[str, Any], use: str, **extra: Any) -> dict[str, Any]:
    return {"hook_event_name": name, "session_id": "claude-1", "tool_name": tool, "tool_input": tool_input,
            "tool_use_id": use, "cwd": "/tmp", **extra}


def test_the_hook_reaches_the_server_without_the_cli_framework() -> None:
    out = subprocess.run([sys.executable, "-c", STDLIB_ONLY], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr


def test_the_hook_asks_the_server_and_settles_through_it(serve: Any, sqlite_url: str, work: Path) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    token = team.add("alice", "user")
    allowed = hook(server.url, event("PreToolUse", "Read", {"file_path": "a.txt"}, "u1"), token, work)
    assert allowed.returncode == 0, allowed.stderr
    answer = json.loads(allowed.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "allow" and "allowed" in answer["permissionDecisionReason"]
    settled = hook(server.url, event("PostToolUse", "Read", {"file_path": "a.txt"}, "u1",
                                     tool_response={"content": "hello"}), token, work)
    assert settled.returncode == 0, settled.stderr
    denied = hook(server.url, event("PreToolUse", "Bash", {"command": "rm -rf /"}, "u2"), token, work)
    answer = json.loads(denied.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny" and "no recursive deletes" in answer["permissionDecisionReason"]
    unmatched = hook(server.url, event("PostToolUse", "Bash", {"command": "rm -rf /"}, "u2"), token, work)
    assert unmatched.returncode == 2 and "not governed" in unmatched.stderr
    with server.client(team.add("carol", "auditor")) as carol:
        traces = carol.get("/v1/sessions/claude-1/traces").json()
    read = next(t for t in traces if t["tool"] == "Read")
    assert read["principal"] == "alice" and read["outcome"]["status"] == "ok"
    assert next(t for t in traces if t["tool"] == "Bash")["decision"] == "blocked"


def test_an_unreachable_server_means_deny_with_what_to_do(work: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = hook(f"http://127.0.0.1:{port}", event("PreToolUse", "Read", {}, "u1"), "corral_x", work)
    assert result.returncode == 2 and result.stdout == ""
    assert "cannot reach the corral server" in result.stderr and "corral serve" in result.stderr


def test_a_slow_server_means_deny_at_the_timeout(work: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    try:
        began = time.monotonic()
        result = hook(f"http://127.0.0.1:{listener.getsockname()[1]}", event("PreToolUse", "Read", {}, "u1"),
                      "corral_x", work, "--timeout", "0.5")
        took = time.monotonic() - began
    finally:
        for sock in held:
            sock.close()
        listener.close()
    assert result.returncode == 2 and "did not answer within 0.5s" in result.stderr
    assert took < 5


def test_a_missing_or_revoked_token_means_deny(serve: Any, sqlite_url: str, work: Path) -> None:
    server = serve(sqlite_url)
    token = Team(sqlite_url).add("alice", "user")
    missing = hook(server.url, event("PreToolUse", "Read", {}, "u1"), None, work)
    assert missing.returncode == 2 and "CORRAL_TOKEN" in missing.stderr
    subprocess.run([CORRAL, "principals", "revoke", "alice", "--store", sqlite_url], check=True, capture_output=True)
    revoked = hook(server.url, event("PreToolUse", "Read", {}, "u1"), token, work)
    assert revoked.returncode == 2 and "refused (401)" in revoked.stderr and "revoked" in revoked.stderr
    assert token not in revoked.stderr


def test_bad_input_and_bad_urls_fail_closed(work: Path) -> None:
    env = {**os.environ, "CORRAL_TOKEN": "corral_x"}
    result = subprocess.run([CORRAL, "hook", "claude-code", "--server", "http://127.0.0.1:1", "--agent", "g"],
                            input="not json", capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 2 and "not JSON" in result.stderr
    for url in ("ftp://x", "http://user:pw@host", "http://host:99999", "http://host/?token=t"):
        with pytest.raises(ServerError):
            Client(url, "corral_x")
    with pytest.raises(ServerError, match="CORRAL_TOKEN"):
        Client("http://127.0.0.1:8421", None)
