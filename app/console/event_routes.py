"""The events feed: every pool's (the feed the scheduler's dispatcher fills) and one pool's own,
newest first, filtered by type, a page at a time ("load more" follows the cursor), and followed
live (new events come in at the top). Events read from `store.events.list`, as the API does;
each is said in words by `_event_items.html` from what `EventView` gathers for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Response

from app.console.nav import pool_tabs
from app.console.web import BASE, ConsoleRoute, Ctx, PollCtx, ReadCtx
from app.deps import pool_id_or_404
from app.errors import NotFound
from app.events.model import EVENT_TYPES, EventPublic
from app.schemas import PoolPublic

router = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)

PAGE = 30
LIVE_LIMIT = 50
ALERTS = ("group.full", "pool.low", "pool.exhausted", "pool.recovered", "group.expiring",
          "group.expired")
CHANGES = tuple(t for t in EVENT_TYPES if t not in ALERTS)
Level = Literal["critical", "warning", "ok", "info", "change"]
_LEVEL: dict[str, Level] = {
    "group.full": "info", "pool.low": "warning", "pool.exhausted": "critical",
    "pool.recovered": "ok", "group.expiring": "warning", "group.expired": "critical",
}


def types_of(choice: str) -> tuple[str, ...]:
    """The filter's value: everything, the alerts, the admin changes, or one type."""
    if choice == "alerts":
        return ALERTS
    if choice == "changes":
        return CHANGES
    if choice in EVENT_TYPES:
        return (choice,)
    return ()


def _cursor_ok(value: str) -> str | None:
    """A cursor from our own pages (base64url); anything else starts from the newest."""
    ok = value and len(value) <= 200 and all(c.isalnum() or c in "-_" for c in value)
    return value if ok else None


@dataclass
class EventView:
    """One event with what its sentence needs: its pool's zone, its group's name, who did it."""

    e: EventPublic
    tz: str
    pool_label: str
    pool_exists: bool
    group: str
    who: str  # "key", "revoked", "cli" or "service": which words say who did it
    who_name: str
    fields: list[str] = field(default_factory=list)
    expires_at: datetime | None = None

    @property
    def level(self) -> Level:
        return _LEVEL.get(self.e.type, "change")

    @property
    def anchor(self) -> str:
        return "ev-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in self.e.id)


async def event_views(ctx: Ctx, events: list[EventPublic],
                 known: PoolPublic | None = None) -> list[EventView]:
    """Each event's zone and names: one read per pool and one of the API keys, for the pools
    on this page only."""
    if not events:
        return []
    store = ctx.rt.store
    pools: dict[str, PoolPublic | None] = {known.id: known} if known else {}
    groups: dict[str, dict[str, str]] = {}
    for pid in {e.pool_id for e in events if e.pool_id}:
        if pid not in pools:
            try:
                pools[pid] = await store.get_pool(pid)
            except NotFound:
                pools[pid] = None
        if pools[pid] is not None and any(e.group_id for e in events if e.pool_id == pid):
            groups[pid] = {g.id: g.name or g.id for g in await store.list_groups(pid)}
    keys = {k.id: k.name for k in await ctx.rt.apikeys.list()} if any(
        e.actor for e in events) else {}
    out = []
    for e in events:
        pool = pools.get(e.pool_id or "")
        actor = e.actor or ""
        if actor == "cli":
            who, name = "cli", ""
        elif not actor:
            who, name = "service", ""
        elif actor in keys:
            who, name = "key", keys[actor] or actor
        else:
            who, name = "revoked", actor
        raw_fields = e.data.get("fields")
        expires = e.data.get("expires_at")
        out.append(EventView(
            e=e,
            tz=pool.timezone if pool else ctx.rt.settings.timezone,
            pool_label=(pool.name if pool else e.pool_name) or e.pool_id or "",
            pool_exists=pool is not None,
            group=groups.get(e.pool_id or "", {}).get(e.group_id or "", e.group_id or ""),
            who=who, who_name=name,
            fields=[str(f) for f in raw_fields] if isinstance(raw_fields, list) else [],
            expires_at=datetime.fromtimestamp(expires / 1000, UTC)
            if isinstance(expires, int | float) else None,
        ))
    return out


async def _feed(ctx: Ctx, pool: PoolPublic | None, choice: str, after: str) -> dict[str, Any]:
    events = ctx.rt.store.events
    pool_id = pool.id if pool else None
    head = await events.end_cursor(pool_id)  # before the page: an event in between is shown
    page = await events.list(pool_id=pool_id, types=types_of(choice), after=_cursor_ok(after),
                             order="desc", limit=PAGE)
    return {"items": await event_views(ctx, page.items, pool), "next": page.next,
            "since": head or "", "choice": choice if types_of(choice) else "", "pool": pool,
            "older": bool(after)}


def _base(pool: PoolPublic | None) -> str:
    return f"{BASE}/pools/{pool.id}/events" if pool else f"{BASE}/events"


def _filters() -> dict[str, Any]:
    return {"alert_types": ALERTS, "change_types": CHANGES}


async def _page(ctx: Ctx, pool: PoolPublic | None, type: str, after: str) -> Response:
    context = await _feed(ctx, pool, type, after)
    extra: dict[str, Any] = {"tabs": pool_tabs(pool.id), "tab": "events", "active": "pool"} \
        if pool else {"tabs": [], "tab": "", "active": "events"}
    return ctx.page("events.html", base=_base(pool), **context, **extra, **_filters())


async def _more(ctx: Ctx, pool: PoolPublic | None, type: str, after: str) -> Response:
    context = await _feed(ctx, pool, type, after)
    return ctx.page("_events_more.html", base=_base(pool), **context)


async def _live(ctx: Ctx, pool: PoolPublic | None, type: str, since: str) -> Response:
    """What came after `since`, oldest first from the store, shown newest first on top."""
    page = await ctx.rt.store.events.list(
        pool_id=pool.id if pool else None, types=types_of(type), after=_cursor_ok(since),
        order="asc", limit=LIVE_LIMIT)
    items = await event_views(ctx, list(reversed(page.items)), pool)
    return ctx.page("_events_live.html", base=_base(pool), items=items,
                    since=page.next or since, choice=type if types_of(type) else "", pool=pool)


@router.get("/events")
async def all_events(ctx: ReadCtx, type: str = "", after: str = "") -> Response:
    return await _page(ctx, None, type, after)


@router.get("/events/more")
async def all_events_more(ctx: ReadCtx, type: str = "", after: str = "") -> Response:
    return await _more(ctx, None, type, after)


@router.get("/events/live")
async def all_events_live(ctx: PollCtx, type: str = "", since: str = "") -> Response:
    return await _live(ctx, None, type, since)


@router.get("/pools/{pool_id}/events")
async def pool_events(ctx: ReadCtx, pool_id: str, type: str = "", after: str = "") -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    return await _page(ctx, pool, type, after)


@router.get("/pools/{pool_id}/events/more")
async def pool_events_more(ctx: ReadCtx, pool_id: str, type: str = "",
                           after: str = "") -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    return await _more(ctx, pool, type, after)


@router.get("/pools/{pool_id}/events/live")
async def pool_events_live(ctx: PollCtx, pool_id: str, type: str = "",
                           since: str = "") -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    return await _live(ctx, pool, type, since)
