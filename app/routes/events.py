"""Events: /api/v1/events, newest first (or oldest first), one page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth import ReadKey
from app.deps import ERROR_RESPONSES, StoreDep, pool_id_or_404
from app.events.store import EventPage, Order

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=ERROR_RESPONSES)


@router.get("")
async def list_events(
    store: StoreDep,
    _: ReadKey,
    pool: Annotated[str | None, Query(description="only this pool's events")] = None,
    type: Annotated[list[str] | None, Query(description="only these types (repeat for "
                                            "several): group.full, pool.low, ...")] = None,
    after: Annotated[str | None, Query(max_length=200, description="the `next` of the page "
                                       "before")] = None,
    order: Annotated[Order, Query(description="desc: newest first; asc: oldest first (to "
                                  "follow: keep passing `next`)")] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EventPage:
    """What happened: groups that filled, pools running low, exhausted and recovered, codes
    expiring and expired, and every admin change with the API key that made it. Across pools
    the list is the feed, which the scheduler fills within a second or two; a pool's own
    events (`pool=`) are there at once."""
    if pool is not None:
        await store.get_pool(pool_id_or_404(pool))
    return await store.events.list(pool_id=pool, types=type or (), after=after, order=order,
                                   limit=limit)
