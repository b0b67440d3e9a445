from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import RuntimeDep
from app.error_handlers import error_response
from app.errors import NotReady

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(rt: RuntimeDep) -> dict[str, str] | JSONResponse:
    """Redis answers and the allocation script runs (a flushed script cache reloads here)."""
    try:
        await rt.allocator.probe()
    except Exception as exc:
        retry = {"Retry-After": str(rt.settings.retry_after_s)}
        return error_response(NotReady(f"redis: {exc}", headers=retry))
    return {"status": "ready"}
