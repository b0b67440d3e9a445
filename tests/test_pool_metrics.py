"""Per-pool metrics at /metrics, read from Redis at scrape time: exact values for known pools,
the same from any worker, and a scrape that survives Redis going away."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.embedded import RedisProcess
from app.schemas import GroupCreate, GroupUpdate, PoolCreate, PoolUpdate
from app.store import keys
from app.store.schema import GAUGE_SLOTS
from tests.api_helpers import Api, open_api
from tests.helpers import expire_groups, open_core, script_calls, seed, visitor


@asynccontextmanager
async def api_on(redis_url: str) -> AsyncIterator[Api]:
    """An app whose per-pool metrics are read at every scrape (no cache)."""
    async for api in open_api(redis_url, metrics_cache_s=0):
        yield api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("livecode_pool_"):
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def of(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
       **labels: str) -> float:
    return got[name, tuple(sorted(labels.items()))]


async def test_pool_metrics_are_exact(redis_url: str) -> None:
    async with open_core(redis_url) as core:
        soon = datetime.now(UTC) + timedelta(hours=2)
        await seed(core.store, groups=[{"capacity": 2}, {"capacity": 5}, {"capacity": 3},
                                       {"capacity": 4, "expires_at": soon}])
        await core.store.update_group("pool-a", "g3", GroupUpdate(enabled=False))
        await seed(core.store, "pool-b", groups=[{"capacity": 1}])
        for _ in range(3):  # g1 fills (2), one in g2
            await core.allocator.scan("pool-a", visitor())
        await core.allocator.scan("pool-b", visitor())
        await core.allocator.scan("pool-b", visitor())  # pool-b: a fallback
        await core.store.update_pool("pool-b", PoolUpdate(status="paused"))
        await core.allocator.scan("pool-b", visitor())
        async with api_on(redis_url) as api:
            r = await api.http.get("/metrics")
            got = samples(r.text)
            assert of(got, "livecode_pool_room", pool="pool-a") == 4 + 4  # g2 4 left, g4 4
            # enabled, unexpired: full g1 too, not the disabled g3
            assert of(got, "livecode_pool_capacity", pool="pool-a") == 2 + 5 + 4
            assert [of(got, "livecode_pool_groups", pool="pool-a", state=s)
                    for s in ("open", "full", "expired", "disabled")] == [2, 1, 0, 1]
            assert of(got, "livecode_pool_active", pool="pool-a") == 1
            assert of(got, "livecode_pool_exhausted", pool="pool-a") == 0
            assert of(got, "livecode_pool_scans_total", pool="pool-a", outcome="new") == 3
            left = of(got, "livecode_pool_next_expiry_seconds", pool="pool-a")
            assert 2 * 3600 - 120 < left <= 2 * 3600
            # 3 allocations in the last 5 minutes: finite, and at least room / that rate
            assert math.isfinite(of(got, "livecode_pool_exhaustion_seconds", pool="pool-a"))
            assert of(got, "livecode_pool_active", pool="pool-b") == 0  # paused
            assert of(got, "livecode_pool_exhausted", pool="pool-b") == 1
            assert of(got, "livecode_pool_room", pool="pool-b") == 0
            assert [of(got, "livecode_pool_scans_total", pool="pool-b", outcome=o)
                    for o in ("new", "fallback", "paused")] == [1, 1, 1]
            assert of(got, "livecode_pool_next_expiry_seconds", pool="pool-b") == math.inf
            assert of(got, "livecode_pool_exhaustion_seconds", pool="pool-b") == 0  # no room
            # an expired code counts as expired, not open, even before anything purges it
            await expire_groups(core.redis, "pool-a", ["g4"])
            got = samples((await api.http.get("/metrics")).text)
            assert [of(got, "livecode_pool_groups", pool="pool-a", state=s)
                    for s in ("open", "full", "expired", "disabled")] == [1, 1, 1, 1]


async def test_a_pool_without_recent_scans_never_runs_out(redis_url: str) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 10}])
        async with api_on(redis_url) as api:
            got = samples((await api.http.get("/metrics")).text)
            assert of(got, "livecode_pool_exhaustion_seconds", pool="pool-a") == math.inf


async def test_two_workers_report_the_same_pool_metrics(redis_url: str) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store)
        for _ in range(5):
            await core.allocator.scan("pool-a", visitor())
        async with api_on(redis_url) as one, \
                api_on(redis_url) as two:
            a = samples((await one.http.get("/metrics")).text)
            b = samples((await two.http.get("/metrics")).text)
            skip = {"livecode_pool_exhaustion_seconds", "livecode_pool_next_expiry_seconds"}
            assert {k: v for k, v in a.items() if k[0] not in skip} == {
                k: v for k, v in b.items() if k[0] not in skip}
            assert of(a, "livecode_pool_scans_total", pool="pool-a", outcome="new") == 5


async def test_a_scrape_with_redis_down_still_has_the_process_metrics(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=False)
    async with open_core(server.url) as core:
        await seed(core.store)
    async for api in open_api(server.url, metrics_cache_s=0):
        assert "livecode_pool_room" in (await api.http.get("/metrics")).text
        server.pause()
        try:
            r = await api.http.get("/metrics")
        finally:
            server.resume()
        assert r.status_code == 200
        assert "livecode_scans_total" in r.text and "livecode_pool_room" not in r.text


async def test_groups_by_state_after_expiry_and_disable(redis_url: str) -> None:
    """g1 open (3 of 10), g2 full, g3 disabled, g4 expired (nothing has purged it yet), g5
    expired and disabled (disabled first), g6 full and expired (expired first). Room: g1's 7
    only, whether or not a scan or tick has purged g4 yet; capacity: the enabled groups whose
    code has not expired, full or not (g1 and g2), as the pool view's total_capacity."""
    async with open_core(redis_url) as core:
        later = datetime.now(UTC) + timedelta(days=1)
        await seed(core.store, groups=[
            {"capacity": 10}, {"capacity": 2}, {"capacity": 4}, {"capacity": 6,
                                                                 "expires_at": later},
            {"capacity": 5, "expires_at": later}, {"capacity": 1, "expires_at": later}])
        await core.store.set_count("pool-a", "g1", 3)
        await core.store.set_count("pool-a", "g2", 2)
        await core.store.set_count("pool-a", "g6", 1)
        await core.store.set_count("pool-a", "g4", 2)
        await core.store.update_group("pool-a", "g3", GroupUpdate(enabled=False))
        await core.store.update_group("pool-a", "g5", GroupUpdate(enabled=False))
        past = await expire_groups(core.redis, "pool-a", ["g4"])
        await core.redis.hset("lc:{pool-a}:g:g5", "exp", past)
        await core.redis.hset("lc:{pool-a}:g:g6", "exp", past)
        async with api_on(redis_url) as api:
            view = await api.pool("pool-a")
            assert (view["total_remaining"], view["total_capacity"]) == (7, 12)
            for when in ("before a purge", "after"):
                got = samples((await api.http.get("/metrics")).text)
                assert [of(got, "livecode_pool_groups", pool="pool-a", state=s)
                        for s in ("open", "full", "expired", "disabled")] == [1, 1, 2, 2], when
                assert of(got, "livecode_pool_room", pool="pool-a") == 7, when
                assert of(got, "livecode_pool_capacity", pool="pool-a") == 12, when
                # no open group's code expires (g4's has)
                assert of(got, "livecode_pool_next_expiry_seconds",
                          pool="pool-a") == math.inf, when
                await core.allocator.scan("pool-a", visitor())  # purges g4, takes one of g1
                await core.store.set_count("pool-a", "g1", 3)


async def test_exhaustion_counts_room_that_expires(redis_url: str) -> None:
    """40 new allocations in the 4 minutes before this one: 40 / (4 + f) a minute, 8 to 10.
    g1 (first in order) has 20 places and never expires; g2 has 100 whose code expires in a
    minute, before g1 is full: all of g2's room is lost. Time to exhaustion: g1's 20 places
    at the rate, 120 to 150 s, not 120 places' 720 to 900 s."""
    async with open_core(redis_url) as core:
        soon = datetime.now(UTC) + timedelta(minutes=1)
        await seed(core.store, groups=[{"capacity": 20}, {"capacity": 100,
                                                          "expires_at": soon}])
        async with api_on(redis_url) as api:
            for _ in range(100):
                now = time.time()
                minute, f0 = int(now // 60), (now % 60) / 60
                if f0 > 0.9:
                    await asyncio.sleep((1 - f0) * 60 + 0.05)
                    continue
                await core.redis.delete("lc:{pool-a}:r")
                await core.redis.hset("lc:{pool-a}:r", mapping={
                    str(minute - k): 10 for k in range(1, 5)})
                got = samples((await api.http.get("/metrics")).text)
                after = time.time()
                if int(after // 60) == minute:
                    break
            f1 = (after % 60) / 60
            seconds = of(got, "livecode_pool_exhaustion_seconds", pool="pool-a")
            assert 20 / (40 / (4 + f0)) * 60 <= seconds <= 20 / (40 / (4 + f1)) * 60, seconds
            assert of(got, "livecode_pool_room", pool="pool-a") == 120
            # paused: nothing is taken, it never runs out
            await core.store.update_pool("pool-a", PoolUpdate(status="paused"))
            got = samples((await api.http.get("/metrics")).text)
            assert of(got, "livecode_pool_exhaustion_seconds", pool="pool-a") == math.inf
            assert of(got, "livecode_pool_active", pool="pool-a") == 0


async def test_webhook_metrics(redis_url: str) -> None:
    """Dead letters from Redis (any worker reports them), delivery attempts per process."""
    async for api in open_api(redis_url, metrics_cache_s=0):
        await api.redis.zadd(keys.WEBHOOKS_DEAD, {"dl_0": 1, "dl_1": 2})
        metrics.webhook_attempt[False].inc()
        text = (await api.http.get("/metrics")).text
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
        assert got["livecode_webhook_dead_letters", ()] == 2
        assert got["livecode_webhook_deliveries_total", (("result", "failed"),)] >= 1


async def test_a_pool_of_many_groups_is_read_a_slot_range_at_a_time(redis_url: str) -> None:
    """A scrape must not hold Redis (and every scan waiting on it) for as long as a pool of
    100,000 codes takes to read: pool_gauges.lua reads GAUGE_SLOTS groups per call, and the
    scrape adds the calls up. 2,500 groups (slots 1-2,500): the first 1,000 full, one deleted
    and one disabled further on, one with a code that expires in the last range. Three calls,
    and the same figures as one call over all of them would give."""
    async with open_core(redis_url) as core:
        soon = datetime.now(UTC) + timedelta(hours=2)
        await core.store.create_pool(PoolCreate(id="big"))
        for start in range(0, 2500, 1000):
            await core.store.add_groups("big", [GroupCreate(
                id=f"g{i:04}", url=f"https://t.me/+g{i:04}", capacity=2,
                expires_at=soon if i == 2400 else None)
                for i in range(start, min(start + 1000, 2500))])
        for i in range(1000):
            await core.store.set_count("big", f"g{i:04}", 2)
        await core.store.delete_group("big", "g1500")
        await core.store.update_group("big", "g2100", GroupUpdate(enabled=False))
        async with api_on(redis_url) as api:
            await core.redis.config_resetstat()
            got = samples((await api.http.get("/metrics")).text)
            calls = script_calls(await core.redis.info("commandstats"))
            assert calls == math.ceil(2500 / GAUGE_SLOTS) == 3
            assert [of(got, "livecode_pool_groups", pool="big", state=s)
                    for s in ("open", "full", "expired", "disabled")] == [1498, 1000, 0, 1]
            assert of(got, "livecode_pool_room", pool="big") == 1498 * 2
            assert of(got, "livecode_pool_capacity", pool="big") == (1498 + 1000) * 2
            left = of(got, "livecode_pool_next_expiry_seconds", pool="big")
            assert 2 * 3600 - 120 < left <= 2 * 3600
