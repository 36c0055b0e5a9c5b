"""The web console: server-rendered pages over the same queries as the JSON API, served at ``/``.

``install(app, service)`` adds its pages, forms, live event streams and static files to the API's app.
Pages: ``/login``, ``/`` (sessions), ``/sessions/{id}``, ``/approvals``, ``/audit``, ``/policy``.
No build step and nothing fetched from outside: Jinja templates, one stylesheet, one small script.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from corral.server.console import forms, live, pages
from corral.server.console.render import STATIC, page, secure
from corral.server.console.signin import FormRejected, SignInRequired

API_PREFIXES = ("/v1/", "/openapi.json", "/docs")

TITLES = {400: "That did not work", 401: "Sign in", 403: "Not allowed", 404: "Not found", 409: "Not now",
          413: "Too large", 422: "That did not work", 503: "The store did not answer"}


def is_console(request: Request) -> bool:
    """Whether a request is the console's (HTML) rather than the API's (JSON)."""
    path = request.url.path
    return path != "/v1" and not path.startswith(API_PREFIXES)


def error_page(request: Request, status: int, message: str) -> Response:
    back = request.headers.get("referer") or "/"
    if not back.startswith(f"{request.url.scheme}://{request.headers.get('host', '')}/"):
        back = "/"
    return page(request, "error.html", {"title": TITLES.get(status, "Something went wrong"), "message": message,
                                        "back": back}, status=status)


def install(app: FastAPI, service: Any) -> None:
    """Add the console to ``app``; the live hub listens to every served agent's governor."""
    hub = live.Hub()
    hub.attach([agent.governor for agent in service.agents.values()])
    app.state.console_hub = hub
    for module in (pages, forms, live):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="console-static")

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if exc.why:
            target += "&why=" + quote(exc.why)
        return secure(RedirectResponse(target, status_code=303))

    @app.exception_handler(FormRejected)
    async def rejected(request: Request, exc: FormRejected) -> Response:
        return error_page(request, 403, f"Refused: {exc}. Nothing was changed.")
