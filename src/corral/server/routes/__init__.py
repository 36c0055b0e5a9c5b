"""One module per resource; each is an ``APIRouter`` the app includes."""

from __future__ import annotations

from typing import Any

from corral.server.models import ErrorBody

_WHAT = {
    400: "Bad input: malformed JSON, a bad id or parameter",
    401: "No API token, or one that is not valid (any more)",
    403: "The caller's roles do not allow this",
    404: "No such object — or one the caller may not see",
    409: "The object's state does not allow this now",
    413: "The body is larger than the server takes (1 MiB)",
    422: "The body or a parameter does not fit its schema",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route may give, for the OpenAPI document (every one has the error body)."""
    return {status: {"model": ErrorBody, "description": _WHAT[status]} for status in (400, 413, 422, *statuses)}
