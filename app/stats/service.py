"""Statistics of a pool, as the API, the CLI and the console ask for them."""

from __future__ import annotations

from datetime import datetime

from app.stats.models import By, StatsPublic, Step
from app.store.pools import PoolStore


async def pool_stats(store: PoolStore, pool_id: str, *, step: Step = "hour",
                     by: By | None = None, start: datetime | None = None,
                     end: datetime | None = None) -> StatsPublic:
    """Hourly or daily series of the pool (and of each group or channel) in its timezone;
    PoolNotFound for no pool."""
    pool = await store.get_pool(pool_id)
    names = {g.id: g.name for g in await store.list_groups(pool_id)} if by == "group" else {}
    return await store.statistics.series(pool_id, pool.timezone, step, by, start, end, names)
