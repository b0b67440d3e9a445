"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from app.runtime import Runtime
from app.store.pools import PoolStore


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def get_store(request: Request) -> PoolStore:
    return get_runtime(request).store


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[PoolStore, Depends(get_store)]
