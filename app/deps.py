"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from app.errors import NotFound
from app.runtime import Runtime
from app.store.keys import POOL_ID_RE
from app.store.pools import PoolStore


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def get_store(request: Request) -> PoolStore:
    return get_runtime(request).store


def pool_id_or_404(pool_id: str) -> str:
    """A malformed id names no pool; it must never reach a key name (hash tags)."""
    if POOL_ID_RE.match(pool_id) is None:
        raise NotFound(f"pool {pool_id!r} not found", {"pool_id": pool_id})
    return pool_id


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[PoolStore, Depends(get_store)]
