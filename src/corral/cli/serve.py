"""``corral serve`` and ``corral principals``: the HTTP API for a team, and who may call it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

_SERVE_EPILOG = """\b
Examples:
  corral serve examples/refund_desk/agent.yaml
  corral serve desk.yaml mail.yaml --store postgresql://corral@db:5432/corral --host 0.0.0.0
  corral serve agent.yaml --port 8422 --workers 2

\b
Several servers may share one PostgreSQL store: any of them serves any session, a session being run
holds a lease (another run of it gets 409), and a dead server's work is recovered by the others
within twice --lease seconds.

\b
Then, with a token from `corral principals add`:
  curl -H "Authorization: Bearer $CORRAL_TOKEN" http://127.0.0.1:8421/v1/agents
"""


@click.command(epilog=_SERVE_EPILOG)
@click.argument("agent_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--store", metavar="URL", envvar="CORRAL_STORE",
              help="The store every agent uses (default: $CORRAL_STORE, else the agent files' store).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8421, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="uvicorn worker processes sharing the port.")
@click.option("--lease", default=30.0, show_default=True, type=click.FloatRange(min=0.5), metavar="SECONDS",
              help="How long a session lease lasts unless renewed (recovery of a dead server takes up to twice it).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(agent_files: tuple[str, ...], store: str | None, host: str, port: int, workers: int, lease: float,
          log_level: str) -> None:
    """Serve AGENT_FILES over HTTP: sessions, messages, approvals, traces, audit, and /v1/check."""
    from corral.server.main import ServeOptions
    from corral.server.main import serve as run_server

    sys.exit(run_server(ServeOptions(list(agent_files), store=store, host=host, port=port, workers=workers,
                                     lease=lease, log_level=log_level)))


_PRINCIPALS_EPILOG = """\b
Examples:
  corral principals add alice --role user
  corral principals add bob --role approver --role user --store postgresql://corral@db/corral
  TOKEN=$(corral principals add ci --role user | head -n1)
  corral principals add carol --role auditor --json
  corral principals list
  corral principals revoke alice            at once, on every server sharing the store

\b
Roles: user (runs own sessions), approver (decides other principals' approvals),
       auditor (reads every session, trace and the audit), admin (everything).
"""


def _open(store: str | None, agent: str | None) -> Any:
    """The store named by --store, else the agent file's, else $CORRAL_STORE, else the default file."""
    import os

    from corral.errors import GovernanceError
    from corral.store import open_store

    url = store
    try:
        if url is None and agent is not None:
            from corral.harness.config import load_agent

            url = load_agent(agent, check=False).store
        return open_store(url or os.environ.get("CORRAL_STORE", "sqlite:///.corral/corral.db"))
    except GovernanceError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(epilog=_PRINCIPALS_EPILOG)
def principals() -> None:
    """Who may call `corral serve`: principals, their roles, their API tokens."""


@principals.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(["user", "approver", "auditor", "admin"]), help="A role; may be repeated.")
@click.option("--store", metavar="URL", help="Store URL (default: $CORRAL_STORE, else sqlite:///.corral/corral.db).")
@click.option("--agent", type=click.Path(dir_okay=False), help="Agent file whose store to use.")
@click.option("--json", "as_json", is_flag=True, help='Print {"name", "roles", "token"}.')
def principals_add(name: str, roles: tuple[str, ...], store: str | None, agent: str | None, as_json: bool) -> None:
    """Add principal NAME and print its API token, once: it is not stored, only its SHA-256 is."""
    from corral.server.identity import IdentityError, add_principal

    st = _open(store, agent)
    try:
        principal, token = add_principal(st, name, roles)
    except IdentityError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        st.close()
    if as_json:
        click.echo(json.dumps({"name": principal.name, "roles": list(principal.roles), "token": token}))
        return
    click.echo(token)
    click.echo(f"added {principal.name} ({', '.join(principal.roles)}); the line above is the API token, shown "
               "this once: send it as 'Authorization: Bearer TOKEN' (or set CORRAL_TOKEN for --server)", err=True)


@principals.command("list")
@click.option("--store", metavar="URL", help="Store URL.")
@click.option("--agent", type=click.Path(dir_okay=False), help="Agent file whose store to use.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def principals_list(store: str | None, agent: str | None, as_json: bool) -> None:
    """List principals with their roles (tokens are never shown again)."""
    from corral.server.identity import list_principals

    st = _open(store, agent)
    try:
        rows = list_principals(st)
    finally:
        st.close()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no principals; add one with: corral principals add NAME --role user")
    for row in rows:
        state = f"revoked {row['revoked']}" if row["revoked"] else "active"
        click.echo(f"{row['name']:<20} {','.join(row['roles']):<28} {state}")


@principals.command("revoke")
@click.argument("name")
@click.option("--store", metavar="URL", help="Store URL.")
@click.option("--agent", type=click.Path(dir_okay=False), help="Agent file whose store to use.")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked principal as JSON.")
def principals_revoke(name: str, store: str | None, agent: str | None, as_json: bool) -> None:
    """Revoke NAME's token: every server sharing the store refuses it from the next request on."""
    from corral.server.identity import IdentityError, revoke_principal

    st = _open(store, agent)
    try:
        revoked = revoke_principal(st, name)
    except IdentityError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        st.close()
    if as_json:
        click.echo(json.dumps(revoked))
    else:
        click.echo(f"revoked {revoked['name']} at {revoked['revoked']}")
