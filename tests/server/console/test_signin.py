"""Console sign-ins over HTTP: the cookie, what the store keeps, CSRF and origin checks on every form,
revocation and expiry signing a browser out, and no open redirect after signing in."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime

from corral.server.identity import revoke_principal
from corral.store import open_store
from corral.store.urls import parse_sqlite_url


def _db(console):
    return sqlite3.connect(parse_sqlite_url(console.store_url).path)


def test_signing_in_sets_a_strict_http_only_cookie_and_the_store_keeps_only_its_digest(console, browse) -> None:
    browser = browse()
    csrf = browser.csrf("/login")
    answer = browser.post("/login", {"token": console.token("alice"), "csrf": csrf, "next": "/approvals"})
    assert answer.status_code == 303 and answer.headers["location"] == "/approvals"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("corral_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert console.token("alice") not in cookie
    with _db(console) as db:
        rows = db.execute("SELECT id_sha256, principal, doc FROM signins").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(hashlib.sha256(value.encode()).hexdigest(), "alice")]
    assert value not in rows[0][2] and console.token("alice") not in rows[0][2]
    assert browser.get("/").status_code == 200


def test_a_wrong_token_is_told_and_nothing_is_kept(console, browse) -> None:
    browser = browse()
    csrf = browser.csrf("/login")
    answer = browser.post("/login", {"token": "corral_nope", "csrf": csrf})
    assert answer.status_code == 401 and "the API token is not valid" in answer.text
    assert "corral_console=" not in answer.headers.get("set-cookie", "")
    with _db(console) as db:
        assert db.execute("SELECT count(*) FROM signins").fetchone() == (0,)


def test_the_sign_in_form_needs_its_own_token_and_this_origin(console, browse) -> None:
    browser = browse()
    csrf = browser.csrf("/login")
    assert browser.post("/login", {"token": console.token("alice")}).status_code == 403
    assert browser.post("/login", {"token": console.token("alice"), "csrf": csrf},
                        origin="http://evil.example").status_code == 403
    assert browser.post("/login", {"token": console.token("alice"), "csrf": csrf}, origin=None).status_code == 403


def test_every_form_needs_the_sign_ins_csrf_token_and_this_origin(console, browse) -> None:
    alice = browse("alice")
    csrf = alice.csrf("/")
    refused = [
        alice.post("/sessions", {"agent": "desk", "text": "hi"}),  # no token
        alice.post("/sessions", {"agent": "desk", "text": "hi", "csrf": "0" * 64}),  # not this sign-in's
        alice.post("/sessions", {"agent": "desk", "text": "hi", "csrf": csrf}, origin="http://evil.example"),
        alice.post("/sessions", {"agent": "desk", "text": "hi", "csrf": csrf}, **{"Sec-Fetch-Site": "cross-site"}),
        alice.post("/sessions", {"agent": "desk", "text": "hi", "csrf": csrf}, origin=None),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert all("Nothing was changed" in r.text for r in refused)
    with console.api("alice") as api:
        assert api.get("/v1/sessions").json()["sessions"] == []  # nothing was started
    # another person's token is not this one's either
    erin = browse("erin")
    assert alice.post("/sessions", {"agent": "desk", "csrf": erin.csrf("/")}).status_code == 403
    made = alice.post("/sessions", {"agent": "desk", "csrf": csrf}, Referer=console.url + "/")
    assert made.status_code == 303 and made.headers["location"].startswith("/sessions/")


def test_a_page_without_a_sign_in_sends_the_browser_to_sign_in(console, browse) -> None:
    browser = browse()
    for path in ("/", "/approvals", "/audit", "/policy", "/sessions/x"):
        answer = browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    browser.http.cookies.set("corral_console", "made-up")
    assert browser.get("/").headers["location"].startswith("/login")


def test_a_revoked_token_signs_the_browser_out_at_once(console, browse) -> None:
    alice = browse("alice")
    assert alice.get("/").status_code == 200
    store = open_store(console.store_url)
    try:
        revoke_principal(store, "alice")
    finally:
        store.close()
    answer = alice.get("/")
    assert answer.status_code == 303 and "revoked" in answer.headers["location"]
    with _db(console) as db:
        assert db.execute("SELECT count(*) FROM signins WHERE principal = 'alice'").fetchone() == (0,)


def test_an_expired_sign_in_is_refused(console, browse) -> None:
    alice = browse("alice")
    with _db(console) as db:
        db.execute("UPDATE signins SET expires_at = ?", (int(datetime.now(UTC).timestamp() * 1e6) - 1,))
    answer = alice.get("/")
    assert answer.status_code == 303 and "run+out" in answer.headers["location"].replace("%20", "+")


def test_signing_out_removes_the_sign_in(console, browse) -> None:
    alice = browse("alice")
    answer = alice.post("/logout", {"csrf": alice.csrf("/")})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    with _db(console) as db:
        assert db.execute("SELECT count(*) FROM signins").fetchone() == (0,)
    assert alice.get("/").status_code == 303


def test_after_signing_in_the_browser_goes_only_to_this_console(console, browse) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/v1/sessions"):
        browser = browse()
        csrf = browser.csrf("/login")
        answer = browser.post("/login", {"token": console.token("alice"), "csrf": csrf, "next": target})
        assert answer.headers["location"] == "/", target


def test_the_sign_in_page_shows_only_the_consoles_own_words(console, browse) -> None:
    browser = browse()
    assert "signed out: the API token" in browser.get("/login?why=signed out: the API token was revoked").text
    planted = browser.get("/login?why=Your account is locked, mail your token to help@evil.example").text
    assert "evil.example" not in planted
