"""/metrics: the process's own metrics (every worker's, in multiprocess mode) and the per-pool
metrics read from Redis (app/pool_metrics.py)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response
from redis.exceptions import RedisError

from app import metrics
from app.deps import RuntimeDep

router = APIRouter(tags=["metrics"])
log = logging.getLogger("livecode")


@router.get("/metrics", response_class=Response)
async def prometheus(rt: RuntimeDep) -> Response:
    body, content_type = metrics.render()
    try:
        # within the scrape's own bound (app/deadline.py), so that a slow Redis still leaves
        # time to answer with the process's metrics
        async with asyncio.timeout(max(rt.settings.metrics_timeout_s - 1, 0.5)):
            body += await rt.pool_metrics.render()
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("per-pool metrics unavailable: %r", exc)
    return Response(body, media_type=content_type)
