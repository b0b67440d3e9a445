"""Shared test helpers: seeding through the store layer, opening the app's clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis

from app.allocator.engine import Allocator
from app.schemas import GroupCreate, PoolCreate
from app.store import keys
from app.store.fastredis import PipelinedRedis
from app.store.pools import PoolStore

STRATEGIES = ["fill", "round_robin", "weighted", "least_filled"]
# the alphabet of visitor ids (base64url); the weighted draw reads their first 4 characters
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass
class Core:
    redis: aredis.Redis
    fast: PipelinedRedis
    store: PoolStore
    allocator: Allocator


@asynccontextmanager
async def open_core(url: str, deadline_s: float = 2.0) -> AsyncIterator[Core]:
    client = aredis.Redis.from_url(url)
    store = await PoolStore.open(client)
    fast = PipelinedRedis.from_url(url)
    try:
        allocator = Allocator(fast, shebang=store.shebang, deadline_s=deadline_s)
        yield Core(client, fast, store, allocator)
    finally:
        await fast.close()
        await client.aclose()


async def seed(
    store: PoolStore,
    pool_id: str = "pool-a",
    groups: list[dict[str, Any]] | None = None,
    **pool: Any,
) -> None:
    await store.create_pool(PoolCreate(id=pool_id, name=pool.pop("name", "Pool A"), **pool))
    if groups is None:
        groups = [{"capacity": 200} for _ in range(3)]
    await store.add_groups(
        pool_id,
        [
            GroupCreate(**{"id": f"g{i + 1}", "url": f"https://chat.example.com/g{i + 1}", **g})
            for i, g in enumerate(groups)
        ],
    )


async def counts(client: aredis.Redis, pool_id: str = "pool-a") -> dict[str, int]:
    """Stored count per group, read straight from Redis."""
    gids = [g.decode() for g in await client.hvals(keys.slots(pool_id))]
    return {gid: int(await client.hget(keys.group(pool_id, gid), "c") or 0) for gid in gids}


async def snapshot(client: aredis.Redis) -> dict[bytes, Any]:
    """Every key with its type and value, to prove that nothing changed."""
    out: dict[bytes, Any] = {}
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        if kind == "string":
            out[key] = await client.get(key)
        elif kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = kind
    return out


def until_a_replica_acknowledges(primary: redis.Redis) -> None:
    """A replica whose link is up may not acknowledge yet: the first WAIT after a sync sometimes
    got 0 within the 50-100 ms the WAIT-mode tests allow. One generous WAIT before those."""
    primary.set("warm-up", 1)
    assert primary.wait(1, 5000) == 1, "no replica acknowledges"
