"""Every page works by keyboard and reads without sideways scrolling at 1280×800 and 390×844 — signed in as
each role that sees it, with real content on it (a session paused for an approval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.e2e.console.conftest import DESKTOP, PHONE, Console, shoot, sign_in

FOCUSABLE = """() => [...document.querySelectorAll(
    'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]),'
    + ' textarea:not([disabled]), summary')].filter(el => el.offsetParent !== null || el.tagName === 'SUMMARY')
    .map(el => el.outerHTML.slice(0, 120))"""

ACTIVE = """() => { const el = document.activeElement; const style = getComputedStyle(el);
    return {html: el.outerHTML.slice(0, 120), outline: style.outlineStyle, width: style.outlineWidth}; }"""


def _pages(console: Console) -> list[tuple[str, str, str]]:
    session, approval = console.run_to_approval("alice")
    return [("sessions", "alice", "/"), ("session", "alice", f"/sessions/{session}"),
            ("approvals", "bob", "/approvals"), ("audit", "carol", "/audit"), ("policy", "carol", "/policy"),
            ("policy-replay", "carol", "/policy?agent=desk&replay=desk.next.rules")]


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_no_page_scrolls_sideways(browser: Any, console: Console, screenshots: Path, size: str) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    pages: dict[str, Any] = {}
    for name, who, path in [*_pages(console), ("login", "", "/login")]:
        if who:
            if who not in pages:
                pages[who] = sign_in(browser, console, who, viewport)
            page = pages[who]
        else:
            page = console.context(browser, viewport).new_page()
        page.goto(console.url + path)
        for summary in page.locator("details summary").all():  # open everything: the widest the page gets
            summary.click()
        wide = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert wide[0] <= wide[1], f"{name} at {viewport}: {wide[0]} px wide in a {wide[1]} px window"
        shoot(page, screenshots, f"{name}-{size}")


def test_keyboard_reaches_every_control_with_visible_focus(browser: Any, console: Console) -> None:
    for name, who, path in _pages(console):
        page = sign_in(browser, console, who)
        page.goto(console.url + path)
        wanted = set(page.evaluate(FOCUSABLE))
        reached: set[str] = set()
        for _ in range(len(wanted) * 3 + 10):
            page.keyboard.press("Tab")
            active = page.evaluate(ACTIVE)
            if active["html"].startswith("<body"):
                continue
            assert active["outline"] != "none" and active["width"] != "0px", \
                f"{name}: no visible focus on {active['html']}"
            reached.add(active["html"])
            if page.evaluate("document.activeElement.tagName === 'SUMMARY' && !document.activeElement.parentElement.open"):
                page.keyboard.press("Enter")  # open it by keyboard: what is inside is reachable next
        missing = wanted - reached
        assert not missing, f"{name}: the keyboard never reaches {sorted(missing)}"


def test_a_person_can_approve_by_keyboard_alone(browser: Any, console: Console) -> None:
    session, approval = console.run_to_approval("alice")
    context = console.context(browser)
    page = context.new_page()
    page.goto(console.url + "/approvals")
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(console.token("bob"))
    page.keyboard.press("Enter")
    page.wait_for_url(console.url + "/approvals")
    page.focus("body")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == f"reason-{approval}":
            break
    else:
        pytest.fail("the reason field was never reached by Tab")
    page.keyboard.type("checked by keyboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Approve"
    page.keyboard.press("Enter")
    page.wait_for_url(console.url + "/approvals?*")
    assert "approved" in page.inner_text(".notice")
