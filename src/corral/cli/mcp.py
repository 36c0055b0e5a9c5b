"""``corral mcp-proxy``: an MCP server that governs another MCP server's tools."""

from __future__ import annotations

import sys

import click

_EPILOG = """\b
Examples:
  corral mcp-proxy --agent agent.yaml -- python -m mcp_server_time
  corral mcp-proxy --agent agent.yaml --as alice -- uvx mcp-server-git
  corral mcp-proxy --agent agent.yaml --upstream http://127.0.0.1:9000/mcp
  corral mcp-proxy --agent agent.yaml --listen 127.0.0.1:8765 -- python -m mcp_server_time
  corral mcp-proxy --agent agent.yaml --session SESSION_ID -- python -m mcp_server_time   # resume
  CORRAL_TOKEN=... corral mcp-proxy --server http://127.0.0.1:8421 --agent refund-desk -- python -m mcp_server_time

\b
In an MCP client's configuration, the proxy replaces the server's command:
  {"command": "corral", "args": ["mcp-proxy", "--agent", "agent.yaml", "--", "python", "-m", "mcp_server_time"]}

\b
The session id is printed to stderr at start. From a shell, on the same store:
  corral phase SESSION_ID decide --agent agent.yaml        move the session between phases
  corral approvals approve APPROVAL_ID --as bob --agent agent.yaml
  (then the client repeats the call, and it runs once)

\b
Besides the upstream's tools, the proxy offers corral_begin_decide, corral_propose_plan,
corral_begin_commit, corral_finish_commit, corral_abort_commit and corral_back_to_explore.
The agent file's `mcp:` entry with the same command (or url) supplies effects, compensate, cost
and prefix for the upstream's tools; its `model:` is not used.
"""


@click.command("mcp-proxy", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               epilog=_EPILOG)
@click.option("--agent", "agent_file", required=True,
              help="Agent file: rules, budget, approvals, store. With --server: the served agent's name.")
@click.option("--server", "server_url", metavar="URL",
              help="Ask a running `corral serve` to decide each call (token from $CORRAL_TOKEN) instead of "
                   "opening the store.")
@click.option("--upstream", "upstream_url", metavar="URL", help="A streamable-HTTP MCP server, instead of -- CMD.")
@click.option("--session", "session_id", help="Resume (or start under) this session id.")
@click.option("--as", "principal", help="Who the session acts for (default: $USER).")
@click.option("--store", help="Override the agent file's store URL.")
@click.option("--listen", metavar="HOST:PORT",
              help="Serve streamable HTTP on HOST:PORT (port 0 picks one) instead of stdio.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds the upstream has to answer one request.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def mcp_proxy(agent_file: str, server_url: str | None, upstream_url: str | None, session_id: str | None,
              principal: str | None, store: str | None, listen: str | None, timeout: float,
              command: tuple[str, ...]) -> None:
    """Serve MCP, governing every tools/call to an upstream MCP server (CMD after --, or --upstream URL).

    Each call goes through the agent file's governance — phase, budget, rules, approvals, plan
    binding — and is traced in its store. A refused call is an error result whose text says why and
    what to do instead; resources, prompts and pings pass through unchanged.
    """
    if bool(command) == bool(upstream_url):
        raise click.UsageError("give the upstream as -- CMD [ARGS…] or as --upstream URL (exactly one)")
    if server_url is not None:
        if store or principal or listen:
            raise click.UsageError("with --server the server keeps the store and knows who you are "
                                   "($CORRAL_TOKEN), and the proxy serves stdio: drop --store, --as and --listen")
        from corral.integrations.remote_proxy import run_remote_proxy

        sys.exit(run_remote_proxy(server_url, agent_file, command=command or None, upstream_url=upstream_url,
                                  session=session_id, timeout=timeout))
    from corral.integrations.mcp_proxy import run_proxy

    sys.exit(run_proxy(agent_file, command=command or None, upstream_url=upstream_url, session=session_id,
                       principal=principal, store=store, listen=listen, timeout=timeout))


if __name__ == "__main__":  # pragma: no cover - `python -m corral.cli.mcp` until the CLI registers it
    mcp_proxy()
