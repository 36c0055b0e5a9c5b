"""``/v1/sessions``: start a session, list and read them, send a message, resume after an approval.

A message runs the agent loop on a thread of its own (``runs``): the JSON answer waits for it and is
the object ``corral run --json`` prints; with ``Accept: text/event-stream`` the loop's events stream as
they happen, ending with ``done`` (the same object). A client that goes away leaves the run alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from corral.errors import GovernanceError
from corral.server import queries
from corral.server.deps import Caller, ServiceDep, role
from corral.server.errors import Conflict, Forbidden
from corral.server.identity import USER, Principal
from corral.server.models import (
    ID_MAX,
    ID_PATTERN,
    MessageCreate,
    PhaseMove,
    PhaseMoved,
    PlanCreate,
    PlanCreated,
    RunAnswer,
    SessionCreate,
    SessionCreated,
    SessionPage,
    SessionStatus,
    SessionView,
    StopReason,
    Trace,
)
from corral.server.routes import errors
from corral.server.runs import DONE, Run
from corral.server.service import Service

router = APIRouter(tags=["sessions"])

SessionId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX, description="A session's id")]

_STREAMS = {200: {"model": RunAnswer, "description": "The run's answer, as `corral run --json` prints it; with "
                  "`Accept: text/event-stream`, server-sent events model_text, tool_call, budget, "
                  "approval_pending, error, then done (this object)",
                  "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.post("/v1/sessions", status_code=201, response_model=SessionCreated, responses=errors(401, 403, 404, 409))
def create_session(body: SessionCreate, service: ServiceDep,
                   principal: Annotated[Principal, Depends(role(USER))]) -> dict:
    return new_session(service, principal, body.agent)


def new_session(service: Service, principal: Principal, agent_name: str) -> dict[str, Any]:
    """A new session of a served agent for ``principal`` (the API and the console start them here)."""
    if not principal.has(USER):
        raise Forbidden(f"{principal.name} needs the role user (or admin) to start a session")
    agent = service.runnable(agent_name)
    session = agent.governor.session(principal.name, principal.roles)
    service.set_status(session.id, "new")
    return {"id": session.id, "agent": agent.name, "principal": principal.name, "phase": session.phase,
            "budget": session.budget.to_dict()}


@router.get("/v1/sessions", response_model=SessionPage, responses=errors(401))
def list_sessions(
    service: ServiceDep,
    principal: Caller,
    agent: Annotated[str | None, Query(max_length=ID_MAX)] = None,
    owner: Annotated[str | None, Query(alias="principal", max_length=100)] = None,
    status: Annotated[SessionStatus | None, Query()] = None,
    after: Annotated[str | None, Query(max_length=1_000, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=queries.PAGE_MAX)] = queries.PAGE_DEFAULT,
    stop_reason: Annotated[StopReason | None, Query()] = None,
) -> dict:
    return queries.list_sessions(service.store, principal, agent=agent, owner=owner, status=status, after=after,
                                 limit=limit, stop_reason=stop_reason)


@router.get("/v1/sessions/{session_id}", response_model=SessionView, responses=errors(401, 404))
def get_session(session_id: SessionId, service: ServiceDep, principal: Caller) -> dict:
    record = queries.visible_session(service.store, principal, session_id)
    agent = service.agents.get(record.get("agent") or "")
    return queries.session_view(service.store, agent.governor if agent else None, principal, session_id)


@router.get("/v1/sessions/{session_id}/traces", response_model=list[Trace], responses=errors(401, 404))
def session_traces(session_id: SessionId, service: ServiceDep, principal: Caller) -> list[dict]:
    return queries.session_traces(service.store, principal, session_id)


def start_run(service: Service, principal: Principal, session_id: str, prompt: str | None) -> Run:
    """Run ``principal``'s session on ``prompt`` (None: resume its paused calls); the API and the console
    start runs here."""
    record = queries.changeable_session(service.store, principal, session_id)
    agent = service.runnable(record.get("agent"))
    return service.run(agent, session_id, prompt)


async def _answer(request: Request, run: Run) -> Any:
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_events(run), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        answer = await run.wait()
    except Exception as exc:
        raise Conflict(f"the run of session {run.session_id} failed: {exc}") from None
    return JSONResponse(answer)


async def _events(run: Run) -> AsyncIterator[bytes]:
    queue = run.follow()
    try:
        while True:
            kind, data = await queue.get()
            yield f"event: {kind}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n".encode()
            if kind == DONE or (kind == "error" and data.get("final")):
                return
    finally:
        run.unfollow(queue)


@router.post("/v1/sessions/{session_id}/messages", responses={**_STREAMS, **errors(401, 403, 404, 409)})
async def send_message(session_id: SessionId, body: MessageCreate, request: Request, service: ServiceDep,
                       principal: Caller) -> Any:
    """Run the agent on the message until it stops (409 while the session runs elsewhere)."""
    run = await run_in_threadpool(start_run, service, principal, session_id, body.text)
    return await _answer(request, run)


@router.post("/v1/sessions/{session_id}/resume", responses={**_STREAMS, **errors(401, 403, 404, 409)})
async def resume(session_id: SessionId, request: Request, service: ServiceDep, principal: Caller) -> Any:
    """Re-submit the call(s) the session paused on — an approved call runs once, a denied one goes back to
    the model as a refusal — and carry on, as ``corral run --session ID`` does."""
    run = await run_in_threadpool(start_run, service, principal, session_id, None)
    return await _answer(request, run)


def _idle_session(service: Service, principal: Principal, session_id: str) -> tuple[Any, Any]:
    """A session to change outside a run: the caller's own (or an admin's), not being run anywhere."""
    record = queries.changeable_session(service.store, principal, session_id)
    agent = service.agent(record.get("agent") or "")
    if service.leases.running_elsewhere(session_id):
        raise Conflict(f"session {session_id} is being run; change its phase when the run has stopped")
    service.sessions.forget(session_id)
    return agent, agent.governor.session(id=session_id)


@router.post("/v1/sessions/{session_id}/plans", status_code=201, response_model=PlanCreated,
             responses=errors(401, 403, 404, 409))
def propose(session_id: SessionId, body: PlanCreate, service: ServiceDep, principal: Caller) -> dict:
    """Propose a plan in decide, for a session whose calls run elsewhere (a hook's, a proxy's)."""
    agent, session = _idle_session(service, principal, session_id)
    for step in body.steps:  # tools the enforcement points name are declared on first use, as /v1/check does
        if isinstance(step.get("tool"), str):
            agent.ensure_tool(step["tool"])
    try:
        plan = session.propose(body.steps, body.rationale)
    except GovernanceError as exc:
        raise Conflict(str(exc)) from None
    return {"id": plan.id, "sha256": plan.sha256, "steps": len(plan.steps)}


@router.post("/v1/sessions/{session_id}/phase", response_model=PhaseMoved, responses=errors(401, 403, 404, 409))
def move_phase(session_id: SessionId, body: PhaseMove, service: ServiceDep, principal: Caller) -> dict:
    """Move a session between phases with the kernel's rules, as ``corral phase`` does; a commit opened here
    is held by the session (its calls come through ``/v1/check``), so recovery leaves it alone."""
    _, session = _idle_session(service, principal, session_id)
    try:
        if body.phase == "commit":
            plan = body.plan or (session.plan.id if session.plan is not None else None)
            tx = session.begin_commit(plan, held=True)
            return {"id": session_id, "phase": "commit", "plan": plan, "transaction": tx.id}
        session.back_to(body.phase)
    except GovernanceError as exc:
        raise Conflict(str(exc)) from None
    return {"id": session_id, "phase": session.phase, "plan": session.plan.id if session.plan else None,
            "transaction": None}
