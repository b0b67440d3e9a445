"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, Request

from app.errors import PoolNotFound
from app.runtime import Runtime
from app.schemas import ErrorBody
from app.store.keys import POOL_ID_RE
from app.store.pools import PoolStore


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def get_store(request: Request) -> PoolStore:
    return get_runtime(request).store


def pool_id_or_404(pool_id: str) -> str:
    """A malformed id names no pool; it must never reach a key name (hash tags)."""
    if POOL_ID_RE.match(pool_id) is None:
        raise PoolNotFound(pool_id)
    return pool_id


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Documented on every /api/v1 operation: every error has the ErrorBody shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("missing or unknown API key"),
    403: _error("the key's scope does not allow this"),
    404: _error("unknown pool or group"),
    409: _error("the id exists already"),
    413: _error("request body too large"),
    422: _error("invalid input"),
    503: _error("the store is unavailable"),
}

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[PoolStore, Depends(get_store)]
