"""One error base for the service; the API renders every one as
`{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LivecodeError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors as the `details` of an invalid_input error."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in errors]


class InvalidInput(LivecodeError):
    status = 422
    code = "invalid_input"


class NotFound(LivecodeError):
    status = 404
    code = "not_found"


class Conflict(LivecodeError):
    status = 409
    code = "conflict"


class StoreUnavailable(LivecodeError):
    status = 503
    code = "store_unavailable"
