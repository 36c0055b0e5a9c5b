"""``GET /v1/traces/{id}``: one proof trace, with the lines ``corral why`` prints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from corral.server import queries
from corral.server.deps import Caller, ServiceDep
from corral.server.models import ID_MAX, ID_PATTERN, TraceExplained
from corral.server.routes import errors

router = APIRouter(tags=["traces"])

TraceId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX, description="A trace's id")]


@router.get("/v1/traces/{trace_id}", response_model=TraceExplained, responses=errors(401, 404))
def get_trace(trace_id: TraceId, service: ServiceDep, principal: Caller) -> dict:
    return queries.trace_detail(service.store, principal, trace_id)
