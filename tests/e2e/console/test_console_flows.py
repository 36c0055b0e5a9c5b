"""The console's flows in Chromium: sign in and out; start a session and watch it live; a blocked call and
its why; an approval the requester cannot give, given by an approver, and the session resuming; a broken
audit record named; the policy's counts moving after a run; a revoked token signing the browser out."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.e2e.console.conftest import Console, shoot, sign_in

from corral.server.identity import revoke_principal
from corral.store import open_store
from corral.store.urls import parse_sqlite_url

WAIT = 20_000  # ms: a run on a shared 2-core machine


def calls(page: Any, tool: str, where: str = "#timeline") -> Any:
    """The call items of ``tool`` (by its exact name) in a list of the session page."""
    return page.locator(f"{where} li.call").filter(has=page.locator("code.tool", has_text=re.compile(f"^{tool}$")))


def test_sign_in_lands_on_the_sessions_and_sign_out_ends_it(browser: Any, console: Console,
                                                             screenshots: Path) -> None:
    context = console.context(browser)
    page = context.new_page()
    page.goto(console.url + "/approvals")
    assert page.url.startswith(console.url + "/login?next=/approvals")  # a page that needs sign-in sends you here
    page.fill("#token", "corral_not-a-token")
    page.click("form[action='/login'] button[type=submit]")
    assert "the API token is not valid" in page.inner_text("main")
    shoot(page, screenshots, "login")
    page.fill("#token", console.token("alice"))
    page.keyboard.press("Enter")
    page.wait_for_url(console.url + "/approvals")  # back where the browser was going
    cookie = next(c for c in context.cookies() if c["name"] == "corral_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert console.token("alice") not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the sign-in
    page.goto(console.url + "/")
    assert "Signed in as alice" in page.inner_text("header")
    shoot(page, screenshots, "sessions-empty")
    page.click("form[action='/logout'] button")
    page.wait_for_url(console.url + "/login*")
    assert "signed out" in page.inner_text("main")
    page.goto(console.url + "/")
    assert page.url.startswith(console.url + "/login")  # the sign-in is gone on the server, not only the cookie


def test_start_a_session_see_it_live_and_the_blocked_call_explained(browser: Any, slow_console: Console,
                                                                   screenshots: Path) -> None:
    console = slow_console
    page = sign_in(browser, console, "alice")
    page.click("#new-session summary")
    page.select_option("#new-agent", "desk")
    page.fill("#new-text", "Settle invoice INV-7")
    page.click("#new-session button[type=submit]")
    page.wait_for_url(console.url + "/sessions/*")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    assert page.inner_text("#summary .status") == "running"
    assert calls(page, "wipe").count() == 0 and calls(page, "wipe", "#live").count() == 0
    (console.work / "lookup-gate").touch()  # the run goes on: the blocked wipe arrives while we watch
    page.wait_for_function("""() => [...document.querySelectorAll('#live li.call')].some(li =>
        li.querySelector('code.tool').textContent === 'wipe' && li.querySelector('.badge').textContent === 'blocked')""",
                           timeout=WAIT)
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, screenshots, "session-live")
    # the run pauses for an approval; the page refreshes its parts in place
    page.locator("#summary .status", has_text="awaiting_approval").wait_for(timeout=WAIT)
    assert page.evaluate("window.__sameDocument") is True
    call = calls(page, "wipe")
    assert "blocked" in call.locator(".badge").inner_text()
    why = call.locator("details.why")
    assert not why.locator(".checks").is_visible()
    why.locator("summary").click()
    checks = why.locator(".checks").inner_text()
    assert 'BLOCK wipe WHEN arg.target MATCHES "*prod*"' in checks
    assert "desk.rules:1" in checks
    assert "prod-db" in checks  # the value the rule compared
    assert "production data is never wiped" in why.inner_text()
    # markup in a tool's arguments is text, never markup: no dialog opened, no script added
    lookup = calls(page, "lookup").first
    assert "<script>alert('pwned')</script>" in lookup.locator("pre.args").inner_text()
    assert page.evaluate("document.scripts.length") == 1
    assert page.locator("#timeline li.user").inner_text().endswith("Settle invoice INV-7")
    assert "Looking the invoice up." in page.inner_text("#timeline")
    budget = page.inner_text("#budget")
    assert "degrade at 50%" in budget and "force_decide at 75%" in budget and "stop at 100%" in budget
    assert page.locator("#budget svg line.mark").count() == 3
    tx = page.inner_text("#tx")
    assert "open" in tx and "paused for approval" in tx
    shoot(page, screenshots, "session-why")


def test_an_approver_approves_what_the_requester_cannot_and_the_session_resumes(
        browser: Any, console: Console, screenshots: Path) -> None:
    session, approval = console.run_to_approval("alice")
    alice = sign_in(browser, console, "alice")
    alice.goto(f"{console.url}/approvals")
    card = alice.locator(f"#approval-{approval}")
    assert "pay" in card.inner_text() and '"amount": 250' in card.inner_text()
    assert "payments over $100 need a second person" in card.inner_text()
    assert "min left" in card.locator(".time-left").inner_text()
    assert card.locator("button").count() == 0  # her own request: no buttons
    assert "another approver must decide it" in card.inner_text()
    shoot(alice, screenshots, "approvals-requester")
    # and the server refuses anyway, even with her own valid form token
    csrf = alice.locator("form[action='/logout'] input[name=csrf]").get_attribute("value")
    status = alice.evaluate(
        """async ([url, csrf]) => (await fetch(url, {method: 'POST', body: new URLSearchParams({csrf}),
                                                     redirect: 'manual'})).status""",
        [f"/approvals/{approval}/approve", csrf])
    assert status == 403
    alice.goto(f"{console.url}/sessions/{session}")
    alice.evaluate("window.__sameDocument = true")
    assert alice.inner_text("#summary .status") == "awaiting_approval"

    bob = sign_in(browser, console, "bob")
    bob.goto(f"{console.url}/approvals")
    bob.fill(f"#reason-{approval}", "invoice INV-7 checked")
    shoot(bob, screenshots, "approvals-approver")
    bob.click(f"#approval-{approval} button.approve")
    bob.wait_for_url(f"{console.url}/approvals?*")
    assert f"Session {session} resumed" in bob.inner_text(".notice")

    # the requester's page follows the resumed run without a reload
    alice.locator("#summary .status", has_text="idle").wait_for(timeout=WAIT)
    assert alice.evaluate("window.__sameDocument") is True
    assert "Paid $250." in alice.inner_text("#timeline")
    pay = calls(alice, "pay")
    assert [b.strip() for b in pay.locator(".badge").all_inner_texts()] == ["pending", "approved"]
    assert (console.work / "effects.log").read_text().count("pay 250") == 1
    with console.api("carol") as api:
        decided = next(a for a in api.get("/v1/approvals?status=all").json() if a["id"] == approval)
    assert decided["approver"] == "bob"
    shoot(alice, screenshots, "session-resumed")

    # and the box sends the next message
    alice.fill("#message", "Thank you")
    alice.click("#composer form[action$='/messages'] button[type=submit]")
    alice.locator("#timeline li.user", has_text="Thank you").wait_for(timeout=WAIT)
    alice.locator("#timeline li.text", has_text="Noted.").wait_for(timeout=WAIT)


def test_the_audit_page_names_a_broken_record(browser: Any, console: Console, screenshots: Path) -> None:
    session, _ = console.run_to_approval("alice")
    carol = sign_in(browser, console, "carol")
    carol.goto(f"{console.url}/audit")
    assert carol.inner_text("#result-h") == "Intact"
    path = parse_sqlite_url(console.store_url).path
    with sqlite3.connect(path) as db:
        seq, text = db.execute("SELECT seq, record FROM audit WHERE session_id = ? ORDER BY seq LIMIT 1 OFFSET 3",
                               (session,)).fetchone()
        record = json.loads(text)
        record["args"] = {"target": "staging"}  # someone rewrites history
        db.execute("UPDATE audit SET record = ? WHERE session_id = ? AND seq = ?",
                   (json.dumps(record), session, seq))
    carol.goto(f"{console.url}/audit")
    assert carol.inner_text("#result-h") == "Broken"
    row = carol.locator("table.problems tbody tr")
    assert row.count() == 1
    assert session in row.inner_text() and record["id"] in row.inner_text()
    shoot(carol, screenshots, "audit-broken")
    carol.fill("#v-session", session)
    carol.click("form[action='/audit'] button[type=submit]")
    assert carol.inner_text("#result-h") == "Broken"
    assert record["id"] in carol.inner_text("table.problems")


def test_the_policy_counts_change_after_a_run(browser: Any, console: Console, screenshots: Path) -> None:
    carol = sign_in(browser, console, "carol")
    carol.goto(f"{console.url}/policy?agent=desk")

    def counts(source: str) -> list[str]:
        row = carol.locator("table.rules tbody tr", has_text=source)
        return [cell.strip() for cell in row.locator("td.num").all_inner_texts()]

    assert counts("desk.rules:1") == ["0", "0", "0", "—"]
    assert counts("desk.rules:3") == ["0", "0", "0", "0"]
    console.run_to_approval("alice")
    carol.reload()
    assert counts("desk.rules:1") == ["1", "1", "0", "—"]  # the wipe: a hit, a block
    assert counts("desk.rules:2") == ["1", "0", "1", "—"]  # the payment: a hit, an approval asked
    assert counts("desk.rules:3") == ["1", "0", "0", "1"]  # the shadow rule would have blocked the lookup
    assert "shadow" in carol.locator("table.rules tbody tr", has_text="desk.rules:3").inner_text()
    shoot(carol, screenshots, "policy")


def test_the_replay_view_shows_which_past_calls_would_flip(browser: Any, console: Console,
                                                           screenshots: Path) -> None:
    session, _ = console.run_to_approval("alice")
    with console.api("alice") as api:
        traces = [t for t in api.get(f"/v1/sessions/{session}/traces").json() if t["kind"] == "call"]
    pay = next(t["id"] for t in traces if t["tool"] == "pay")
    payee = next(t["id"] for t in traces if t["tool"] == "lookup" and "payee" in t["args"]["query"])
    carol = sign_in(browser, console, "carol")
    carol.goto(f"{console.url}/policy?agent=desk")
    carol.select_option("#p-replay", "desk.next.rules")
    carol.click("form[aria-label='Replay a rule file'] button[type=submit]")
    assert "2 would flip" in carol.inner_text("#replay-summary")
    rows = {row.locator("td").first.inner_text(): [c.strip() for c in row.locator("td").all_inner_texts()]
            for row in carol.locator("table.flips tbody tr").all()}
    assert rows[pay][1:] == ["pay", "approval", "blocked", "desk.next.rules:4"]
    assert rows[payee][1:] == ["lookup", "allowed", "blocked", "desk.next.rules:3"]
    # the wipe stays blocked: the kernel refused it for its phase, whatever the rules say
    assert "wipe" not in carol.inner_text("table.flips")
    shoot(carol, screenshots, "policy-replay")
    carol.locator("table.flips a").first.click()
    assert carol.url.startswith(f"{console.url}/sessions/{session}#call-")


def test_a_revoked_token_signs_its_browsers_out_at_once(browser: Any, console: Console) -> None:
    session, _ = console.run_to_approval("alice")
    alice = sign_in(browser, console, "alice")
    alice.goto(f"{console.url}/sessions/{session}")
    store = open_store(console.store_url)
    try:
        revoke_principal(store, "alice")
    finally:
        store.close()
    started = time.monotonic()
    alice.wait_for_url(f"{console.url}/login*", timeout=WAIT)  # the open page's live stream signs it out
    assert time.monotonic() - started < 10
    assert "signed out" in alice.inner_text("main")
    alice.goto(f"{console.url}/sessions/{session}")
    assert alice.url.startswith(f"{console.url}/login")
