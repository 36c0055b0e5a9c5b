"""The dependencies every route declares: the service, and who is calling.

``caller`` is the one identity check, for the API and the console alike: a principal, or a 401 that
says what is wrong with the token. Nothing is cached between requests, so a revoked token fails at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from corral.errors import StoreError
from corral.server.errors import Forbidden, Unauthorized, Unavailable
from corral.server.identity import AuthenticationError, Principal, authenticate
from corral.server.service import Service

bearer = HTTPBearer(auto_error=False, description="An API token from `corral principals add NAME --role ROLE`")


async def get_service(request: Request) -> Service:
    return request.app.state.service


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The authenticated principal; 401 without a valid, unrevoked bearer token."""
    return principal_of(request, credentials)


async def caller_inline(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """``caller`` on the event loop itself: one indexed lookup, cheaper than a hop to a worker thread —
    for the decision point's hot path, whose decision then takes the one hop."""
    return principal_of(request, credentials)


def principal_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal of a request's bearer credentials; 401 otherwise."""
    if credentials is None:
        header = request.headers.get("authorization")
        if header:
            raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
        token = None
    else:
        token = credentials.credentials
    try:
        return authenticate(request.app.state.service.store, token)
    except AuthenticationError as exc:
        raise Unauthorized(str(exc)) from None
    except StoreError as exc:
        raise Unavailable(f"cannot check the token: {exc}") from None


def role(*roles: str):
    """A dependency: the caller, who must have one of ``roles`` (admins have every role)."""

    def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"{principal.name} needs the role {' or '.join(roles)} (or admin) for this")
        return principal

    return check


ServiceDep = Annotated[Service, Depends(get_service)]
Caller = Annotated[Principal, Depends(caller)]
FastCaller = Annotated[Principal, Depends(caller_inline)]
