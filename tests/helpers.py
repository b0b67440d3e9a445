"""Shared test helpers: seeding through the store layer, opening the app's clients (the scan
path's three kinds among them), snapshots of everything stored, and expiry without waiting."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis

from app.allocator.engine import Allocator
from app.embedded import RedisProcess
from app.runtime import connect
from app.schemas import GroupCreate, PoolCreate
from app.settings import Settings
from app.store import keys, schema
from app.store.fastredis import PipelinedRedis, ScanClient
from app.store.pools import AnyRedis, PoolStore, server_version
from app.store.topology import ClusterScanClient

STRATEGIES = ["fill", "round_robin", "weighted", "least_filled"]
# the alphabet of visitor ids (base64url); the weighted draw reads their first 4 characters
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# The scan path's clients, which the allocator suite runs over (the `core` fixture):
# "plain" PipelinedRedis (the only one Allocator.submit takes its fast paths on: packed and
# gathered calls), "wait" PipelinedRedis in WAIT mode on a primary with a real replica, and
# "cluster" ClusterScanClient on a local Redis Cluster. The last two go through client.evalsha.
SCAN_CLIENTS = ["plain", "wait", "cluster"]
# WAIT mode's timeout in the suite: generous, a loaded CI machine must not turn scans into 503s
WAIT_MS = 1000


@dataclass
class Core:
    redis: AnyRedis  # redis-py: one server's client, or a RedisCluster
    fast: ScanClient
    store: PoolStore
    allocator: Allocator
    kind: str = "plain"  # one of SCAN_CLIENTS


@asynccontextmanager
async def open_core(url: str, deadline_s: float = 2.0) -> AsyncIterator[Core]:
    client = aredis.Redis.from_url(url)
    store = await PoolStore.open(client)
    fast = PipelinedRedis.from_url(url)
    try:
        allocator = Allocator(fast, shebang=store.shebang, deadline_s=deadline_s)
        await allocator.preload(client)
        yield Core(client, fast, store, allocator)
    finally:
        await fast.close()
        await client.aclose()


@asynccontextmanager
async def open_scan_core(kind: str, url: str, deadline_s: float = 2.0) -> AsyncIterator[Core]:
    """open_core with the scan path's client of `kind` (SCAN_CLIENTS), opened the way the
    service opens it (app.runtime.connect) for "wait" and "cluster"."""
    if kind == "plain":
        async with open_core(url, deadline_s) as core:
            yield core
        return
    assert kind in ("wait", "cluster"), kind
    settings = Settings(redis_url=url, redis_cluster=kind == "cluster",
                        redis_wait_replicas=1 if kind == "wait" else 0, redis_wait_ms=WAIT_MS)
    client, fast = await connect(settings)
    try:
        if kind == "cluster":
            assert isinstance(fast, ClusterScanClient), fast
        else:  # WAIT mode: the allocator's fast paths are off, every scan is client.evalsha
            assert isinstance(fast, PipelinedRedis) and fast.wait_replicas == 1, fast
        store = await PoolStore.open(client)
        allocator = Allocator(fast, shebang=store.shebang, deadline_s=deadline_s)
        await allocator.preload(client)
        yield Core(client, fast, store, allocator, kind)
    finally:
        await fast.close()
        await client.aclose()


def start_primary_and_replica(
    make_redis: Callable[..., RedisProcess],
) -> tuple[RedisProcess, RedisProcess]:
    """A primary and a replica of it (made by `make_redis`, as the fixture of that name does),
    synced and acknowledging writes."""
    # a full sync starts at once instead of after the default 5 s diskless-sync delay
    primary = make_redis(appendonly=False, extra_args=["--repl-diskless-sync-delay", "0"])
    follow = ["--replicaof", "127.0.0.1", str(primary.port)]
    replica = make_redis(appendonly=False, extra_args=follow)
    deadline = time.monotonic() + 10
    with replica.client() as r:
        while r.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "replica did not sync"
            time.sleep(0.05)
    with primary.client() as p:
        until_a_replica_acknowledges(p)
    return primary, replica


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


def visitor() -> str:
    """A new visitor's id, as the scan path makes them (22 base64url characters)."""
    return secrets.token_urlsafe(16)[:22]


async def counts(client: aredis.Redis, pool_id: str = "pool-a") -> dict[str, int]:
    """Stored count per group, read straight from Redis."""
    gids = [g.decode() for g in await client.hvals(keys.slots(pool_id))]
    return {gid: int(await client.hget(keys.group(pool_id, gid), "c") or 0) for gid in gids}


class ExpiresAt:
    """When a key expires (unix ms), as snapshot() records it. Exact when the server has
    PEXPIRETIME (Redis 7+); before that, the local clock plus PTTL, equal within ESTIMATED_MS."""

    ESTIMATED_MS = 250

    def __init__(self, ms: int, exact: bool) -> None:
        self.ms, self.exact = ms, exact

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExpiresAt):
            return NotImplemented
        slack = 0 if self.exact and other.exact else self.ESTIMATED_MS
        return abs(self.ms - other.ms) <= slack

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ExpiresAt({self.ms}{'' if self.exact else '~'})"


async def _expires_at(client: AnyRedis, key: bytes, exact: bool) -> ExpiresAt | bool | None:
    """The key's expiry; None: none; False: the key is gone."""
    if exact:
        at = int(await client.pexpiretime(key))
    else:
        pttl = int(await client.pttl(key))
        at = pttl if pttl < 0 else int(time.time() * 1000) + pttl
    if at == -2:
        return False
    return None if at == -1 else ExpiresAt(at, exact)


async def snapshot(client: AnyRedis) -> dict[bytes, Any]:
    """Every key with its type, its value (every type) and when it expires, to prove that
    nothing changed: a TTL set, refreshed or removed shows as well as a changed value."""
    out: dict[bytes, Any] = {}
    exact = int(str(await server_version(client)).split(".")[0]) >= 7  # PEXPIRETIME
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        value: Any
        if kind == "string":
            value = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await client.smembers(key))
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        elif kind == "stream":
            value = await client.xrange(key)
        elif kind == "none":  # expired or deleted since SCAN returned it
            continue
        else:  # a module's type: its serialized form
            value = await client.dump(key)
        expires = await _expires_at(client, key, exact)
        if expires is False:
            continue
        out[key] = (kind, value, expires)
    return out


# What a scan's recorders write (app/allocator/recorders/): statistics and events. A scan
# that allocates nothing (a closed pool, a returning visitor) still records its page view.
RECORDED_KEYS = tuple(schema.suffix(k) for k in ("stats", "hour", "visitors", "channels",
                                                  "rate", "events"))
RECORDED_POOL_FIELDS = tuple(schema.POOL.stored(f).encode()
                             for f in ("stats_hour", "low_at", "low_checked", "exhausted"))


async def allocation_snapshot(client: AnyRedis) -> dict[bytes, Any]:
    """snapshot() without what the recorders write: the allocation's own state."""
    out = {}
    for key, (kind, value, expires) in (await snapshot(client)).items():
        rest = key.decode().split("}:", 1)[-1]
        if rest.startswith(RECORDED_KEYS):
            continue
        if rest == schema.suffix("pool"):
            value = {k: v for k, v in value.items() if k not in RECORDED_POOL_FIELDS}
        out[key] = (kind, value, expires)
    return out


async def expire_groups(
    client: AnyRedis, pool_id: str, gids: Iterable[str], at_ms: int | None = None
) -> int:
    """Give indexed groups a past expiry, as if the wall clock had passed theirs: the group's
    `exp`, its score in the pool's `ex` index and the pool's `exn` (the earliest score), the
    state that waiting would leave, without waiting. The groups stay in the indexes, as they do
    until a scan meets them (the store's own update would take them out at once), so what a
    test sees is the scan's lazy purge. `at_ms`: the expiry (unix ms), by default a minute ago.
    Returns it."""
    at = at_ms if at_ms is not None else int(time.time() * 1000) - 60_000
    gids = list(gids)
    p = keys.prefix(pool_id)
    scores = await client.zmscore(p + "ex", gids)
    assert None not in scores, f"not all of {gids} are indexed with an expiry"
    pipe = client.pipeline(transaction=False)
    for gid in gids:
        pipe.hset(keys.group(pool_id, gid), "exp", str(at))
    pipe.zadd(p + "ex", dict.fromkeys(gids, at))
    await pipe.execute()
    head = await client.zrange(p + "ex", 0, 0, withscores=True)
    await client.hset(keys.pool(pool_id), "exn", str(int(head[0][1])))
    return at


def flush_scripts(client: redis.Redis) -> None:
    """SCRIPT FLUSH and, on Redis 7+, FUNCTION FLUSH: the scan script is a function there."""
    client.script_flush()
    if int(str(client.info("server")["redis_version"]).split(".")[0]) >= 7:
        client.function_flush()


async def flush_scripts_async(client: aredis.Redis) -> None:
    """flush_scripts for an asyncio client."""
    await client.script_flush()
    if int(str(await server_version(client)).split(".")[0]) >= 7:
        await client.function_flush()


def script_calls(commandstats: dict[str, Any], field: str = "calls") -> int:
    """`field` of INFO commandstats summed over the ways a script is called."""
    return sum(int(commandstats.get(f"cmdstat_{c}", {}).get(field, 0))
               for c in ("evalsha", "eval", "fcall"))


def until_a_replica_acknowledges(primary: redis.Redis) -> None:
    """A replica whose link is up may not acknowledge yet: the first WAIT after a sync sometimes
    got 0 within the 50-100 ms the WAIT-mode tests allow. One generous WAIT before those."""
    primary.set("warm-up", 1)
    assert primary.wait(1, 5000) == 1, "no replica acknowledges"
