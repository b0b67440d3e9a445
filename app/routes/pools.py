"""Pools (live codes): /api/v1/pools."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app import links, qr
from app.auth import AdminKey, ReadKey
from app.deps import ERROR_RESPONSES, RuntimeDep, StoreDep, pool_id_or_404
from app.schemas import PoolCreate, PoolList, PoolPublic, PoolUpdate

router = APIRouter(prefix="/api/v1/pools", tags=["pools"], responses=ERROR_RESPONSES)


@router.post("", status_code=201)
async def create_pool(body: PoolCreate, store: StoreDep, _: AdminKey) -> PoolPublic:
    return await store.create_pool(body)


@router.get("")
async def list_pools(
    store: StoreDep,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> PoolList:
    pools, total = await store.list_pools(limit, offset)
    return PoolList(items=pools, total=total, limit=limit, offset=offset)


@router.get("/{pool_id}")
async def get_pool(pool_id: str, store: StoreDep, _: ReadKey) -> PoolPublic:
    """The pool with every group's count, remaining room and expiry, the pool's total remaining
    capacity, and the group the next new scan would get."""
    return await store.get_pool(pool_id_or_404(pool_id), with_groups=True)


@router.patch("/{pool_id}")
async def update_pool(pool_id: str, body: PoolUpdate, store: StoreDep, _: AdminKey) -> PoolPublic:
    return await store.update_pool(pool_id_or_404(pool_id), body)


@router.delete("/{pool_id}", status_code=204)
async def delete_pool(pool_id: str, store: StoreDep, _: AdminKey) -> Response:
    await store.delete_pool(pool_id_or_404(pool_id))
    return Response(status_code=204)


@router.post("/{pool_id}/pause")
async def pause_pool(pool_id: str, store: StoreDep, _: AdminKey) -> PoolPublic:
    return await store.set_status(pool_id_or_404(pool_id), "paused")


@router.post("/{pool_id}/resume")
async def resume_pool(pool_id: str, store: StoreDep, _: AdminKey) -> PoolPublic:
    return await store.set_status(pool_id_or_404(pool_id), "active")


QrScale = Annotated[int, Query(ge=1, le=50, description="pixels per module")]
QrBorder = Annotated[int, Query(ge=0, le=20, description="quiet zone, in modules")]
QrError = Annotated[str, Query(pattern="^[lmqhLMQH]$", description="error correction level")]
QrChannel = Annotated[str | None, Query(
    max_length=64, description="a channel: the code encodes /s/{id}?ch=<channel> "
    "(1 to 32 letters, digits, _ . -), so scans of this poster are counted apart")]


@router.get(
    "/{pool_id}/qr.{fmt}",
    response_class=Response,
    responses={200: {"content": {media: {} for media in qr.POSTER_FORMATS.values()}}},
)
async def poster_qr(
    pool_id: str,
    fmt: Literal["png", "svg", "pdf", "eps"],
    rt: RuntimeDep,
    _: ReadKey,
    scale: QrScale = 10,
    border: QrBorder = 4,
    error: QrError = "m",
    ch: QrChannel = None,
) -> Response:
    """The poster QR (qr.png, qr.svg, qr.pdf or qr.eps) of the pool's public scan URL:
    LIVECODE_PUBLIC_URL, by default the address the service is bound to (never the request's
    Host header). When that address is one phones cannot reach (loopback), the
    `Livecode-Warning` header says so."""
    channel = links.check_channel(ch) if ch is not None else ""
    await rt.store.get_pool(pool_id_or_404(pool_id))
    url = links.scan_url(rt.settings, pool_id, channel)
    headers = {}
    warning = links.poster_warning(rt.settings)
    if warning:
        headers["Livecode-Warning"] = warning
    body = qr.poster_qr(url, fmt, scale=scale, border=border, error=error)
    return Response(body, media_type=qr.POSTER_FORMATS[fmt], headers=headers)
