"""The pool views the console shows, shared: the live fragments of any number of open consoles
read a pool at most once per `max_age_s` (bench/: the consoles scenario), and a page the
operator opens (after each change too) reads it fresh and refreshes the shared one."""

from __future__ import annotations

import asyncio
import time

from app.schemas import PoolPublic
from app.store.pools import PoolStore

MAX_ENTRIES = 1000


class PoolViews:
    def __init__(self, max_age_s: float = 2.0) -> None:
        self.max_age_s = max_age_s
        self._views: dict[str, tuple[float, asyncio.Future[PoolPublic]]] = {}

    async def fresh(self, store: PoolStore, pool_id: str) -> PoolPublic:
        """Read now (a page), and share it with the polls that follow."""
        return await self._read(store, pool_id)

    async def recent(self, store: PoolStore, pool_id: str) -> PoolPublic:
        """At most `max_age_s` old (a poll); one read in flight at a time per pool."""
        hit = self._views.get(pool_id)
        if hit is not None and time.monotonic() - hit[0] < self.max_age_s:
            return await asyncio.shield(hit[1])
        return await self._read(store, pool_id)

    async def _read(self, store: PoolStore, pool_id: str) -> PoolPublic:
        if len(self._views) >= MAX_ENTRIES:
            self._views.clear()
        reading = asyncio.ensure_future(store.get_pool(pool_id, with_groups=True))
        self._views[pool_id] = (time.monotonic(), reading)
        try:
            return await asyncio.shield(reading)
        except BaseException:
            if self._views.get(pool_id, (0.0, None))[1] is reading:
                del self._views[pool_id]  # an error or a gone pool is not kept
            raise
