"""A pool's statistics: scans per hour (24 h) or per day (7 or 30 days), for the pool by outcome,
by group or by channel, as a chart with its table, and as CSV. Everything comes from
`pool_stats`, the same service the API and the CLI call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.console import charts
from app.console.nav import pool_tabs
from app.console.web import BASE, ConsoleRoute, Ctx, PollCtx, ReadCtx
from app.deps import pool_id_or_404
from app.schemas import PoolPublic
from app.stats.models import StatsPublic
from app.stats.service import pool_stats
from app.stats.store import to_csv

router = APIRouter(prefix=BASE + "/pools/{pool_id}", route_class=ConsoleRoute,
                   include_in_schema=False)

REFRESH_S = 60  # the chart's own refresh; the live figures of the pool page poll apart


async def _stats(ctx: Ctx, pool_id: str, range_: charts.RangeName,
                 view: charts.ViewName) -> StatsPublic:
    step, start = charts.window(range_, ctx.now, ctx.rt.store.statistics.retention_days)
    return await pool_stats(ctx.rt.store, pool_id, step=step, by=charts.VIEWS[view],
                            start=start, end=ctx.now)


async def _panel_context(ctx: Ctx, pool: PoolPublic, range_: str, view: str) -> dict[str, Any]:
    r, v = charts.pick(range_, view)
    stats = await _stats(ctx, pool.id, r, v)
    chart = charts.build(stats, v, ctx._)
    return {"pool": pool, "tz": pool.timezone, "range_name": r, "view": v, "chart": chart,
            "stats": stats, "ranges": list(charts.RANGES), "views": list(charts.VIEWS),
            "refresh_s": REFRESH_S}


@router.get("/stats")
async def stats_page(ctx: ReadCtx, pool_id: str, range: str = "24h",
                     view: str = "outcomes") -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    context = await _panel_context(ctx, pool, range, view)
    return ctx.page("stats.html", active="pool", tab="stats", tabs=pool_tabs(pool.id),
                    **context)


@router.get("/stats/panel")
async def stats_panel(ctx: PollCtx, pool_id: str, range: str = "24h",
                      view: str = "outcomes") -> Response:
    """The chart and its table again (every REFRESH_S while the page is open; like the live
    fragments, this does not keep the session alive)."""
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    return ctx.page("_stats_panel.html", **await _panel_context(ctx, pool, range, view))


@router.get("/stats.csv")
async def stats_csv(ctx: ReadCtx, pool_id: str, range: str = "24h",
                    view: str = "outcomes") -> Response:
    """The series behind the chart, as the API's CSV (`to_csv`), with a byte-order mark so
    that spreadsheet programs read group names in Chinese as UTF-8."""
    pool_id = pool_id_or_404(pool_id)
    r, v = charts.pick(range, view)
    stats = await _stats(ctx, pool_id, r, v)
    name = f"{pool_id}-{r}-{v}.csv"
    return Response("\ufeff" + to_csv(stats), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
