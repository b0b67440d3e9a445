"""The pool views the console shows, shared: the live fragments of any number of open consoles
read a pool at most once per `max_age_s` (bench/: the consoles scenario), and a page the
operator opens (after each change too) reads it fresh and refreshes the shared one. The
figures a poll sends back are rendered once per read, language and role, for every console
that polls the pool until the next read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.schemas import PoolPublic
from app.store.pools import PoolStore

MAX_ENTRIES = 1000


class PoolViews:
    def __init__(self, max_age_s: float = 2.0) -> None:
        self.max_age_s = max_age_s
        self._views: dict[str, tuple[float, asyncio.Future[PoolPublic]]] = {}
        self._html: dict[tuple[str, ...], tuple[PoolPublic, tuple[str, str]]] = {}

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

    def rendered(self, pool: PoolPublic, key: tuple[str, ...],
                 render: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        """`render()` of this very read of the pool (the object `recent` shared), once per
        `key`: what else the page depends on (the language, the role). It gives the structure's
        signature and the figures' HTML."""
        entry = (pool.id, *key)
        hit = self._html.get(entry)
        if hit is not None and hit[0] is pool:
            return hit[1]
        html = render()
        if len(self._html) >= MAX_ENTRIES:
            self._html.clear()
        self._html[entry] = (pool, html)
        return html
