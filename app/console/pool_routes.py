"""The overview, a pool's page and its live fragment, and the pool's own settings: create, edit,
pause, resume, delete."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from app.console.forms import (
    OTHER_ZONE,
    FormErrors,
    add_store_error,
    add_validation,
    build_pool_create,
    build_pool_update,
    chosen_zone,
    form_state,
    pool_values,
    submitted_state,
)
from app.console.nav import pool_tabs
from app.console.summary import PoolSummary, group_state, most_urgent_first, summarize
from app.console.views import PoolViews
from app.console.web import BASE, AdminCtx, ConsoleRoute, Ctx, PollCtx, ReadCtx, redirect
from app.console.zones import all_zones, zone_choices
from app.deps import pool_id_or_404
from app.errors import LivecodeError, NotFound
from app.schemas import PoolPublic

router = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)

OVERVIEW_LIMIT = 200
STRATEGIES = ("fill", "round_robin", "weighted", "least_filled")


async def _summaries(ctx: Ctx, *, polled: bool = False) -> tuple[list[PoolSummary], int]:
    store = ctx.rt.store
    views = pool_views(ctx)
    pools, total = await store.list_pools(limit=OVERVIEW_LIMIT)
    out = []
    for p in pools:
        try:
            read = views.recent if polled else views.fresh
            full = await read(store, p.id)
        except NotFound:  # deleted meanwhile
            continue
        out.append(summarize(full, ctx.now))
    return most_urgent_first(out), total


def pool_views(ctx: Ctx) -> PoolViews:
    return cast(PoolViews, ctx.request.app.state.console_views)


def _signature(*parts: Any) -> str:
    """Short digest of what a page's structure depends on: when it changes, the live fragment
    sends the whole section again instead of the figures alone."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _overview_sig(summaries: list[PoolSummary]) -> str:
    return _signature([(s.pool.id, s.pool.name, s.level) for s in summaries])


def _pool_sig(pool: PoolPublic, states: Mapping[str, str]) -> str:
    """Also the groups' states: an expiring code's row offers the replacement up front."""
    groups = [(g.id, g.name, g.url, g.enabled, g.capacity, g.position, g.expires_at, g.mode,
               states.get(g.id) in ("expiring", "expired")) for g in pool.groups or []]
    return _signature(pool.status, pool.name, pool.mode, groups)


@router.get("")
async def overview(ctx: ReadCtx) -> Response:
    summaries, total = await _summaries(ctx)
    return ctx.page("overview.html", active="overview", summaries=summaries, total=total,
                    sig=_overview_sig(summaries))


@router.get("/live")
async def overview_live(ctx: PollCtx, sig: str = "") -> Response:
    summaries, total = await _summaries(ctx, polled=True)
    new_sig = _overview_sig(summaries)
    return ctx.page("_overview_live.html", summaries=summaries, total=total, sig=new_sig,
                    whole=new_sig != sig)


def pool_context(ctx: Ctx, pool: PoolPublic) -> dict[str, Any]:
    summary = summarize(pool, ctx.now)
    groups = pool.groups or []
    within = timedelta(hours=pool.alerts.expiring_hours)
    states = {g.id: group_state(g, ctx.now, within) for g in groups}
    return {
        "pool": pool,
        "summary": summary,
        "states": states,
        "next": next((g for g in groups if g.id == pool.next_group), None),
        "tz": pool.timezone,
        "sig": _pool_sig(pool, states),
        "tabs": pool_tabs(pool.id),
    }


def _form_page(ctx: Ctx, pool: PoolPublic | None, values: dict[str, Any], errors: FormErrors,
               status: int = 200) -> Response:
    extra: dict[str, Any] = {"active": "pool", "tab": "settings", "tabs": pool_tabs(pool.id)} \
        if pool else {"active": "new", "tabs": []}
    return ctx.page("pool_form.html", status, pool=pool, values=values, errors=errors,
                    strategies=STRATEGIES, zones=zone_choices(ctx.locale),
                    all_zones=all_zones(), other_zone=OTHER_ZONE, **extra)


@router.get("/pools/new")
async def new_pool(ctx: AdminCtx) -> Response:
    settings = ctx.rt.settings
    return _form_page(ctx, None, form_state(None, settings.timezone, settings.language),
                      FormErrors())


@router.post("/pools")
async def create_pool(ctx: AdminCtx) -> Response:
    form = await ctx.request.form()
    values, errors = pool_values(form, chosen_zone(form) or ctx.rt.settings.timezone)
    pool_id = str(form.get("id") or "").strip().lower()
    if not errors:
        try:
            created = await ctx.rt.store.create_pool(build_pool_create(pool_id, values))
            return redirect(f"{BASE}/pools/{created.id}?done=created")
        except ValidationError as exc:
            add_validation(errors, exc)
        except LivecodeError as exc:
            add_store_error(errors, exc)
    return _form_page(ctx, None, submitted_state(form), errors, 422)


@router.get("/pools/{pool_id}")
async def pool_page(ctx: ReadCtx, pool_id: str, done: str = "") -> Response:
    pool = await pool_views(ctx).fresh(ctx.rt.store, pool_id_or_404(pool_id))
    return ctx.page("pool.html", active="pool", tab="groups", done=done,
                    **pool_context(ctx, pool))


@router.get("/pools/{pool_id}/live")
async def pool_live(ctx: PollCtx, pool_id: str, sig: str = "") -> Response:
    """Polled every few seconds: the pool's shared view (at most one read per pool per couple of
    seconds, however many consoles). Figures only, unless the groups changed shape (added,
    removed, reordered, edited): then the whole section."""
    views = pool_views(ctx)
    pool = await views.recent(ctx.rt.store, pool_id_or_404(pool_id))
    role = "admin" if ctx.session.admin else "read"

    def figures() -> tuple[str, str]:
        context = pool_context(ctx, pool)
        return context["sig"], ctx.html("_pool_live.html", whole=False, **context)

    # the figures alone: the same for every console of this language and role until the next
    # read (what they cost: bench/, consoles)
    current, html = views.rendered(pool, (ctx.locale, role), figures)
    if current == sig:
        return HTMLResponse(html)
    return ctx.page("_pool_live.html", whole=True, **pool_context(ctx, pool))


@router.get("/pools/{pool_id}/edit")
async def edit_pool_form(ctx: ReadCtx, pool_id: str) -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    return _form_page(ctx, pool, form_state(pool), FormErrors())


@router.post("/pools/{pool_id}/edit")
async def edit_pool(ctx: AdminCtx, pool_id: str) -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    form = await ctx.request.form()
    values, errors = pool_values(form, pool.timezone)
    if not errors:
        try:
            await ctx.rt.store.update_pool(pool.id, build_pool_update(values))
            return redirect(f"{BASE}/pools/{pool.id}?done=saved")
        except ValidationError as exc:
            add_validation(errors, exc)
        except LivecodeError as exc:
            if isinstance(exc, NotFound):
                raise
            add_store_error(errors, exc)
    return _form_page(ctx, pool, submitted_state(form) | {"id": pool.id}, errors, 422)


@router.post("/pools/{pool_id}/pause")
async def pause_pool(ctx: AdminCtx, pool_id: str) -> Response:
    await ctx.rt.store.set_status(pool_id_or_404(pool_id), "paused")
    return redirect(f"{BASE}/pools/{pool_id}?done=paused")


@router.post("/pools/{pool_id}/resume")
async def resume_pool(ctx: AdminCtx, pool_id: str) -> Response:
    await ctx.rt.store.set_status(pool_id_or_404(pool_id), "active")
    return redirect(f"{BASE}/pools/{pool_id}?done=resumed")


@router.get("/pools/{pool_id}/delete")
async def delete_pool_confirm(ctx: AdminCtx, pool_id: str) -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id), with_groups=True)
    _ = ctx._
    return ctx.page(
        "confirm.html", active="pool",
        title=_("Delete the live code %(name)s?") % {"name": pool.name or pool.id},
        message=_("Its %(n)s group codes, their counts and every visitor record go too. "
                  "Printed posters of this code will show “not found”. This cannot be undone.")
        % {"n": len(pool.groups or [])},
        action=f"{BASE}/pools/{pool.id}/delete", button=_("Delete for good"),
        back=f"{BASE}/pools/{pool.id}/edit", confirm_text=pool.id,
    )


@router.post("/pools/{pool_id}/delete")
async def delete_pool(ctx: AdminCtx, pool_id: str) -> Response:
    pool_id = pool_id_or_404(pool_id)
    form = await ctx.request.form()
    if str(form.get("confirm") or "").strip() != pool_id:
        await ctx.rt.store.get_pool(pool_id)  # 404 first
        return redirect(f"{BASE}/pools/{pool_id}/delete")
    await ctx.rt.store.delete_pool(pool_id)
    return redirect(f"{BASE}?done=deleted")
