"""The browser's tools bound to the harness: each call finds its session and goes to that session's tab.

The ``BrowserHost`` (one Chromium) is made on the harness's first browser call and closed with the
harness; a session's context is closed when its run ends. Every page load a click, a form or a redirect
causes is decided by the session's rules on ``browser_navigate`` (``guard``).
"""

from __future__ import annotations

import threading
from typing import Any

from corral.harness.tools.browser import SPECS, BrowserHost

NAVIGATE = "browser_navigate"


def _guard(harness: Any, session: Any) -> Any:
    def guard(url: str) -> str | None:
        try:
            decision = harness.governor.check(NAVIGATE, {"url": url}, session=session)
        except Exception as exc:  # fail closed: a check that cannot run refuses the load
            return f"governance fault while checking {url}: {exc}"
        if decision.decision in ("blocked", "approval_required"):
            return decision.reason or decision.decision
        return None

    return guard


def register_browser(harness: Any, entry: Any) -> None:
    """Expose the six browser tools with their effects (``effects:`` overrides, then ``effect:``)."""
    lock = threading.Lock()
    host: dict[str, BrowserHost] = {}

    def browser() -> BrowserHost:
        with lock:
            if "host" not in host:
                host["host"] = BrowserHost(timeout=entry.timeout or 15.0)
                harness.resources.append(host["host"])
                harness.session_enders.append(host["host"].close_session)
            return host["host"]

    def here() -> Any:
        from corral.harness.context import current

        return current()

    def browser_navigate(url: str) -> dict[str, Any]:
        ctx = here()
        return browser().navigate(ctx.session.id, url, _guard(harness, ctx.session))

    def browser_snapshot() -> dict[str, Any]:
        ctx = here()
        return browser().snapshot(ctx.session.id, _guard(harness, ctx.session))

    def browser_screenshot() -> dict[str, Any]:
        ctx = here()
        return browser().screenshot(ctx.session.id, ctx.workspace, _guard(harness, ctx.session))

    def browser_click(selector: str) -> dict[str, Any]:
        ctx = here()
        return browser().click(ctx.session.id, selector, _guard(harness, ctx.session))

    def browser_type(selector: str, text: str) -> dict[str, Any]:
        ctx = here()
        return browser().type(ctx.session.id, selector, text, _guard(harness, ctx.session))

    def browser_submit(selector: str) -> dict[str, Any]:
        ctx = here()
        return browser().submit(ctx.session.id, selector, _guard(harness, ctx.session))

    functions = {f.__name__: f for f in (browser_navigate, browser_snapshot, browser_screenshot, browser_click,
                                          browser_type, browser_submit)}
    # a web page may carry instructions: whatever the browser brings back is untrusted (DESIGN §15)
    flow = {**entry.flow_options(), "untrusted": True}
    for spec in SPECS:
        effect = entry.effects.get(spec.name) or (entry.effect if spec.effect != "read" else None) or spec.effect
        harness.expose(spec.name, functions[spec.name], effect, description=spec.description,
                       parameters=spec.parameters, **flow)
