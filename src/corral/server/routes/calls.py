"""``POST /v1/check`` and ``POST /v1/calls/{id}/finish``: the policy decision point for enforcement points
outside the server (the Claude Code hook and the MCP proxy with ``--server``, any framework)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from corral.server import decisions
from corral.server.deps import FastCaller, ServiceDep
from corral.server.errors import BadRequest
from corral.server.models import ID_MAX, ID_PATTERN, CheckAnswer, CheckRequest, FinishAnswer, FinishRequest
from corral.server.routes import errors

router = APIRouter(tags=["decision point"])

CallId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX, description="The call_id /v1/check answered")]


def _json(answer: dict[str, Any]) -> Response:
    """The answer as JSON, already shaped by ``decisions`` (the hot path skips a second validation)."""
    return Response(json.dumps(answer, ensure_ascii=False, default=str, separators=(",", ":")),
                    media_type="application/json")


@router.post("/v1/check", response_model=CheckAnswer, responses=errors(401, 403, 404, 409))
async def check(body: CheckRequest, principal: FastCaller, service: ServiceDep) -> Response:
    """Decide a call as the kernel's ``begin_call`` does: ``allowed``/``flagged``/``approved`` (run it, then
    finish it), ``pending`` (an approval is needed: ``approval`` names it), ``denied`` or ``blocked``."""
    return _json(await run_in_threadpool(decisions.check, service, principal, body.agent, body.session, body.tool,
                                         body.args, body.effect))


@router.post("/v1/calls/{call_id}/finish", response_model=FinishAnswer, responses=errors(401, 404, 409))
async def finish(call_id: CallId, body: FinishRequest, principal: FastCaller, service: ServiceDep) -> Response:
    """Record what happened to an allowed call: ``{"result": …}`` or ``{"error": "…"}``."""
    given = body.model_fields_set
    if "result" in given and "error" in given:
        raise BadRequest("give the call's result or its error, not both")
    return _json(await run_in_threadpool(decisions.finish, service, principal, call_id, body.result, body.error,
                                         body.cost))
