"""The console's pages (GET): sessions, a session, approvals, audit, policy — and the sign-in page.

Each page asks ``corral.server.queries`` exactly what the JSON API asks for the same principal, so a
page never shows what the API would not (a user their own sessions and requests, an approver every
pending request, an auditor or admin everything), and a role the API requires is required here too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.governance.traces import Trace
from corral.server import queries
from corral.server.console import views
from corral.server.console.render import page, secure
from corral.server.console.signin import SignInRequired, keep_login_form_token, login_form_token, viewer
from corral.server.errors import BadRequest, Forbidden
from corral.server.identity import ADMIN, APPROVER, AUDITOR, USER, Principal
from corral.server.models import SessionStatus, StopReason

router = APIRouter(include_in_schema=False)

STATUSES = get_args(SessionStatus)
STOP_REASONS = get_args(StopReason)
APPROVAL_STATUSES = ("pending", "approved", "denied", "used", "expired", "all")


def _service(request: Request) -> Any:
    return request.app.state.service


def _base(request: Request, who: Any, current: str) -> dict[str, Any]:
    principal: Principal = who.principal
    return {"me": principal, "csrf": who.csrf, "current": current, "roles": ", ".join(principal.roles),
            "is_auditor": principal.has(AUDITOR), "is_approver": principal.has(APPROVER)}


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if value in (None, ""):
        return None
    if value not in allowed:
        raise BadRequest(f"?{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _text(value: str | None, name: str, limit: int = 200) -> str | None:
    if value in (None, ""):
        return None
    if len(value) > limit:
        raise BadRequest(f"?{name}= is at most {limit} characters")
    return value.strip() or None


# ------------------------------------------------------------------------------------------ sign-in


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, next: str | None = None, why: str | None = None) -> Response:
    try:
        viewer(request)
        return secure(RedirectResponse(safe_next(next), status_code=303))
    except SignInRequired:
        pass
    token = login_form_token(request)
    response = page(request, "login.html", {"next": safe_next(next), "why": _known(why), "login_csrf": token})
    keep_login_form_token(request, response, token)
    return response


def _known(why: str | None) -> str:
    """The console's own words about a sign-in that ended; any other text in the URL is not shown, so a
    link cannot put words of its choosing on the sign-in page."""
    if why and why.startswith(("signed out", "your sign-in")):
        return why[:300]
    return ""


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this console only (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or value.startswith("/v1"):
        return "/"
    return value[:500]


# ----------------------------------------------------------------------------------------- sessions


@router.get("/", response_class=HTMLResponse)
def sessions(request: Request, agent: str | None = None, principal: str | None = None, status: str | None = None,
             stop_reason: str | None = None, after: str | None = None) -> Response:
    started = time.perf_counter()
    who = viewer(request)
    service = _service(request)
    filters = {"agent": _text(agent, "agent"), "principal": _text(principal, "principal", 100),
               "status": _choice(status, STATUSES, "status"),
               "stop_reason": _choice(stop_reason, STOP_REASONS, "stop_reason")}
    listing = queries.list_sessions(service.store, who.principal, agent=filters["agent"], owner=filters["principal"],
                                    status=filters["status"], stop_reason=filters["stop_reason"],
                                    after=_text(after, "after", 1000))
    query = {k: v for k, v in filters.items() if v}
    runnable = [a.name for a in service.agents.values() if a.harness is not None]
    return page(request, "sessions.html", {
        **_base(request, who, "sessions"), "sessions": listing["sessions"], "next": listing["next"],
        "filters": filters, "query": query, "paged": bool(after), "agents": sorted(service.agents),
        "runnable": runnable, "statuses": STATUSES, "stop_reasons": STOP_REASONS,
        "can_start": who.principal.has(USER) and bool(runnable)}, started=started)


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session(request: Request, session_id: str) -> Response:
    started = time.perf_counter()
    who = viewer(request)
    return page(request, "session.html", {**_base(request, who, "sessions"),
                                          **session_context(_service(request), who.principal, session_id)},
                started=started)


def session_context(service: Any, principal: Principal, session_id: str) -> dict[str, Any]:
    """Everything the session page shows; the live stream re-renders parts of it."""
    store = service.store
    record = queries.visible_session(store, principal, session_id)
    agent = service.agents.get(record.get("agent") or "")
    governor = agent.governor if agent is not None else None
    view = queries.session_view(store, governor, principal, session_id)
    traces = queries.session_traces(store, principal, session_id)
    items, rest = views.timeline(view["transcript"], traces)
    owner = record.get("principal")
    can_run = principal.has(ADMIN) or (principal.owns(owner) and principal.has(USER))
    waiting = [a for a in queries.list_approvals(store, principal) if a["session"] == session_id]
    return {
        "s": view, "items": items, "rest": rest, "explain": explain,
        "budget_gauge": views.gauge(view["budget"], governor.gates if governor is not None else ()),
        "tx": views.transaction(store, record),
        "can_send": can_run and agent is not None and agent.harness is not None,
        "running": view["status"] == "running", "waiting": waiting,
        "last_trace": traces[-1]["id"] if traces else "",
    }


def explain(trace: dict[str, Any]) -> list[str]:
    """The lines ``corral why`` prints for one trace."""
    return Trace(trace).explain().split("\n")


# ---------------------------------------------------------------------------------------- approvals


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, status: str | None = None) -> Response:
    started = time.perf_counter()
    who = viewer(request)
    chosen = _choice(status, APPROVAL_STATUSES, "status") or "pending"
    rows = queries.list_approvals(_service(request).store, who.principal, None if chosen == "all" else chosen)
    now = datetime.now(UTC)
    for row in rows:
        row["time_left"] = views.time_left(row.get("expires"), now) if row["status"] == "pending" else row["status"]
        row["mine"] = who.principal.owns(row.get("principal"))
        row["can_decide"] = who.principal.has(APPROVER) and not row["mine"] and row["status"] == "pending"
    return page(request, "approvals.html", {**_base(request, who, "approvals"), "approvals": rows,
                                            "status": chosen, "statuses": APPROVAL_STATUSES}, started=started)


# -------------------------------------------------------------------------------------------- audit


def _needs(principal: Principal, role: str) -> None:
    """The role the JSON API requires for the same read (admins have every role)."""
    if not principal.has(role):
        raise Forbidden(f"{principal.name} needs the role {role} (or admin) for this page")


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, session: str | None = None) -> Response:
    started = time.perf_counter()
    who = viewer(request)
    _needs(who.principal, AUDITOR)
    chosen = _text(session, "session")
    report = queries.audit_report(_service(request).store, chosen)
    return page(request, "audit.html", {**_base(request, who, "audit"), "report": report, "session": chosen or ""},
                started=started)


# ------------------------------------------------------------------------------------------- policy


@router.get("/policy", response_class=HTMLResponse)
def policy(request: Request, agent: str | None = None, replay: str | None = None) -> Response:
    started = time.perf_counter()
    who = viewer(request)
    _needs(who.principal, AUDITOR)
    service = _service(request)
    names = sorted(service.agents)
    chosen = _text(agent, "agent") or (names[0] if names else None)
    report = queries.policy_report(service.store, service.agent(chosen or ""))
    files = views.rule_files(service.agents.values())
    wanted = _text(replay, "replay")
    if wanted is not None and wanted not in files:
        raise BadRequest(f"?replay={wanted!r} is not a rule file beside a served agent ({', '.join(files) or 'none'})")
    replayed, problem = (_replay(service.store, files[wanted], wanted, chosen) if wanted else (None, None))
    return page(request, "policy.html", {**_base(request, who, "policy"), "report": report, "agents": names,
                                          "agent": chosen, "files": list(files), "replay": wanted or "",
                                          "replayed": replayed, "problem": problem}, started=started)


def _replay(store: Any, path: Any, name: str, agent: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """Re-decide the agent's stored calls under the rule file (``corral rules replay``'s function)."""
    from corral.errors import RuleSyntaxError
    from corral.governance.rules import Policy
    from corral.governance.rules.replay import replay

    try:
        rules = Policy.from_sources([(path.read_text(encoding="utf-8"), name)])
    except RuleSyntaxError as exc:  # it names the file, line and column itself
        return None, str(exc)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{name} cannot be read: {exc}"
    report = replay(store, rules, agent=agent)
    return {"replayed": report.replayed, "skipped": sorted(report.skipped.items()), "changes": report.changes,
            "flips": report.flips, "problems": list(report.problems)}, None
