"""Who is calling: principals, their roles, and the API tokens that stand for them (DESIGN §13).

A token is 32 random bytes (``secrets``), shown once when the principal is added and never stored:
the store keeps only its SHA-256, looked up by that digest and compared with ``hmac.compare_digest``.
Nothing is cached: every request reads the principal from the store, so a revocation holds at once on
every server that shares the store.

Roles: ``user`` (runs their own sessions), ``approver`` (decides other principals' approvals),
``auditor`` (reads every session, trace and the audit; changes nothing), ``admin`` (everything).
A principal's roles are the roles of the sessions it starts, so rules see them as ``principal.role``.

The API asks ``authenticate(store, token)`` with the token from ``Authorization: Bearer``; the console
asks it once, when a person signs in with their token, and from then on ``authenticate_digest`` with the
token's digest its sign-in kept — the same check, so a revoked token fails the console at once too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.errors import ConfigError

USER = "user"
APPROVER = "approver"
AUDITOR = "auditor"
ADMIN = "admin"
ROLES = (USER, APPROVER, AUDITOR, ADMIN)

TOKEN_PREFIX = "corral_"
TOKEN_BYTES = 32
NAME_MAX = 100


class IdentityError(ConfigError):
    """A bad principal name or role, a name taken, or a principal that does not exist."""


def new_token() -> str:
    """A fresh API token: 32 random bytes, URL-safe, with a prefix that says what it is."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalise_name(name: str) -> str:
    """A name as identities are compared: Unicode NFKC, case-folded, trimmed, invisible characters
    removed — so ``Alice``, ``alice `` and ``a\u200blice`` are one principal."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Zl", "Zp"))
    return text.strip().casefold()


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise IdentityError(f"a principal's name is a non-empty string, got {name!r}")
    if len(name) > NAME_MAX:
        raise IdentityError(f"a principal's name is at most {NAME_MAX} characters, got {len(name)}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise IdentityError(f"a principal's name may not contain control or invisible characters: {name!r}")
    if not normalise_name(name):
        raise IdentityError(f"a principal's name needs a visible character, got {name!r}")
    return name.strip()


def check_roles(roles: Iterable[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise IdentityError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
        if role not in out:
            out.append(role)
    if not out:
        raise IdentityError(f"a principal needs at least one role ({', '.join(ROLES)})")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its name as written, its roles (``key``: the name normalised)."""

    name: str
    roles: tuple[str, ...]
    key: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", normalise_name(self.name))

    def has(self, *roles: str) -> bool:
        return ADMIN in self.roles or any(role in self.roles for role in roles)

    @property
    def reads_all(self) -> bool:
        """Auditors and admins read every session, trace and approval."""
        return self.has(AUDITOR)

    def owns(self, principal: str | None) -> bool:
        return principal is not None and (principal == self.name or normalise_name(principal) == self.key)

    def sees(self, principal: str | None) -> bool:
        """Whether this caller may see an object that belongs to ``principal``."""
        return self.reads_all or self.owns(principal)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "roles": list(self.roles)}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_principal(store: Any, name: str, roles: Iterable[str]) -> tuple[Principal, str]:
    """Add a principal; returns it and its token — the only time the token exists outside the caller."""
    name = check_name(name)
    roles = check_roles(roles)
    token = new_token()
    record = {"key": normalise_name(name), "name": name, "roles": list(roles), "token_sha256": token_digest(token),
              "created": _now(), "revoked": None}
    if not store.add_principal(record):
        raise IdentityError(f"a principal named {name!r} exists already (names are compared case-insensitively)")
    return Principal(name, roles), token


def list_principals(store: Any) -> list[dict[str, Any]]:
    """Every principal, revoked ones included, without anything of their tokens."""
    return [{"name": r["name"], "roles": list(r["roles"]), "created": r.get("created"), "revoked": r.get("revoked")}
            for r in store.list_principals()]


def revoke_principal(store: Any, name: str) -> dict[str, Any]:
    """Revoke a principal's token, at once, on every server sharing ``store``."""
    key = normalise_name(check_name(name))
    found = store.get_principal(key)
    if found is None:
        raise IdentityError(f"no principal named {name!r}")
    if found.get("revoked"):
        return {"name": found["name"], "roles": found["roles"], "revoked": found["revoked"]}
    when = _now()
    store.update_principal(key, {"revoked": when})
    return {"name": found["name"], "roles": found["roles"], "revoked": when}


class AuthenticationError(Exception):
    """No token, a malformed one, an unknown one or a revoked one; the message says which."""


def authenticate(store: Any, token: str | None) -> Principal:
    """The principal a token stands for; ``AuthenticationError`` if it stands for none (now)."""
    if not token:
        raise AuthenticationError("no API token: send it as 'Authorization: Bearer TOKEN' "
                                  "(create one with: corral principals add NAME --role user)")
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise AuthenticationError("the API token is malformed (tokens start with 'corral_')")
    digest = token_digest(token)
    return _holder(store.principal_by_token(digest), digest)


def authenticate_digest(store: Any, key: str, token_sha256: str) -> Principal:
    """The principal ``key`` if its token is still the one whose digest is ``token_sha256`` and is not
    revoked — the same check as ``authenticate``, for a caller that kept only the digest (a console
    sign-in); ``AuthenticationError`` otherwise, so a revocation signs the browser out at once."""
    return _holder(store.get_principal(key), token_sha256)


def _holder(record: dict[str, Any] | None, digest: str) -> Principal:
    """The one judgement of a principal record against a token digest: the record exists, its token is
    that one (compared in constant time), and it is not revoked."""
    if record is None or not hmac.compare_digest(str(record.get("token_sha256", "")), digest):
        raise AuthenticationError("the API token is not valid")
    if record.get("revoked"):
        raise AuthenticationError(f"the API token of {record['name']!r} was revoked at {record['revoked']}")
    return Principal(record["name"], tuple(record.get("roles") or ()))


def has_principals(store: Any) -> bool:
    return bool(store.list_principals())


__all__ = [
    "ADMIN",
    "APPROVER",
    "AUDITOR",
    "ROLES",
    "USER",
    "AuthenticationError",
    "IdentityError",
    "Principal",
    "add_principal",
    "authenticate",
    "authenticate_digest",
    "has_principals",
    "list_principals",
    "normalise_name",
    "revoke_principal",
    "token_digest",
]
