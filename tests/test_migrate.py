"""The start-up migration (PoolStore.migrate, pool_migrate.lua): a pool as the version before
statistics wrote it gets a draw salt, its open groups' room and capacity (exact), the statistics'
retention and a timezone; once, and nothing else changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis.asyncio as aredis

from app.schemas import GroupUpdate
from app.settings import Settings
from app.store import keys
from app.store.pools import PoolStore
from tests.api_helpers import check_indexes, open_api
from tests.helpers import expire_groups, open_core, seed, visitor

NEW_FIELDS = ("room", "cap", "tz", "tzo", "lang", "sttl", "salt", "alm", "alp", "ale", "aex")


async def as_the_old_version_wrote_it(r: aredis.Redis, pool_id: str) -> None:
    await r.hdel(keys.pool(pool_id), *NEW_FIELDS)
    await r.delete(keys.prefix(pool_id) + "ev", keys.prefix(pool_id) + "fl")


async def old_pool(redis_url: str) -> None:
    """pool-a: g1 10 places, 4 taken; g2 full (5); g3 disabled (7); g4 8 places, 2 taken,
    expires in a day; g5 6 places, 1 taken, whose code expired (still indexed: nothing has
    looked since). pool-b: no groups."""
    async with open_core(redis_url) as core:
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        await seed(core.store, groups=[
            {"capacity": 10}, {"capacity": 5}, {"capacity": 7}, {"capacity": 8,
                                                                 "expires_at": tomorrow},
            {"capacity": 6, "expires_at": tomorrow}])
        await seed(core.store, "pool-b", groups=[])
        for gid, count in (("g1", 4), ("g2", 5), ("g4", 2), ("g5", 1)):
            await core.store.set_count("pool-a", gid, count)
        await core.store.update_group("pool-a", "g3", GroupUpdate(enabled=False))
        await expire_groups(core.redis, "pool-a", ["g5"])
        for pool_id in ("pool-a", "pool-b"):
            await as_the_old_version_wrote_it(core.redis, pool_id)


async def test_migrate_fills_in_what_older_pools_lack(redis_url: str) -> None:
    await old_pool(redis_url)
    r = aredis.Redis.from_url(redis_url)
    try:
        settings = Settings(timezone="Asia/Shanghai", stats_retention_days=10)
        store = await PoolStore.open(r, settings)
        groups_before = {g: await r.hgetall(keys.group("pool-a", g))
                         for g in ("g1", "g2", "g3", "g4", "g5")}
        assert await store.migrate() == 2
        a = {k.decode(): v.decode() for k, v in (await r.hgetall(keys.pool("pool-a"))).items()}
        # the indexed groups g1, g4 and g5: 6 + 6 + 5 places; the capacity of those and of the
        # full g2 (usable: enabled, never expires): 10 + 8 + 6 + 5
        assert (a["room"], a["cap"]) == ("17", "29")
        assert await r.zrange(keys.prefix("pool-a") + "fl", 0, -1) == [b"g2"]
        assert (a["tz"], a["tzo"], a["sttl"]) == ("Asia/Shanghai", "28800", str(10 * 86400))
        assert len(a["salt"]) == 32 and int(a["salt"], 16) >= 0
        b = {k.decode(): v.decode() for k, v in (await r.hgetall(keys.pool("pool-b"))).items()}
        assert (b["room"], b["cap"], b["tz"]) == ("0", "0", "Asia/Shanghai")
        # idempotent: a second run changes nothing
        salt = a["salt"]
        assert await store.migrate() == 0
        again = {k.decode(): v.decode() for k, v in
                 (await r.hgetall(keys.pool("pool-a"))).items()}
        assert again == a and again["salt"] == salt
        assert {g: await r.hgetall(keys.group("pool-a", g)) for g in groups_before} == \
            groups_before
        # the pool works on: a scan purges g5 (its 5 places and 6 capacity go) and takes one
        # place of g1
        async with open_core(redis_url) as core:
            decision = await core.allocator.scan("pool-a", visitor())
            assert decision.group_id == "g1"
        assert (await r.hget(keys.pool("pool-a"), "room"),
                await r.hget(keys.pool("pool-a"), "cap")) == (b"11", b"23")
        await check_indexes(r, "pool-a")
        pool = await store.get_pool("pool-a", with_groups=True)
        assert pool.timezone == "Asia/Shanghai" and pool.total_remaining == 11
    finally:
        await r.aclose()


async def test_migrate_keeps_what_a_pool_has(redis_url: str) -> None:
    """Only what is missing is set: a salt, a zone or a retention the pool has stay."""
    await old_pool(redis_url)
    r = aredis.Redis.from_url(redis_url)
    try:
        await r.hset(keys.pool("pool-a"), mapping={"salt": "ab" * 16, "tz": "Europe/Paris",
                                                   "tzo": "3600", "sttl": "86400"})
        store = await PoolStore.open(r, Settings(timezone="Asia/Shanghai"))
        assert await store.migrate() == 2
        a = {k.decode(): v.decode() for k, v in (await r.hgetall(keys.pool("pool-a"))).items()}
        assert (a["salt"], a["tz"], a["tzo"], a["sttl"]) == ("ab" * 16, "Europe/Paris", "3600",
                                                              "86400")
        assert (a["room"], a["cap"]) == ("17", "29")
    finally:
        await r.aclose()


async def test_the_app_migrates_at_start_up(redis_url: str) -> None:
    await old_pool(redis_url)
    async for api in open_api(redis_url, timezone="America/New_York"):
        pool = await api.pool("pool-a")
        assert pool["timezone"] == "America/New_York"
        assert pool["forecast"]["room_left"] == 6 + 6  # g5's code expired
        assert await api.redis.hget(keys.pool("pool-a"), "room") == b"17"
        assert (await api.call("GET", "/pools/pool-a/stats")).status_code == 200
