"""``GET /v1/audit/verify``: check the hash chains (one session's, or every one), name what is broken."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from corral.server import queries
from corral.server.deps import ServiceDep, role
from corral.server.identity import AUDITOR, Principal
from corral.server.models import ID_MAX, ID_PATTERN, AuditReport
from corral.server.routes import errors

router = APIRouter(tags=["audit"])


@router.get("/v1/audit/verify", response_model=AuditReport, responses=errors(401, 403, 404))
def verify(
    service: ServiceDep,
    principal: Annotated[Principal, Depends(role(AUDITOR))],
    session: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX)] = None,
) -> dict:
    return queries.audit_report(service.store, session)
