"""Statistics of a pool: /api/v1/pools/{pool_id}/stats, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from app.auth import ReadKey
from app.deps import ERROR_RESPONSES, StoreDep, pool_id_or_404
from app.schemas import Time
from app.stats.models import By, StatsPublic, Step
from app.stats.service import pool_stats
from app.stats.store import to_csv

router = APIRouter(prefix="/api/v1/pools/{pool_id}", tags=["stats"], responses=ERROR_RESPONSES)


@router.get(
    "/stats",
    response_model=StatsPublic,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_stats(
    pool_id: str,
    request: Request,
    store: StoreDep,
    _: ReadKey,
    step: Step = "hour",
    by: By | None = None,
    start: Annotated[Time | None, Query(alias="from", description="RFC 3339; default: "
                                        "24 hours (hour steps) or 7 days (day steps) ago")] = None,
    end: Annotated[Time | None, Query(alias="to", description="RFC 3339; default: now")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query(
        description="csv: the same as CSV (also with Accept: text/csv)")] = None,
) -> StatsPublic | Response:
    """Scans of the pool by outcome (new, sticky, fallback, paused, limited), per hour or per
    day of its timezone, with distinct visitors per day; `by=group` or `by=channel` adds a
    series per group or channel. Kept for LIVECODE_STATS_RETENTION_DAYS (35 days)."""
    stats = await pool_stats(store, pool_id_or_404(pool_id), step=step, by=by, start=start,
                             end=end)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        name = f"{pool_id}-{step}{'-' + by if by else ''}.csv"
        return Response(to_csv(stats), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return stats
