from __future__ import annotations

from fastapi import APIRouter, Response

from app import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
