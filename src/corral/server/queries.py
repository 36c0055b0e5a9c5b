"""What a principal may read, as plain functions over the store: the JSON routes and the console call
the same ones, so a page and the API never disagree about who sees what.

Visibility (DESIGN §13): a user sees their own sessions, traces and approval requests; an approver sees
every pending request too; auditors and admins see everything. Another principal's object is reported
as not found — its existence is not disclosed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from corral.governance.approvals import PENDING
from corral.governance.traces import Trace, merge_records
from corral.server.errors import BadRequest, Forbidden, NotFound
from corral.server.identity import APPROVER, AUDITOR, Principal
from corral.server.leases import session_key
from corral.server.runs import status_of

PAGE_DEFAULT = 50
PAGE_MAX = 500


# -------------------------------------------------------------------------------------------- sessions


def encode_cursor(created: str | None, session_id: str) -> str:
    raw = json.dumps([created or "", session_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, session_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(session_id, str):
            raise ValueError("not two strings")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"?after={cursor!r} is not a cursor this server gave out ({exc})") from None
    return created, session_id


def _live_status(store: Any, summary: dict[str, Any], now: Any) -> str:
    status = summary.get("status")
    if status is None:
        return status_of(summary.get("stop_reason"))
    if status == "running":
        lease = store.get_lease(session_key(summary["id"]))
        if lease is None or lease["expires_at"] <= now:
            return "interrupted"  # its server went away mid-run; recovery has (or will have) cleaned up
    return status


def list_sessions(
    store: Any,
    principal: Principal,
    *,
    agent: str | None = None,
    owner: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = PAGE_DEFAULT,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """A page of the sessions ``principal`` may see, newest first; ``next`` continues it."""
    from datetime import UTC, datetime

    if not 1 <= limit <= PAGE_MAX:
        raise BadRequest(f"?limit= is from 1 to {PAGE_MAX}, got {limit}")
    if not principal.reads_all:
        if owner is not None and not principal.owns(owner):
            return {"sessions": [], "next": None}
        owner = principal.name
    before = decode_cursor(after) if after else None
    stored_status = "running" if status == "interrupted" else status
    rows = store.query_sessions(agent=agent, principal=owner, status=stored_status, before=before, limit=limit + 1,
                                stop_reason=stop_reason)
    more = len(rows) > limit
    rows = rows[:limit]
    now = datetime.now(UTC)
    out = []
    for row in rows:
        row = dict(row)
        row["status"] = _live_status(store, row, now)
        out.append(row)
    if status is not None:
        out = [row for row in out if row["status"] == status]
    last = rows[-1] if rows else None
    return {"sessions": out, "next": encode_cursor(last["created"], last["id"]) if more and last else None}


def visible_session(store: Any, principal: Principal, session_id: str) -> dict[str, Any]:
    """The stored session record, if ``principal`` may see it; ``NotFound`` otherwise (either way)."""
    record = store.get_session(session_id)
    if record is None or not principal.sees(record.get("principal")):
        raise NotFound(f"no session {session_id!r}")
    return record


def changeable_session(store: Any, principal: Principal, session_id: str) -> dict[str, Any]:
    """A session ``principal`` may run: their own (as a user), or any (as an admin)."""
    record = visible_session(store, principal, session_id)
    if not (principal.has("admin") or (principal.owns(record.get("principal")) and principal.has("user"))):
        raise Forbidden(f"{principal.name} may read session {session_id} but not run it "
                        "(running needs the user role on one's own session, or admin)")
    return record


def session_view(store: Any, governor: Any, principal: Principal, session_id: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    record = visible_session(store, principal, session_id)
    harness = record.get("harness") or {}
    stop_reason = record.get("stop_reason", harness.get("stop_reason"))
    summary = {"id": record["id"], "status": record.get("status"), "stop_reason": stop_reason}
    budget = governor.budget_state(session_id).view().to_dict() if governor is not None else _no_budget()
    return {
        "id": record["id"],
        "agent": record.get("agent"),
        "principal": record.get("principal"),
        "roles": list(record.get("roles") or ()),
        "phase": _phase(store, record),
        "status": _live_status(store, summary, datetime.now(UTC)),
        "stop_reason": stop_reason,
        "budget": budget,
        "transcript": list(harness.get("transcript") or ()),
        "created": record.get("created"),
        "updated": record.get("updated"),
    }


def _phase(store: Any, record: dict[str, Any]) -> str:
    """The phase a resumed session is in: a commit whose transaction is over (rolled back by recovery,
    say) leaves the session in explore, as ``Session.resume`` finds it."""
    phase = record.get("phase") or "explore"
    if phase == "commit" and record.get("tx"):
        tx = store.get_transaction(record["tx"])
        if tx is not None and tx.get("state") != "open":
            return "explore"
    return phase


def _no_budget() -> dict[str, Any]:
    return {"limit": None, "spent": 0.0, "reserved": 0.0, "pct": 0.0, "gate": None}


# --------------------------------------------------------------------------------------------- traces


def session_traces(store: Any, principal: Principal, session_id: str) -> list[dict[str, Any]]:
    visible_session(store, principal, session_id)
    return [t.to_dict() for t in merge_records(store.records(session_id))]


def trace_detail(store: Any, principal: Principal, trace_id: str) -> dict[str, Any]:
    """One trace with ``explain``: the lines ``corral why`` prints."""
    record = store.find_record(trace_id)
    if record is None or not isinstance(record.get("session"), str):
        raise NotFound(f"no trace {trace_id!r}")
    session = store.get_session(record["session"])
    owner = session.get("principal") if session is not None else record.get("principal")
    if not principal.sees(owner):
        raise NotFound(f"no trace {trace_id!r}")
    trace: Trace | None = next((t for t in merge_records(store.records(record["session"])) if t.id == trace_id), None)
    if trace is None:
        raise NotFound(f"{trace_id!r} is the outcome of trace {record.get('ref')!r}, not a trace of its own")
    data = trace.to_dict()
    data["explain"] = trace.explain().split("\n")
    return data


# ------------------------------------------------------------------------------------------ approvals


def list_approvals(store: Any, principal: Principal, status: str | None = PENDING) -> list[dict[str, Any]]:
    """Approval requests ``principal`` may see: approvers, auditors and admins every one, users their own."""
    rows = store.find_approvals(status=status)
    if not principal.has(APPROVER, AUDITOR):
        rows = [a for a in rows if principal.owns(a.get("principal"))]
    rows.sort(key=lambda a: (a.get("created") or "", a["id"]))
    return [{"id": a["id"], "session": a["session"], "agent": a.get("agent"), "principal": a.get("principal"),
             "tool": a["tool"], "args": a.get("args") or {}, "reason": a.get("reason") or "",
             "created": a.get("created"), "expires": a["expires"], "status": a["status"],
             "approver": a.get("approver")} for a in rows]


def visible_approval(store: Any, principal: Principal, approval_id: str) -> dict[str, Any]:
    found = store.get_approval(approval_id)
    if found is None or not (principal.has(APPROVER, AUDITOR) or principal.owns(found.get("principal"))):
        raise NotFound(f"no approval request {approval_id!r}")
    return found


# ---------------------------------------------------------------------------------------------- audit


def audit_report(store: Any, session: str | None = None) -> dict[str, Any]:
    """Verify one session's chain, or every session's and every chain's (a chain whose session record
    was deleted included): ``{ok, checked, problems: [{session, record, what}]}``."""
    from corral.store.audit import verify_store

    if session is not None and store.get_session(session) is None:
        raise NotFound(f"no session {session!r}")
    results = verify_store(store, session)
    problems = [{"session": r["session"], "record": r.get("bad_record"), "what": r["why"]}
                for r in results if not r["ok"]]
    return {"ok": not problems, "checked": len(results), "problems": problems}


# --------------------------------------------------------------------------------------------- policy


def policy_report(store: Any, agent: Any) -> dict[str, Any]:
    """Each rule of ``agent`` with how often it matched over the stored calls: hits, blocks, approvals,
    and — for shadow rules — the calls it would have blocked (``rule_counts``, as ``corral rules`` counts)."""
    from corral.governance.rules.replay import rule_counts

    counts = rule_counts(store, agent.governor.policy, agent=agent.name)
    return {"agent": agent.name, "policy_sha256": agent.governor.policy_sha256,
            "rules": [count.to_dict() for count in counts]}
