"""What runs once per deployment, however many workers and instances there are: the scheduler's
tick (time-based events, app/allocator/tick.lua) and the dispatcher, which moves every new event
into the feed and hands it to the webhooks.

One process holds a lease in Redis (`keys.SCHEDULER_LEADER`, renewed while it lives); the
others wait and take over within a lease when it goes. Everything it does is idempotent per
event: a new leader resumes from the cursors in Redis, and re-reading an event appends and
enqueues it once (feed_append.lua, and the webhooks' own idempotency per event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from app.events.model import EventPublic
from app.events.store import FEED_MAX, SYSTEM, decode, event_id, pool_stream, script
from app.stats.forecast import HORIZON_MIN, simulate
from app.stats.store import zone_offset_s
from app.store import keys
from app.store.pools import PoolStore
from app.store.schema import LOW_EVIDENCE, POOL
from app.tasks import raise_if_cancelled

log = logging.getLogger("livecode.scheduler")
AnyRedis = Any
LEASE_MS = 10_000
# Takes the dispatched events with each one's pool language (zh-CN / en): the webhooks.
Sink = Callable[[Sequence[tuple[EventPublic, str]]], Awaitable[None]]

# Renew our lease; take it if nobody holds it. Returns 1 while we hold it.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Drop a source's cursor if it is still the one read (a pool made again meanwhile keeps its).
_FORGET = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Lease:
    """Held by one process at a time; `keep()` renews it (or takes it when free) every third
    of its length, so a long round of work does not lose it."""

    def __init__(self, client: AnyRedis, key: str = keys.SCHEDULER_LEADER,
                 lease_ms: int = LEASE_MS) -> None:
        self.r = client
        self.key = key
        self.lease_ms = lease_ms
        self.me = secrets.token_hex(8)
        self.held = False
        self._take = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)

    async def hold(self) -> bool:
        try:
            self.held = bool(int(await self._take(keys=[self.key],
                                                  args=[self.me, self.lease_ms])))
        except Exception:
            self.held = False
            raise
        return self.held

    async def keep(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis down: not the leader meanwhile
                await self.hold()
            raise_if_cancelled()
            await asyncio.sleep(self.lease_ms / 3000)

    async def release(self) -> None:
        self.held = False
        await self._release(keys=[self.key], args=[self.me])


class Dispatcher:
    """Every source's events past its cursor: to the sinks (webhooks), then to the feed."""

    def __init__(self, store: PoolStore, sinks: Sequence[Sink] = ()) -> None:
        self.store = store
        self.r = store.r
        self.sinks = list(sinks)
        self._append = self.r.register_script(script("feed_append.lua"))
        self._forget = self.r.register_script(_FORGET)

    async def sources(self) -> list[str]:
        return [SYSTEM, *(_s(p) for p in await self.r.zrange(keys.POOLS_INDEX, 0, -1))]

    async def run_once(self, batch: int = 200) -> int:
        """One pass over every source; returns how many events were new to the feed."""
        sources = await self.sources()
        cursors = {_s(k): _s(v) for k, v in (await self.r.hgetall(keys.EVENTS_CURSORS)).items()}
        appended = 0
        for start in range(0, len(sources), 500):
            chunk = sources[start : start + 500]
            async with self.r.pipeline(transaction=False) as pipe:
                for source in chunk:
                    key = keys.EVENTS_SYSTEM if source == SYSTEM else pool_stream(source)
                    after = cursors.get(source)
                    pipe.xrange(key, f"({after}" if after else "-", "+", count=batch)
                replies = await pipe.execute()
            for source, entries in zip(chunk, replies, strict=True):
                if entries:
                    appended += await self._dispatch(source, entries)
        # The cursors of pools that are gone: their last events came through the system
        # stream. Dropped here, by the one dispatcher, not by the delete: this pass read no
        # stream of theirs, so nothing read before can still be appended behind it.
        listed = set(sources)
        for source, cursor in cursors.items():
            if source not in listed:
                await self._forget(keys=[keys.EVENTS_CURSORS], args=[source, cursor])
        return appended

    async def _dispatch(self, source: str, entries: list[Any]) -> int:
        names, language = {}, self.store.settings.language
        if source != SYSTEM:
            raw = await self.r.hmget(keys.pool(source), [POOL.stored("name"),
                                                         POOL.stored("language")])
            names[source] = _s(raw[0]) if raw[0] else ""
            language = _s(raw[1]) if raw[1] else language
        events = [(_s(sid), decode(source, _s(sid), fields, names)) for sid, fields in entries]
        batch = [(e, language) for _, e in events]
        for sink in self.sinks:
            await sink(batch)
        args: list[str] = [source, str(FEED_MAX)]
        for sid, e in events:
            args += [sid, e.model_dump_json()]
        return int(await self._append(keys=[keys.EVENTS_CURSORS, keys.EVENTS_FEED], args=args))


class Scheduler:
    """The tick of every pool: its zone's offset, expired and expiring codes, pool.low from
    the forecast."""

    def __init__(self, store: PoolStore) -> None:
        self.store = store
        self.r = store.r

    async def tick_all(self) -> dict[str, int]:
        ids = [_s(p) for p in await self.r.zrange(keys.POOLS_INDEX, 0, -1)]
        totals = {"pools": 0, "expired": 0, "warned": 0, "low": 0}
        for pool_id in ids:
            raise_if_cancelled()
            try:
                expired, warned, low = await self.tick(pool_id)
            except Exception as exc:  # one pool's trouble must not stop the others
                log.warning("tick of pool %s failed: %r", pool_id, exc)
                continue
            totals["pools"] += 1
            totals["expired"] += expired
            totals["warned"] += warned
            totals["low"] += low
        return totals

    async def tick(self, pool_id: str) -> tuple[int, int, int]:
        raw = await self.r.hmget(keys.pool(pool_id), [POOL.stored(f) for f in (
            "status", "timezone", "strategy")])
        if raw[0] is None:
            return 0, 0, 0
        tz = _s(raw[1]) if raw[1] else self.store.settings.timezone
        minutes, rate, room = await self._forecast(pool_id, _s(raw[2]) if raw[2] else "fill")
        reply = await self.store._scripts["tick"](keys=[keys.pool(pool_id)], args=[
            keys.prefix(pool_id), zone_offset_s(tz),
            "" if minutes is None else f"{minutes:.3f}", f"{rate:.4f}", room])
        return int(reply[0]), int(reply[1]), int(reply[2])

    async def _forecast(self, pool_id: str, strategy: str) -> tuple[float | None, float, int]:
        """Minutes to exhaustion, counting room that expires, for a pool with scans lately;
        None for the others (the scan's own check covers room and rate)."""
        now = datetime.now(UTC)
        rate5, _ = await self.store.statistics.rates(pool_id, int(now.timestamp() * 1000))
        if rate5 * 5 < LOW_EVIDENCE:  # too few allocations lately to forecast from
            return None, 0.0, 0
        groups = await self.store.statistics.open_groups(pool_id, int(now.timestamp() * 1000))
        room = sum(g.remaining for g in groups)
        if all(g.expires_in_min is None for g in groups):  # nothing expires: every place fills
            minutes = room / rate5
            return (minutes if minutes <= HORIZON_MIN else None), rate5, room
        # Off the event loop: for a pool of many open groups the simulation takes a while, and
        # this process also serves scans.
        result = await asyncio.to_thread(simulate, strategy, groups, rate5)
        return result.minutes_to_exhaustion, rate5, room


async def run(store: PoolStore, *, interval_s: float, sinks: Sequence[Sink] = (),
              dispatch_every_s: float = 1.0) -> None:
    """The lifespan's background task: while this process holds the lease, dispatch every
    `dispatch_every_s` and tick every `interval_s`; else wait and try again."""
    lease = Lease(store.r)
    dispatcher = Dispatcher(store, sinks)
    scheduler = Scheduler(store)
    keeper = asyncio.create_task(lease.keep())
    next_tick = 0.0
    try:
        while True:
            try:
                if lease.held:
                    await dispatcher.run_once()
                    raise_if_cancelled()
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + interval_s
                        await scheduler.tick_all()
                        raise_if_cancelled()
                        await dispatcher.run_once()
                        raise_if_cancelled()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: try again on the next round
                log.warning("scheduler round failed: %r", exc)
            await asyncio.sleep(dispatch_every_s)
    finally:
        keeper.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(lease.release())


__all__ = ["Dispatcher", "Lease", "Scheduler", "Sink", "event_id", "run"]
