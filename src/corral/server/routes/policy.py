"""``GET /v1/policy?agent=``: each rule with its hits, blocks, approvals and shadow would-blocks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from corral.server import queries
from corral.server.deps import ServiceDep, role
from corral.server.identity import AUDITOR, Principal
from corral.server.models import ID_MAX, PolicyReport
from corral.server.routes import errors

router = APIRouter(tags=["policy"])


@router.get("/v1/policy", response_model=PolicyReport, responses=errors(401, 403, 404))
def policy(
    service: ServiceDep,
    principal: Annotated[Principal, Depends(role(AUDITOR))],
    agent: Annotated[str, Query(min_length=1, max_length=ID_MAX, description="A served agent's name")],
) -> dict:
    return queries.policy_report(service.store, service.agent(agent))
