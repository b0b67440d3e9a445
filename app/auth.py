"""Bearer API keys for the admin API: `ReadKey` for reading routes, `AdminKey` for the rest."""

from __future__ import annotations

from typing import Annotated, Any, cast

import redis.asyncio as aredis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import audit
from app.errors import LivecodeError, StoreUnavailable
from app.store.apikeys import ApiKeyPublic, ApiKeyStore

bearer = HTTPBearer(auto_error=False, description="An API key: `livecode keys create`")


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class Unauthorized(LivecodeError):
    """No key, or not a live one; with its challenge (RFC 6750)."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, details: Any = None, *, invalid_token: bool = False) -> None:
        challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
        super().__init__(message, details, headers={"WWW-Authenticate": challenge})


class Forbidden(LivecodeError):
    """A live key whose scope does not allow the request."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str, details: Any = None, *, scope: str = "admin") -> None:
        challenge = f'Bearer error="insufficient_scope", scope="{scope}"'
        super().__init__(message, details, headers={"WWW-Authenticate": challenge})


def get_apikeys(request: Request) -> ApiKeyStore:
    return cast(ApiKeyStore, request.app.state.runtime.apikeys)


async def require_read(
    request: Request,
    credentials: BearerCredentials,
) -> ApiKeyPublic:
    """Any live key (`read` or `admin`)."""
    if credentials is None:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    try:
        key = await get_apikeys(request).verify(credentials.credentials)
    except (aredis.RedisError, OSError) as exc:
        raise StoreUnavailable("cannot check the API key: the store is unavailable") from exc
    if key is None:
        raise Unauthorized("the API key is not valid", invalid_token=True)
    request.state.api_key = key
    return key


async def require_admin(
    request: Request,
    credentials: BearerCredentials,
) -> ApiKeyPublic:
    """A live key with the `admin` scope."""
    key = await require_read(request, credentials)
    if key.scope != "admin":
        raise Forbidden(
            "this API key may only read; an admin key is required", {"scope": key.scope}
        )
    audit.actor.set(key.id)
    return key


ReadKey = Annotated[ApiKeyPublic, Depends(require_read)]
AdminKey = Annotated[ApiKeyPublic, Depends(require_admin)]
