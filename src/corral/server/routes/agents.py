"""``GET /v1/agents``: the agents this server runs, their tools with effects, and their policy's hash."""

from __future__ import annotations

from fastapi import APIRouter

from corral.server.deps import Caller, ServiceDep
from corral.server.models import AgentInfo, ToolInfo
from corral.server.routes import errors

router = APIRouter(tags=["agents"])


@router.get("/v1/agents", response_model=list[AgentInfo], responses=errors(401))
def list_agents(service: ServiceDep, principal: Caller) -> list[AgentInfo]:
    return [AgentInfo(name=a.name, model=a.model, tools=[ToolInfo(**t) for t in a.tools()],
                      policy_sha256=a.governor.policy_sha256) for a in service.agents.values()]
