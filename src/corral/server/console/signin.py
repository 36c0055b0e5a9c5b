"""Console sign-ins: a person signs in once with their API token; the browser then holds a random
sign-in id in an HttpOnly, SameSite=Strict cookie, and the store keeps only that id's SHA-256.

Why not the token in the cookie: a cookie leaks in more ways than a header (a copied browser profile, a
debugging proxy), and an API token is long-lived and works everywhere. The sign-in id works only for the
console, runs out (``LIFETIME``), is removed on sign-out, and a stolen database yields no usable id.
Each request checks the sign-in and then the principal with ``identity.authenticate_digest`` — the
same check the API makes — against the digest of the token it signed in with, so a revoked (or
replaced) token signs its browsers out at once, on every server sharing the store.

Forms: every POST carries a CSRF token bound to the sign-in (an HMAC of the sign-in id, so the store
never holds it either), compared in constant time, and must come from this origin (``Origin``, else
``Referer``; ``Sec-Fetch-Site`` when the browser sends it). The sign-in form itself, before there is a
sign-in, is bound the same way to a short-lived random cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from corral.server.identity import AuthenticationError, Principal, authenticate, authenticate_digest, token_digest

COOKIE = "corral_console"
LOGIN_COOKIE = "corral_console_login"
LIFETIME = timedelta(hours=8)
LOGIN_LIFETIME = timedelta(minutes=30)
ID_BYTES = 32


class SignInRequired(Exception):
    """The page needs a signed-in person; ``why`` says what was wrong (shown on the sign-in page)."""

    def __init__(self, why: str | None = None) -> None:
        super().__init__(why or "sign in")
        self.why = why


class FormRejected(Exception):
    """A POST that did not come from one of this console's own forms: refused, nothing done."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in person: the principal, and the CSRF token their forms carry."""

    principal: Principal
    csrf: str
    digest: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _csrf_of(signin_id: str) -> str:
    """The CSRF token of a sign-in: derived from its id, so neither the store nor a page without the
    cookie can produce it."""
    return hmac.new(signin_id.encode("utf-8"), b"corral console form", hashlib.sha256).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def sign_in(store: Any, token: str) -> tuple[Principal, str]:
    """Check ``token`` as the API does and keep a new sign-in for its principal; returns the principal
    and the sign-in id for the cookie (the only place it exists). ``AuthenticationError`` otherwise."""
    principal = authenticate(store, token.strip())
    signin_id = secrets.token_urlsafe(ID_BYTES)
    now = _now()
    store.remove_expired_signins(now)
    store.add_signin(_digest(signin_id), principal.key,
                     {"token_sha256": token_digest(token.strip()), "name": principal.name,
                      "created": now.isoformat(timespec="seconds")}, now + LIFETIME)
    return principal, signin_id


def viewer(request: Request) -> Viewer:
    """The signed-in person of this request; ``SignInRequired`` without a valid, current sign-in."""
    signin_id = request.cookies.get(COOKIE)
    if not signin_id or len(signin_id) > 100:
        raise SignInRequired()
    store = request.app.state.service.store
    digest = _digest(signin_id)
    found = store.get_signin(digest, _now())
    if found is None:
        raise SignInRequired("your sign-in has run out; sign in again")
    try:
        principal = authenticate_digest(store, found["principal"], str(found.get("token_sha256", "")))
    except AuthenticationError as exc:
        store.remove_signin(digest)
        raise SignInRequired(f"signed out: {exc}") from None
    return Viewer(principal, _csrf_of(signin_id), digest)


def still_signed_in(store: Any, who: Viewer) -> bool:
    """For long-lived answers (the live event stream): is this sign-in still good right now?"""
    found = store.get_signin(who.digest, _now())
    if found is None:
        return False
    try:
        authenticate_digest(store, found["principal"], str(found.get("token_sha256", "")))
    except AuthenticationError:
        return False
    return True


def sign_out(request: Request, response: Response) -> None:
    signin_id = request.cookies.get(COOKIE)
    if signin_id and len(signin_id) <= 100:
        request.app.state.service.store.remove_signin(_digest(signin_id))
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, signin_id: str) -> None:
    response.set_cookie(COOKIE, signin_id, max_age=int(LIFETIME.total_seconds()), path="/", httponly=True,
                        samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path="/login", httponly=True, samesite="strict", secure=_secure(request))


def login_form_token(request: Request) -> str:
    """The sign-in form's CSRF token: the random value of its own cookie, or a new one."""
    value = request.cookies.get(LOGIN_COOKIE)
    if not value or len(value) > 100:
        value = secrets.token_urlsafe(24)
    return value


def keep_login_form_token(request: Request, response: Response, value: str) -> None:
    response.set_cookie(LOGIN_COOKIE, value, max_age=int(LOGIN_LIFETIME.total_seconds()), path="/login",
                        httponly=True, samesite="strict", secure=_secure(request))


# ------------------------------------------------------------------------------------------ forms


def same_origin(request: Request) -> None:
    """Refuse a POST that a page of another origin made: the browser says where it came from."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise FormRejected(f"the form was sent from another site (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if not referer:
            raise FormRejected("the form came without an Origin or Referer header; the console accepts only "
                               "its own forms")
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    host = request.headers.get("host", "")
    if origin.lower() != f"{request.url.scheme}://{host}".lower():
        raise FormRejected(f"the form was sent from {origin}, not from this console")


def check_form(request: Request, who: Viewer, token: str | None) -> None:
    """A signed-in POST: this origin, and this sign-in's CSRF token."""
    same_origin(request)
    if not token or not hmac.compare_digest(token, who.csrf):
        raise FormRejected("the form's CSRF token is missing or not this sign-in's; reload the page and try again")


def check_login_form(request: Request, token: str | None) -> None:
    same_origin(request)
    expected = request.cookies.get(LOGIN_COOKIE)
    if not token or not expected or not hmac.compare_digest(token, expected):
        raise FormRejected("the sign-in form has run out; reload the page and try again")
