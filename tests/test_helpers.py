"""The test helpers that other tests lean on: snapshot() must see every change a "writes
nothing" test could miss (expiries included), and expire_groups() must leave the state that
waiting for the clock would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aredis

from app.store import keys
from tests.helpers import Core, expire_groups, seed, snapshot

Change = Callable[[aredis.Redis], Awaitable[Any]]


async def _fill(r: aredis.Redis) -> None:
    await r.set("s", "v", ex=100)
    await r.set("plain", "v")
    await r.hset("h", mapping={"a": "1"})
    await r.zadd("z", {"m": 1})
    await r.sadd("set", "a", "b")
    await r.rpush("list", "a", "b")
    await r.xadd("stream", {"f": "v"}, id="1-1")


CHANGES: list[Any] = [
    pytest.param(lambda r: r.expire("s", 200), id="ttl-lengthened"),
    pytest.param(lambda r: r.expire("s", 50), id="ttl-shortened"),
    pytest.param(lambda r: r.persist("s"), id="ttl-removed"),
    pytest.param(lambda r: r.expire("plain", 100), id="ttl-added"),
    pytest.param(lambda r: r.expire("h", 100), id="ttl-added-to-a-hash"),
    pytest.param(lambda r: r.sadd("set", "c"), id="set"),
    pytest.param(lambda r: r.rpush("list", "c"), id="list"),
    pytest.param(lambda r: r.lset("list", 0, "z"), id="list-order"),
    pytest.param(lambda r: r.xadd("stream", {"f": "v"}, id="2-1"), id="stream"),
    pytest.param(lambda r: r.zadd("z", {"m": 2}), id="zset-score"),
    pytest.param(lambda r: r.delete("plain"), id="deleted"),
]


@pytest.mark.parametrize("change", CHANGES)
async def test_snapshot_sees_every_kind_of_change(core: Core, change: Change) -> None:
    await _fill(core.redis)
    before = await snapshot(core.redis)
    assert await snapshot(core.redis) == before  # still
    await change(core.redis)
    assert await snapshot(core.redis) != before


async def test_snapshot_sees_a_ttl_refreshed_to_the_same_length(core: Core) -> None:
    """What a sticky record's refresh looks like: the same TTL, set again later. Redis 7 gives
    the exact expiry time (PEXPIRETIME); older servers only the countdown, so there a refresh
    shows only once more than ExpiresAt.ESTIMATED_MS has passed."""
    await _fill(core.redis)
    version = int((await core.redis.info("server"))["redis_version"].split(".")[0])
    before = await snapshot(core.redis)
    await asyncio.sleep(0.01 if version >= 7 else 0.5)  # the clock moves on
    assert await snapshot(core.redis) == before  # a countdown alone is no change
    await core.redis.expire("s", 100)
    assert await snapshot(core.redis) != before


async def test_expire_groups_leaves_the_state_waiting_would(core: Core) -> None:
    """Expired groups stay indexed (av, ex) until a scan meets them; exp, their ex score and
    the pool's exn all say the past time; the next scan skips and purges them."""
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, groups=[{"expires_at": later}, {"expires_at": later + timedelta(1)},
                                   {}])
    p = keys.prefix("pool-a")
    at = await expire_groups(core.redis, "pool-a", ["g2"])
    assert at < time.time() * 1000
    assert await core.redis.hget(keys.group("pool-a", "g2"), "exp") == str(at).encode()
    assert await core.redis.zrange(p + "ex", 0, -1, withscores=True) == [
        (b"g2", at), (b"g1", later.timestamp() * 1000 // 1)]
    assert float(await core.redis.hget(keys.pool("pool-a"), "exn")) == at
    assert await core.redis.zscore(p + "av", "g2") is not None  # still indexed
    with pytest.raises(AssertionError, match="indexed"):
        await expire_groups(core.redis, "pool-a", ["g3"])  # no expiry: not in ex
    v = "A" * 22
    assert (await core.allocator.scan("pool-a", v)).group_id == "g1"
    await expire_groups(core.redis, "pool-a", ["g1"])
    d = await core.allocator.scan("pool-a", v)  # g1 expired: the visitor gets a new group
    assert (d.outcome, d.group_id) == ("new", "g3")
    assert await core.redis.zrange(p + "ex", 0, -1) == []
    assert await core.redis.hget(keys.pool("pool-a"), "exn") is None
