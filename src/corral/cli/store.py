"""Commands that read or decide against a store: approvals, sessions, audit, why.

They need no agent file — only ``--store URL`` (or ``--agent agent.yaml``, whose ``store:`` is used).
Exit codes: 0 success, 1 a finding (a broken chain, a refused decision), 2 bad usage or input.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

_STORE_HELP = "Store URL (sqlite:///path.db, postgresql://user@host/db). Default: the agent file's store."


def _open(store: str | None, agent: str | None) -> Any:
    from corral.errors import GovernanceError
    from corral.store import open_store

    url = store
    if url is None and agent is not None:
        from corral.harness.config import load_agent

        try:
            url = load_agent(agent, check=False).store
        except GovernanceError as exc:
            raise click.UsageError(str(exc)) from None
    if url is None:
        url = os.environ.get("CORRAL_STORE", "sqlite:///.corral/corral.db")
    try:
        return open_store(url)
    except GovernanceError as exc:
        raise click.UsageError(str(exc)) from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def store_options(fn: Any) -> Any:
    fn = click.option("--agent", "agent", type=click.Path(dir_okay=False), help="Agent file whose store to use.")(fn)
    return click.option("--store", "store", metavar="URL", help=_STORE_HELP)(fn)


# -------------------------------------------------------------------------------------------- approvals


@click.group(epilog="""\b
Examples:
  corral approvals list --store sqlite:///.corral/corral.db
  corral approvals approve 01J... --as bob --reason "verified by phone"
  corral approvals deny 01J... --as bob --reason "fraud risk"
  corral run agent.yaml --session SESSION_ID        # then resume the paused session
""")
def approvals() -> None:
    """List and decide pending approval requests (REQUIRE APPROVAL rules)."""


@approvals.command("list")
@store_options
@click.option("--session", "session", help="Only this session's requests.")
@click.option("--all", "show_all", is_flag=True, help="Include decided, used and expired requests.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (id, session, tool, args, expires, …).")
def approvals_list(store: str | None, agent: str | None, session: str | None, show_all: bool, as_json: bool) -> None:
    """List approval requests (pending ones unless --all)."""
    st = _open(store, agent)
    rows = st.find_approvals(session=session, status=None if show_all else "pending")
    rows.sort(key=lambda a: a["created"])
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no pending approvals" if not show_all else "no approval requests")
        return
    for a in rows:
        args = json.dumps(a["args"], ensure_ascii=False)
        click.echo(f"{a['id']}  {a['status']:<8} {a['tool']}({args})  session {a['session']}  expires {a['expires']}")
        click.echo(f"    why: {a['reason']}")


def _decide(approved: bool, approval_id: str, who: str, reason: str | None, store: str | None,
            agent: str | None, as_json: bool) -> None:
    from datetime import UTC, datetime

    from corral.errors import ApprovalDenied, ConfigError
    from corral.governance.approvals import resolve

    st = _open(store, agent)
    try:
        decided = resolve(st, approval_id, who, reason, approved=approved, now=datetime.now(UTC))
    except (ConfigError, ApprovalDenied) as exc:
        if as_json:
            _echo_json({"id": approval_id, "error": str(exc)})
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        _echo_json(decided)
    else:
        verb = "approved" if approved else "denied"
        click.echo(f"{verb} {approval_id} ({decided['tool']}) as {who}; resume with: "
                   f"corral run AGENT.yaml --session {decided['session']}")


@approvals.command("approve")
@click.argument("approval_id")
@click.option("--as", "who", required=True, help="Who approves (recorded; cannot be the session's principal).")
@click.option("--reason", help="Why, for the audit log.")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print the decided request as JSON.")
def approvals_approve(approval_id: str, who: str, reason: str | None, store: str | None, agent: str | None,
                      as_json: bool) -> None:
    """Approve request APPROVAL_ID: the paused session may then run that exact call, once."""
    _decide(True, approval_id, who, reason, store, agent, as_json)


@approvals.command("deny")
@click.argument("approval_id")
@click.option("--as", "who", required=True, help="Who denies (recorded).")
@click.option("--reason", help="Why; the agent is told.")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print the decided request as JSON.")
def approvals_deny(approval_id: str, who: str, reason: str | None, store: str | None, agent: str | None,
                   as_json: bool) -> None:
    """Deny request APPROVAL_ID: the paused call goes back to the agent as a refusal."""
    _decide(False, approval_id, who, reason, store, agent, as_json)


# --------------------------------------------------------------------------------------------- sessions


@click.group(epilog="""\b
Examples:
  corral sessions list --store sqlite:///.corral/corral.db
  corral sessions show SESSION_ID --json
""")
def sessions() -> None:
    """List sessions and show one: phase, plan, budget, traces."""


@sessions.command("list")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def sessions_list(store: str | None, agent: str | None, as_json: bool) -> None:
    """List the sessions in a store, newest last."""
    st = _open(store, agent)
    rows = sorted(st.list_sessions(), key=lambda s: s.get("created") or "")
    out = [{"id": s["id"], "agent": s.get("agent"), "principal": s.get("principal"), "phase": s.get("phase"),
            "created": s.get("created"), "stop_reason": (s.get("harness") or {}).get("stop_reason")} for s in rows]
    if as_json:
        _echo_json(out)
        return
    if not out:
        click.echo("no sessions")
    for s in out:
        click.echo(f"{s['id']}  {s['agent']:<16} {s['principal'] or '-':<12} {s['phase']:<8} "
                   f"{s['stop_reason'] or '-':<18} {s['created']}")


@sessions.command("show")
@click.argument("session_id")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print the session and its traces as JSON.")
def sessions_show(session_id: str, store: str | None, agent: str | None, as_json: bool) -> None:
    """Show a session: its phase, plan, transcript length and every trace."""
    from corral.governance.traces import merge_records

    st = _open(store, agent)
    record = st.get_session(session_id)
    if record is None:
        click.echo(f"error: no session {session_id!r} in {st.url}", err=True)
        sys.exit(1)
    traces = merge_records(st.records(session_id))
    if as_json:
        _echo_json({"session": record, "traces": [t.to_dict() for t in traces]})
        return
    harness = record.get("harness") or {}
    click.echo(f"session {record['id']} · agent {record.get('agent')} · principal {record.get('principal')} · "
               f"phase {record.get('phase')} · plan {record.get('plan') or '-'}")
    if harness:
        click.echo(f"stop reason {harness.get('stop_reason')} · {len(harness.get('transcript') or [])} messages")
        if harness.get("answer"):
            click.echo(f"answer: {harness['answer']}")
    for t in traces:
        outcome = (t.outcome or {}).get("status") or "-"
        click.echo(f"  {t.ts}  {t.kind:<12} {t.tool:<18} {t.decision:<9} {outcome:<11} {t.reason}")


# ------------------------------------------------------------------------------------------------ audit


@click.group(epilog="""\b
Examples:
  corral audit verify --store sqlite:///.corral/corral.db          exit 0 intact, 1 tampered
  corral audit verify --session 01J... --json
  corral audit export --store sqlite:///.corral/corral.db > audit.jsonl
""")
def audit() -> None:
    """Verify and export the hash-chained audit log."""


@audit.command("verify")
@store_options
@click.option("--session", "session", help="Only this session's chain.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per session checked, in a list.")
def audit_verify(store: str | None, agent: str | None, session: str | None, as_json: bool) -> None:
    """Check every session's hash chain (and head HMAC with CORRAL_AUDIT_KEY); name the first bad record."""
    from corral.store.audit import verify_store

    st = _open(store, agent)
    results = verify_store(st, session)
    ok = all(r["ok"] for r in results)
    if as_json:
        _echo_json(results)
    else:
        for r in results:
            if r["ok"]:
                click.echo(f"{r['session']}: intact ({r['records']} records)")
            else:
                where = f" at record {r['bad_index']} ({r['bad_record']})" if r["bad_index"] is not None else ""
                click.echo(click.style(f"{r['session']}: BROKEN{where}: {r['why']}", fg="red"))
        click.echo(f"{len(results)} session(s) checked: {'all intact' if ok else 'TAMPERING DETECTED'}", err=True)
    sys.exit(0 if ok else 1)


@audit.command("export")
@store_options
@click.option("--session", "session", help="Only this session.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to a file, not stdout.")
def audit_export(store: str | None, agent: str | None, session: str | None, output: str | None) -> None:
    """Write the audit records as JSON Lines, one record per line, in chain order per session."""
    st = _open(store, agent)
    ids = [session] if session else sorted(s["id"] for s in st.list_sessions())
    handle = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    count = 0
    try:
        for sid in ids:
            for record in st.records(sid):
                handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str) + "\n")
                count += 1
    finally:
        if output:
            handle.close()
    click.echo(f"{count} record(s) exported", err=True)


# -------------------------------------------------------------------------------------------------- why


@click.command(epilog="""\b
Examples:
  corral why 01J9ZK... --store sqlite:///.corral/corral.db
  corral why 01J9ZK... --json
""")
@click.argument("trace_id")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def why(trace_id: str, store: str | None, agent: str | None, as_json: bool) -> None:
    """Explain one decision: why TRACE_ID was allowed, refused or sent for approval."""
    from corral.governance.traces import merge_records

    st = _open(store, agent)
    record = st.find_record(trace_id)
    if record is None:
        click.echo(f"error: no trace {trace_id!r} in {st.url}", err=True)
        sys.exit(1)
    merged = [t for t in merge_records(st.records(record["session"])) if t.id == trace_id]
    trace = merged[0] if merged else None
    if trace is None:
        click.echo(f"error: {trace_id!r} is an outcome record; ask about the decision it belongs to "
                   f"({record.get('ref')})", err=True)
        sys.exit(1)
    if as_json:
        _echo_json(trace.to_dict())
    else:
        click.echo(trace.explain())
