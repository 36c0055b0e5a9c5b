"""The policy decision point: ``/v1/check`` decides a call that runs somewhere else — in Claude Code, behind
an MCP proxy, in another framework — exactly as the kernel's ``begin_call`` does, and ``/v1/calls/{id}/finish``
settles it once it ran.

The session is the enforcement point's own id (Claude Code's ``session_id``, a proxy connection's): the
first check under an id starts the session for the calling principal, with the principal's roles.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from corral.errors import (
    ApprovalDenied,
    ApprovalPending,
    Blocked,
    CallNotOpen,
    ConfigError,
    GovernanceError,
    PhaseError,
    TransactionFailed,
)
from corral.server.errors import BadRequest, Conflict, Forbidden, NotFound
from corral.server.identity import USER, Principal
from corral.server.service import Service


def _refusal(exc: GovernanceError) -> dict[str, Any]:
    trace = exc.trace
    if trace is None:
        raise Conflict(str(exc)) from None
    data = trace.to_dict()
    decision = data.get("decision") or "blocked"
    answer = {"call_id": data["id"], "decision": decision, "reason": data.get("reason") or str(exc), "trace": data}
    if isinstance(exc, ApprovalPending):
        answer["approval"] = exc.approval_id
    return answer


def check(service: Service, principal: Principal, agent_name: str, session_id: str, tool: str,
          args: dict[str, Any], effect: str | None = None) -> dict[str, Any]:
    """Decide one call; the answer is the decision (every decision, a refusal too, is a 200)."""
    if not principal.has(USER):
        raise Forbidden(f"{principal.name} has no role that acts through enforcement points (user or admin)")
    agent = service.agent(agent_name)
    gov = agent.governor
    store = service.store
    record = store.get_session(session_id)
    if record is None:
        session = gov.session(principal.name, principal.roles, id=session_id, create=True)
        service.sessions.put(gov, session_id, session)
    else:
        if not principal.sees(record.get("principal")):
            raise NotFound(f"no session {session_id!r}")
        if not (principal.owns(record.get("principal")) or principal.has("admin")):
            raise Forbidden(f"session {session_id} acts for {record.get('principal')}, not {principal.name}")
        if record.get("agent") != agent.name:
            raise Conflict(f"session {session_id} belongs to agent {record.get('agent')!r}, not {agent.name!r}")
        session = service.sessions.get(gov, session_id, record)
    agent.ensure_tool(tool, effect)
    try:
        # a write is durable anyway: its open call is filed in the same batch, so any server may finish it;
        # a read stays group-committed (the hot path) and is finished on the server that decided it
        handle = session.begin_call(tool, args, durable=session.effect_of(tool, args) not in (None, "read"))
    except (ApprovalPending, Blocked, ApprovalDenied, PhaseError) as exc:
        return _refusal(exc)
    except ConfigError as exc:
        if exc.trace is not None:
            return _refusal(exc)
        raise BadRequest(str(exc)) from None
    service.calls.add(handle.call_id, handle, principal.key)
    # the decision record itself, not a copy of it: the answer is serialised before anyone finishes the call
    return {"call_id": handle.call_id, "decision": handle.decision, "reason": handle.reason,
            "trace": handle.pending.record}


def finish(service: Service, principal: Principal, call_id: str, result: Any, error: str | None,
           cost: float | None = None) -> dict[str, Any]:
    """Settle an allowed call with what the tool returned, or the error it failed with. Inside a commit a
    failed call is a failed step: the transaction rolls back (§7) and the answer says how it ended."""
    found = service.calls.peek(call_id)
    if found is None:
        return _finish_elsewhere(service, principal, call_id, result, error, cost)
    handle, owner = found
    if owner != principal.key and not principal.has("admin"):
        raise NotFound(f"no call {call_id!r} waits to be finished")
    handle = service.calls.take(call_id)
    if handle is None:
        raise Conflict(f"call {call_id} was finished meanwhile")
    try:
        if error is not None:
            try:
                handle.finish(error=error)
            except TransactionFailed as failed:
                return {"call_id": call_id, "status": "error",
                        "transaction": failed.tx.state if failed.tx else None}
            return {"call_id": call_id, "status": "error"}
        handle.finish(result=result, cost=Decimal(str(cost)) if cost is not None else None)
    except CallNotOpen:
        raise Conflict(f"call {call_id} was finished already (by another server)") from None
    return {"call_id": call_id, "status": "ok"}


def _finish_elsewhere(service: Service, principal: Principal, call_id: str, result: Any, error: str | None,
                      cost: float | None) -> dict[str, Any]:
    """A call this server did not decide (another server did, or this one before a restart): finished by
    its id through the kernel, exactly once — for calls begun durably (every write)."""
    record = service.store.find_record(call_id)
    if record is None or not principal.sees(record.get("principal")):
        raise NotFound(f"no call {call_id!r} waits to be finished")
    if not (principal.owns(record.get("principal")) or principal.has("admin")):
        raise NotFound(f"no call {call_id!r} waits to be finished")
    agent = service.agents.get(record.get("agent") or "")
    if agent is None:
        raise Conflict(f"call {call_id} belongs to agent {record.get('agent')!r}, which this server does not serve")
    try:
        detached = agent.governor.resume_call(call_id)
        detached.finish(result=result, error=error, cost=Decimal(str(cost)) if cost is not None else None)
    except CallNotOpen:
        raise Conflict(f"call {call_id} is not waiting to be finished: it was refused, finished already, or is "
                       "a read decided by another server (reads are finished where they were decided)") from None
    service.sessions.forget(record.get("session") or "")
    return {"call_id": call_id, "status": "error" if error is not None else "ok"}
