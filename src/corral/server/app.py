"""The FastAPI app: the routers, the limits in front of them, and the one place errors become answers.

``create_app(service)`` builds it around a running ``Service``; ``app_from_environment()`` is the factory
uvicorn's workers call (``corral serve`` hands them the agent files and store through the environment).
The console (``console.install``) shares the app: its pages at ``/``, the API under ``/v1``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.errors import StoreError
from corral.server import console
from corral.server.errors import ApiError, BadRequest, NotFound, Unavailable, Unprocessable
from corral.server.limits import MAX_BODY, BodyTooLarge, Limits, too_large
from corral.server.routes import agents, approvals, audit, calls, health, policy, sessions, traces
from corral.server.service import Service

log = logging.getLogger("corral.server")

ENVIRONMENT = "CORRAL_SERVE_CONFIG"

DESCRIPTION = """\
corral's HTTP API: run governed agents, decide calls for enforcement points elsewhere (`/v1/check`),
approve what waits for a person, read the proof traces and verify the audit log.

Every route but `/v1/health` needs `Authorization: Bearer TOKEN` (`corral principals add NAME --role ROLE`
prints one). Errors are `{"error": {"code", "message"}}`.
"""


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _where(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] if isinstance(loc, list | tuple) else [str(loc)]
    return ".".join(parts) or "body"


def _validation(exc: RequestValidationError) -> ApiError:
    problems = exc.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            ctx = problem.get("ctx") or {}
            return BadRequest(f"the body is not valid JSON: {ctx.get('error') or problem.get('msg')}",
                              code="malformed_json")
    text = "; ".join(f"{_where(p.get('loc', ()))}: {p.get('msg')}"
                     + (f" (got {json.dumps(p['input'], default=str)[:80]})" if p.get("type") != "missing"
                        and "input" in p and not isinstance(p["input"], dict) else "")
                     for p in problems[:10])
    return Unprocessable(text or "the request does not fit its schema")


def create_app(service: Service, *, max_body: int = MAX_BODY, manage: bool = True) -> FastAPI:
    """The app around ``service``; with ``manage`` the app starts it and closes it with its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage:
            service.start()
        try:
            yield
        finally:
            app.state.console_hub.detach()
            if manage:
                service.close()

    from corral.server.routes.health import VERSION

    app = FastAPI(title="corral", version=VERSION, description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.service = service
    for module in (health, agents, sessions, traces, approvals, calls, audit, policy):
        app.include_router(module.router)

    console.install(app, service)

    def answer(request: Request, error: ApiError) -> Response:
        """The one place an error becomes an answer: JSON for the API, a page for the console."""
        if console.is_console(request):
            return console.error_page(request, error.status, error.message)
        return _error(error)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, _validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, BodyTooLarge):
            return answer(request, too_large(max_body))
        if exc.status_code == 404:
            return answer(request, NotFound(f"no route {request.method} {request.url.path}"))
        if exc.status_code == 405:
            return answer(request, ApiError(f"{request.method} is not allowed on {request.url.path}",
                                            code="method_not_allowed").with_status(405))
        if exc.status_code == 400:
            return answer(request, BadRequest(str(exc.detail)))
        return answer(request, ApiError(str(exc.detail), code="http_error").with_status(exc.status_code))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        log.error("corral serve: store error on %s %s: %s", request.method, request.url.path, exc)
        return answer(request, Unavailable(f"the store did not answer; nothing was decided: {exc}"))

    app.add_middleware(Limits, max_body=max_body)
    return app


def app_from_environment() -> Any:
    """uvicorn's factory in each worker: the service from ``CORRAL_SERVE_CONFIG`` (JSON)."""
    config = json.loads(os.environ[ENVIRONMENT])
    service = Service(config["agents"], config.get("store"), lease_ttl=config.get("lease", 30.0))
    return create_app(service)
