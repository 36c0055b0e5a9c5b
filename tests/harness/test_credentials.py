"""Credentials: sent where they belong (OpenAPI requests, MCP-over-HTTP headers), seen nowhere else.

A known secret goes in; then the transcript, the traces, the audit export, every log record and every
OpenTelemetry span (in process, and from ``corral run`` on the command line) are searched for it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from mcp.server.mcpserver import MCPServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corral.harness.config import AgentConfigError, load_agent
from corral.harness.loop import run
from corral.harness.runtime import Harness
from corral.harness.tools.credentials import CredentialError, Vault
from tests.harness.billing_app import make_app
from tests.harness.servers import serve

SECRET = "sk-live-9c1f4e2a7b3d8e60f5a1"
MCP_SECRET = "mcp-5e7d1c9a2b4f6083"
API_KEY = "unused-key-1"


def guarded(app, token: str, seen: list[str]):
    """The MCP server's app behind a check of the Authorization header (401 otherwise)."""

    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            seen.append(auth)
            if auth != f"Bearer {token}":
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)

    return asgi


@pytest.fixture(scope="module")
def servers():
    seen: list[str] = []
    mcp = MCPServer("echo")

    @mcp.tool(annotations={"readOnlyHint": True})
    def whoami() -> str:
        """Tell the caller which Authorization header it sent (a careless server)."""
        return f"you sent {seen[-1]}"

    billing = make_app(SECRET, API_KEY)
    with serve(billing) as api, serve(guarded(mcp.streamable_http_app(), MCP_SECRET, seen), lifespan="on") as echo:
        yield api, f"{echo}/mcp", seen, billing


def write_agent(tmp_path: Path, api: str, mcp_url: str) -> Path:
    (tmp_path / "billing.json").write_text(httpx.get(f"{api}/openapi.json").text)
    (tmp_path / "mcp-token").write_text(MCP_SECRET + "\n")
    script = [{"tool_calls": [{"name": "api.get_invoice", "args": {"invoice_id": "INV-1"}},
                              {"name": "api.whoami", "args": {}},
                              {"name": "api.get_invoice", "args": {"invoice_id": "MISSING"}},
                              {"name": "echo.whoami", "args": {}}]},
              {"text": "all done"}]
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    doc = {"name": "secret-keeper", "model": {"provider": "scripted", "script": "script.yaml"},
           "credentials": {"billing": {"env": "BILLING_TOKEN"}, "echo": {"file": "mcp-token"}},
           "tools": [{"openapi": {"spec": "billing.json", "base_url": api, "credential": "billing",
                                  "operations": ["get_invoice", "whoami"]}},
                     {"mcp": {"url": mcp_url, "credential": "echo"}, "prefix": "echo."}],
           "phases": False, "telemetry": {"exporter": "console"},
           "store": f"sqlite:///{tmp_path / 'corral.db'}", "workspace": str(tmp_path / "ws")}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def assert_nowhere(text: str, where: str) -> None:
    for secret in (SECRET, MCP_SECRET):
        assert secret not in text, f"a credential leaked into {where}"


def test_secrets_reach_the_servers_and_nothing_else(servers, tmp_path, monkeypatch, caplog):
    api, mcp_url, seen, billing = servers
    monkeypatch.setenv("BILLING_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger, every level: httpx logs each request's URL
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    harness = Harness(load_agent(write_agent(tmp_path, api, mcp_url)), principal="alice",
                      tracer=provider.get_tracer("test"))
    try:
        result = run(harness, "check my invoice")
        store = harness.governor.store
        transcript = json.dumps(store.get_session(result.session), default=str)
        records = json.dumps([r for r in store.records(result.session)], default=str)
    finally:
        harness.close()

    assert result.stop_reason == "end_turn"
    assert f"Bearer {MCP_SECRET}" in seen  # the MCP server got its header
    results = [json.loads(m["content"]) if m["content"].startswith("{") else m["content"]
               for m in json.loads(transcript)["harness"]["transcript"] if m["role"] == "tool"]
    assert results[0]["customer"] == "ACME"  # the API got its bearer token: it answered
    assert results[1] == {"authorization": "Bearer [credential billing]"}  # echoed, and scrubbed
    assert "HTTP 404" in results[2]["error"]
    assert results[3] == "you sent Bearer [credential echo]"

    assert_nowhere(transcript, "the stored session (transcript)")
    assert_nowhere(records, "the audit chain")
    assert_nowhere(json.dumps(result.to_dict(), default=str), "the traces")
    assert_nowhere("\n".join(r.getMessage() for r in caplog.records), "the logs")
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # the logs were captured
    spans = exporter.get_finished_spans()
    assert spans
    assert_nowhere("\n".join(s.to_json() for s in spans), "the OpenTelemetry spans")


def test_on_the_command_line_too(servers, tmp_path):
    api, mcp_url, _, _ = servers
    agent = write_agent(tmp_path, api, mcp_url)
    env = {**os.environ, "BILLING_TOKEN": SECRET}
    ran = subprocess.run([sys.executable, "-m", "corral.cli", "run", str(agent), "check", "--json"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert '"name": "execute_tool api.whoami"' in ran.stderr  # the console exporter printed the spans
    exported = subprocess.run([sys.executable, "-m", "corral.cli", "audit", "export", "--store",
                               f"sqlite:///{tmp_path / 'corral.db'}"], capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0 and exported.stdout.count("\n") > 4
    for text, where in ((ran.stdout, "corral run --json"), (ran.stderr, "stderr (logs, spans)"),
                        (exported.stdout, "corral audit export")):
        assert_nowhere(text, where)


def test_a_credential_that_cannot_be_read_is_a_located_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    vault = Vault({"a": {"env": "NOT_SET_ANYWHERE"}, "b": {"file": "nope.txt"}}, tmp_path)
    with pytest.raises(CredentialError, match="environment variable NOT_SET_ANYWHERE is not set"):
        vault.value("a")
    with pytest.raises(CredentialError, match=r"cannot read .*nope\.txt"):
        vault.value("b")
    with pytest.raises(CredentialError, match=r"unknown credential 'c' \(declared under credentials: a, b\)"):
        vault.value("c")
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "credentials": {"a": {"env": "NOT_SET_ANYWHERE"},
                                                                   "both": {"env": "X", "file": "y"}},
                                    "tools": [{"mcp": {"url": "http://127.0.0.1:9/mcp", "credential": "zzz"}}]}))
    with pytest.raises(AgentConfigError) as caught:
        load_agent(path)
    assert ("credentials.both", "Value error, a credential is exactly one of {env: VARIABLE} or {file: PATH} "
            "(got {'env': 'X', 'file': 'y'})") in caught.value.problems
    path.write_text(yaml.safe_dump({"name": "x", "credentials": {"a": {"env": "NOT_SET_ANYWHERE"}},
                                    "tools": [{"mcp": {"url": "http://127.0.0.1:9/mcp", "credential": "zzz"}}]}))
    with pytest.raises(AgentConfigError) as caught:
        load_agent(path)
    problems = dict(caught.value.problems)
    assert problems["credentials.a"] == "credential 'a': the environment variable NOT_SET_ANYWHERE is not set"
    assert problems["tools[0].mcp.credential"] == "unknown credential 'zzz' (credentials: a)"


def test_scrub_reaches_into_structures_and_log_records(tmp_path, caplog):
    (tmp_path / "k").write_text("abc123secret\n")
    vault = Vault({"k": {"file": "k"}}, tmp_path)
    assert vault.value("k") == "abc123secret"
    assert vault.scrub({"x": ["a abc123secret b", 3], "abc123secret": None}) == \
        {"x": ["a [credential k] b", 3], "[credential k]": None}
    caplog.set_level(logging.INFO)
    logging.getLogger("some.library.deep.inside").info("GET https://x/?key=%s", "abc123secret")
    assert caplog.records[-1].getMessage() == "GET https://x/?key=[credential k]"
    vault.close()
    logging.getLogger("x").info("after close: %s", "abc123secret")
    assert caplog.records[-1].getMessage() == "after close: abc123secret"
