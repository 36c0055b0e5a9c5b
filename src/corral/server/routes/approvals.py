"""``/v1/approvals``: the queue, and deciding a request — never one's own (four eyes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from corral.errors import ApprovalDenied, ConfigError
from corral.governance.approvals import resolve
from corral.server import queries
from corral.server.deps import Caller, ServiceDep, role
from corral.server.errors import Conflict, Forbidden
from corral.server.identity import APPROVER, Principal
from corral.server.models import ID_MAX, ID_PATTERN, ApprovalDecide, ApprovalDecided, ApprovalItem
from corral.server.routes import errors

router = APIRouter(tags=["approvals"])

ApprovalId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX, description="An approval request's id")]
Status = Literal["pending", "approved", "denied", "used", "expired", "all"]


@router.get("/v1/approvals", response_model=list[ApprovalItem], responses=errors(401))
def list_approvals(service: ServiceDep, principal: Caller, status: Annotated[Status, Query()] = "pending") -> list:
    return queries.list_approvals(service.store, principal, None if status == "all" else status)


def decide(service: ServiceDep, principal: Principal, approval_id: str, reason: str | None, *,
           approved: bool) -> ApprovalDecided:
    """Approve or deny a pending request as ``principal``: the API and the console both decide here."""
    if not principal.has(APPROVER):
        raise Forbidden(f"{principal.name} needs the role approver (or admin) to decide approval requests")
    found = queries.visible_approval(service.store, principal, approval_id)
    if principal.owns(found.get("principal")):
        raise Forbidden(f"{principal.name} cannot decide their own request {approval_id}: "
                        "another approver must (four eyes)")
    if found.get("status") != "pending":
        raise Conflict(f"approval {approval_id} is {found.get('status')}, not pending")
    try:
        decided = resolve(service.store, approval_id, principal.name, reason, approved=approved,
                          now=datetime.now(UTC))
    except ApprovalDenied as exc:
        raise Conflict(str(exc)) from None
    except ConfigError as exc:
        if "own request" in str(exc):
            raise Forbidden(str(exc)) from None
        raise Conflict(str(exc)) from None
    return ApprovalDecided(id=approval_id, status=decided["status"], approver=decided["approver"])


@router.post("/v1/approvals/{approval_id}/approve", response_model=ApprovalDecided,
             responses=errors(401, 403, 404, 409))
def approve(approval_id: ApprovalId, service: ServiceDep, principal: Annotated[Principal, Depends(role(APPROVER))],
            body: ApprovalDecide | None = None) -> ApprovalDecided:
    return decide(service, principal, approval_id, body.reason if body else None, approved=True)


@router.post("/v1/approvals/{approval_id}/deny", response_model=ApprovalDecided,
             responses=errors(401, 403, 404, 409))
def deny(approval_id: ApprovalId, service: ServiceDep, principal: Annotated[Principal, Depends(role(APPROVER))],
         body: ApprovalDecide | None = None) -> ApprovalDecided:
    return decide(service, principal, approval_id, body.reason if body else None, approved=False)
