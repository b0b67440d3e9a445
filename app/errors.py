"""One error base for the service. Every error the API answers has one shape,
`{"error": {"code", "message", "details"}}`, and may carry headers (Retry-After,
WWW-Authenticate); the handlers are in app/error_handlers.py, the CLI prints the same code and
message on one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class LivecodeError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


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


class PoolNotFound(NotFound):
    def __init__(self, pool_id: str) -> None:
        super().__init__(f"pool {pool_id!r} not found", {"pool_id": pool_id})


class GroupNotFound(NotFound):
    def __init__(self, group_id: str) -> None:
        super().__init__(f"group {group_id!r} not found", {"group_id": group_id})


class Conflict(LivecodeError):
    status = 409
    code = "conflict"


class PayloadTooLarge(LivecodeError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(LivecodeError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details, headers={"Retry-After": str(retry_after_s)})


class StoreUnavailable(LivecodeError):
    """Redis failed or was too slow. The handler adds Retry-After from the settings."""

    status = 503
    code = "store_unavailable"


class NotReady(StoreUnavailable):
    code = "not_ready"
