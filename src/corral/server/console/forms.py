"""The console's forms (POST): sign in and out, start a session, send a message, resume, approve, deny.

Every form but the sign-in is checked for this sign-in's CSRF token and this origin before anything
else (``signin.check_form``), then does what the JSON API's route does, through the same functions
(``routes.sessions.new_session`` / ``start_run``, ``routes.approvals.decide``), and answers with a
redirect to the page that shows the result (so reloading never sends a form twice).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from corral.server import queries
from corral.server.console.pages import safe_next
from corral.server.console.render import page, secure
from corral.server.console.signin import (
    check_form,
    check_login_form,
    keep_login_form_token,
    login_form_token,
    set_cookie,
    sign_in,
    sign_out,
    viewer,
)
from corral.server.errors import BadRequest, Conflict
from corral.server.identity import AuthenticationError
from corral.server.routes.approvals import decide
from corral.server.routes.sessions import new_session, start_run

log = logging.getLogger("corral.server")

router = APIRouter(include_in_schema=False)

MESSAGE_MAX = 100_000
REASON_MAX = 2_000

Field = Annotated[str, Form()]


def _see(path: str) -> RedirectResponse:
    return secure(RedirectResponse(path, status_code=303))  # type: ignore[return-value]


@router.post("/login")
def login(request: Request, token: Field = "", csrf: Field = "", next: Field = "/") -> Response:
    check_login_form(request, csrf)
    try:
        principal, signin_id = sign_in(request.app.state.service.store, token)
    except AuthenticationError as exc:
        value = login_form_token(request)
        response = page(request, "login.html", {"next": safe_next(next), "why": str(exc), "login_csrf": value},
                        status=401)
        keep_login_form_token(request, response, value)
        return response
    log.info("corral serve: %s signed in to the console", principal.name)
    response = _see(safe_next(next))
    set_cookie(request, response, signin_id)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Field = "") -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    response = _see("/login?why=" + "signed+out")
    sign_out(request, response)
    return response


# ----------------------------------------------------------------------------------------- sessions


def _message(text: str) -> str:
    text = text.strip()
    if not text:
        raise BadRequest("the message is empty: write what the agent should do")
    if len(text) > MESSAGE_MAX:
        raise BadRequest(f"the message is {len(text):,} characters; at most {MESSAGE_MAX:,}")
    return text


@router.post("/sessions")
def start_session(request: Request, agent: Field = "", text: Field = "", csrf: Field = "") -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    service = request.app.state.service
    prompt = _message(text) if text.strip() else None
    created = new_session(service, who.principal, agent)
    if prompt is not None:
        start_run(service, who.principal, created["id"], prompt)
    return _see(f"/sessions/{created['id']}")


@router.post("/sessions/{session_id}/messages")
def send_message(request: Request, session_id: str, text: Field = "", csrf: Field = "") -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    start_run(request.app.state.service, who.principal, session_id, _message(text))
    return _see(f"/sessions/{session_id}")


@router.post("/sessions/{session_id}/resume")
def resume(request: Request, session_id: str, csrf: Field = "") -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    start_run(request.app.state.service, who.principal, session_id, None)
    return _see(f"/sessions/{session_id}")


# ---------------------------------------------------------------------------------------- approvals


def _decide(request: Request, approval_id: str, reason: str, csrf: str, *, approved: bool) -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    if len(reason) > REASON_MAX:
        raise BadRequest(f"the reason is {len(reason):,} characters; at most {REASON_MAX:,}")
    service = request.app.state.service
    request_record = queries.visible_approval(service.store, who.principal, approval_id)
    decided = decide(service, who.principal, approval_id, reason.strip() or None, approved=approved)
    resumed = resume_after_decision(service, request_record["session"])
    notice = {"decided": approval_id, "as": decided.status, "session": request_record["session"],
              "resumed": "1" if resumed else "0"}
    return _see("/approvals?" + urlencode(notice))


def resume_after_decision(service: Any, session_id: str) -> bool:
    """Once no request of a paused session is pending any more, the session resumes: the harness
    re-submits the paused call (an approved call runs once; a denied one goes back to the model as a
    refusal). The run is the session's own — its principal, its agent — not the approver's."""
    record = service.store.get_session(session_id)
    if record is None or record.get("status") != "awaiting_approval":
        return False
    if service.store.find_approvals(session=session_id, status="pending"):
        return False
    agent = service.agents.get(record.get("agent") or "")
    if agent is None or agent.harness is None:
        return False  # a hook's or proxy's session: the enforcement point retries the call itself
    try:
        service.run(agent, session_id, None)
    except Conflict as exc:
        log.info("corral serve: session %s not resumed after a decision: %s", session_id, exc)
        return False
    return True


@router.post("/approvals/{approval_id}/approve")
def approve(request: Request, approval_id: str, reason: Field = "", csrf: Field = "") -> Response:
    return _decide(request, approval_id, reason, csrf, approved=True)


@router.post("/approvals/{approval_id}/deny")
def deny(request: Request, approval_id: str, reason: Field = "", csrf: Field = "") -> Response:
    return _decide(request, approval_id, reason, csrf, approved=False)
