"""Rendering the console: one Jinja environment (autoescaping every template), the security headers
every console answer carries, and the time each page took on the server (``Server-Timing``).

The Content-Security-Policy allows nothing from outside this origin — no scripts, styles, fonts or
connections elsewhere — and no inline script or style at all, so even a value that escaped escaping
could not run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from corral.server.console import views

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"], default=True),
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters["pretty"] = views.pretty
ENV.filters["badge"] = views.badge
ENV.filters["short_time"] = views.short_time


def secure(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def html(template: str, context: dict[str, Any]) -> str:
    return ENV.get_template(template).render(**context)


def page(request: Request, template: str, context: dict[str, Any], *, started: float | None = None,
         status: int = 200) -> HTMLResponse:
    """A whole page; ``started`` (``time.perf_counter()`` when the handler began) becomes
    ``Server-Timing: app;dur=MS`` — the server's own time for the page, reading and rendering."""
    body = html(template, {"request": request, **context})
    response = HTMLResponse(body, status_code=status)
    if started is not None:
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return secure(response)
