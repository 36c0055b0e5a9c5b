"""The API's errors: one class per status, raised anywhere, turned into one body by one handler.

Every error answer is ``{"error": {"code": "...", "message": "..."}}`` with a status that means it
(DESIGN §13): 400 bad input, 401 no or bad token, 403 role or self-approval, 404 unknown — or another
principal's — object, 409 state conflict, 413 a body over the limit, 422 a body or parameter that does
not fit its schema. A route never builds an error body itself.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the client can act on; ``status`` and ``code`` say which kind, the message says what."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def with_status(self, status: int) -> ApiError:
        self.status = status
        return self

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    status = 422
    code = "invalid"


class Unavailable(ApiError):
    """The store did not answer: nothing was decided, the client may retry."""

    status = 503
    code = "unavailable"


__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
]
