"""Pools, groups and visitors written straight into a bench Redis, fast.

The store's own Lua scripts do the writing (so the indexes are exactly what the service builds),
but called through redis-py pipelines, a thousand calls per round trip: `PoolStore.add_groups`
makes one round trip per group, which would take minutes for 100,000 groups.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis.asyncio as aredis

from app.allocator.protocol import Call
from app.schemas import GroupCreate, PoolCreate, PoolUpdate, Strategy
from app.store import keys
from app.store.apikeys import ApiKeyStore, Scope
from app.store.pools import PoolStore

T = TypeVar("T")
BATCH = 1000
CONCURRENT_CREATES = 100
STICKY_VISITOR = "benchStickyVisitor0001"  # 22 chars, a valid visitor id
BENCH_POOL = "bench"


def _ok(reply: Any) -> bool:
    """group_put answers 'ok' (or {'ok', gid}), else why not ('no_pool', 'exists', ...)."""
    return reply == b"ok" or (isinstance(reply, list) and bool(reply) and reply[0] == b"ok")


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def group_id(i: int) -> str:
    return f"g{i}"


def group_url(pool_id: str, i: int) -> str:
    return f"https://chat.example.com/invite/{pool_id}-{i}"


def new_visitor() -> str:
    """Like the service's: 128 random bits, base64url, 22 characters."""
    return secrets.token_urlsafe(16)


class Seeder:
    """A synchronous face over an async PoolStore on its own event loop."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self.r = aredis.Redis.from_url(url, socket_timeout=60)
        self.store = self._run(PoolStore.open(self.r))

    def close(self) -> None:
        self._run(self.r.aclose())
        self._loop.close()

    def _run(self, coro: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coro)

    # whole server

    def flush(self) -> None:
        self._run(self.r.flushall())

    def used_memory(self) -> int:
        return int(self._run(self.r.info("memory"))["used_memory"])

    def data_memory(self) -> int:
        """used_memory without the clients' buffers (mem_clients_normal), which grow with a
        pipeline's commands and replies and shrink again later, on Redis's own schedule."""
        info = self._run(self.r.info("memory"))
        return int(info["used_memory"]) - int(info["mem_clients_normal"])

    def memory_usage(self, key: str) -> int:
        return int(self._run(self.r.memory_usage(key, samples=0)) or 0)

    def config_set(self, name: str, value: str) -> None:
        self._run(self.r.config_set(name, value))

    def time_s(self) -> int:
        """The Redis server's clock (TIME), in whole seconds: the scripts' clock."""
        seconds, _ = self._run(self.r.time())
        return int(seconds)

    def exists_each(self, names: Sequence[str]) -> list[bool]:
        return [bool(x) for x in self._each(names, lambda pipe, k: pipe.exists(k))]

    def memory_usage_each(self, names: Sequence[str]) -> list[int]:
        """MEMORY USAGE of each key, exact (SAMPLES 0)."""
        return [int(x or 0) for x in self._each(
            names, lambda pipe, k: pipe.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0"))]

    def delete_each(self, names: Sequence[str]) -> int:
        """DEL (not UNLINK), so the memory is freed before the reply."""
        return sum(int(x) for x in self._each(names, lambda pipe, k: pipe.delete(k)))

    def shapes(self, names: Sequence[str]) -> dict[str, str]:
        """How each key is stored: a hash's fields and encoding, a string's bytes (a
        HyperLogLog is a string; a dense one is always 12,304 bytes)."""
        kinds = [_str(x) for x in self._each(names, lambda pipe, k: pipe.type(k))]
        encodings = [_str(x) for x in self._each(names, lambda pipe, k: pipe.object("encoding", k))]
        sizes: dict[str, int] = {}
        for kind, size in (("hash", "hlen"), ("string", "strlen")):
            chosen = [k for k, t in zip(names, kinds, strict=True) if t == kind]
            sizes |= dict(zip(chosen, (int(x) for x in self._each(
                chosen, lambda pipe, k, size=size: getattr(pipe, size)(k))), strict=True))
        out = {}
        for name, kind, encoding in zip(names, kinds, encodings, strict=True):
            if kind == "hash":
                out[name] = f"hash of {sizes[name]} fields ({encoding})"
            elif kind == "string":
                form = "dense" if sizes[name] == 12_304 else "sparse"
                out[name] = f"HyperLogLog of {sizes[name]:,} B ({form})"
            else:
                out[name] = f"{kind} ({encoding})"
        return out

    def _each(self, names: Sequence[str], add: Any) -> list[Any]:
        async def go() -> list[Any]:
            out: list[Any] = []
            for start in range(0, len(names), BATCH * 10):
                async with self.r.pipeline(transaction=False) as pipe:
                    for name in names[start : start + BATCH * 10]:
                        add(pipe, name)
                    out += await pipe.execute()
            return out
        return self._run(go())

    def create_api_key(self, scope: Scope = "admin", name: str = "bench") -> str:
        """A new API key, in full (what `livecode keys create` prints)."""
        _, key = self._run(ApiKeyStore(self.r).create(scope, name))
        return key

    def script_load(self, source: str) -> str:
        return str(self._run(self.r.script_load(source)))

    def function_load(self, library: str) -> None:
        self._run(self.r.function_load(library, replace=True))

    # pools and groups

    def create_pool(self, pool_id: str, capacities: Sequence[int]) -> list[str]:
        """A pool with one group per capacity (g1, g2, ...), each created by one `group_put`
        call, pipelined, with the fields `add_groups` would write. Returns the ids in order."""
        self._run(self.store.create_pool(PoolCreate(id=pool_id, name=pool_id)))
        items = self._group_items(pool_id, capacities)
        self._run(self._group_puts("create", items))
        return [gid for _, gid, _ in items]

    def create_pools(self, pool_ids: Sequence[str], capacities: Sequence[int], *,
                     timezone: str | None = None, expires_at: datetime | None = None) -> None:
        """Many pools with the same groups: each pool made by `PoolStore.create_pool`
        (CONCURRENT_CREATES at a time), their groups by `group_put` calls pipelined across
        pools; every group expiring at `expires_at` when it is given."""
        async def pools() -> None:
            for start in range(0, len(pool_ids), CONCURRENT_CREATES):
                await asyncio.gather(*(
                    self.store.create_pool(PoolCreate(id=p, name=p, timezone=timezone))
                    for p in pool_ids[start : start + CONCURRENT_CREATES]))
            # the connections gathered above: closed, so that their buffers leave used_memory
            await self.r.connection_pool.disconnect()
        self._run(pools())
        items = [item for p in pool_ids
                 for item in self._group_items(p, capacities, expires_at=expires_at)]
        self._run(self._group_puts("create", items))

    def _group_items(self, pool_id: str, capacities: Sequence[int], *,
                     expires_at: datetime | None = None) -> list[tuple[str, str, list[str]]]:
        return [(pool_id, group_id(i), self.store._group_fields(GroupCreate(
            id=group_id(i), url=group_url(pool_id, i), capacity=cap, expires_at=expires_at)))
            for i, cap in enumerate(capacities, start=1)]

    def set_counts(self, pool_id: str, gids: Sequence[str], count: int) -> None:
        """`group_put` in 'update' mode with field `count`: what a reset (0) or an import does, and
        with count == capacity, how a group becomes full."""
        self._run(self._group_puts("update", [(pool_id, g, ["count", str(count)]) for g in gids]))

    async def _group_puts(self, op: str, items: Sequence[tuple[str, str, list[str]]]) -> None:
        """`group_put` calls, BATCH per round trip: (pool id, group id, fields) each."""
        script = self.store._scripts["group_put"]
        for start in range(0, len(items), BATCH):
            async with self.r.pipeline(transaction=False) as pipe:
                for pool_id, gid, fields in items[start : start + BATCH]:
                    await script(keys=[keys.pool(pool_id)],
                                 args=[keys.prefix(pool_id), gid, op, "", *fields], client=pipe)
                replies = await pipe.execute()
            failed = [r for r in replies if not _ok(r)]
            if failed:
                raise RuntimeError(f"group_put {op}: {failed[:3]}")

    def set_strategy(self, pool_id: str, strategy: Strategy) -> None:
        self._run(self.store.update_pool(pool_id, PoolUpdate(strategy=strategy)))

    def counts(self, pool_id: str, gids: Sequence[str]) -> list[int]:
        async def go() -> list[int]:
            out: list[int] = []
            for start in range(0, len(gids), BATCH * 10):
                async with self.r.pipeline(transaction=False) as pipe:
                    for gid in gids[start : start + BATCH * 10]:
                        pipe.hget(keys.group(pool_id, gid), "c")
                    out += [int(c or 0) for c in await pipe.execute()]
            return out
        return self._run(go())

    def stats(self, pool_id: str) -> dict[str, int]:
        totals = self._run(self.store.statistics.totals(pool_id))
        return totals.model_dump(exclude={"by_channel"})

    def by_channel(self, pool_id: str) -> tuple[int, dict[str, int]]:
        """New allocations since the pool was made, and per channel, from one read of the
        totals: scans still finishing cannot fall between the two."""
        totals = self._run(self.store.statistics.totals(pool_id))
        return totals.new, dict(totals.by_channel)

    def allocated(self, pool_id: str, gids: Sequence[str]) -> tuple[int, int, int]:
        """(new allocations and fallbacks the stats count, the sum of `gids`' counts), read in
        one MULTI, so that scans still finishing cannot fall between the reads."""
        async def go() -> tuple[int, int, int]:
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.stats(pool_id))
                for gid in gids:
                    pipe.hget(keys.group(pool_id, gid), "c")
                stats, *counts = await pipe.execute()
            st = {k.decode(): int(v) for k, v in stats.items()}
            new = st.get("new", 0)
            return new, st.get("fallback", 0), sum(int(c or 0) for c in counts)
        return self._run(go())

    # visitors

    def scan(self, pool_id: str, visitors: Sequence[str]) -> dict[str, int]:
        """New visitors' scans of one pool, one call of the scan script each; outcomes
        counted."""
        return self.scans([(pool_id, vid, "", Call.NEW) for vid in visitors])

    def scans(self, calls: Sequence[tuple[str, str, str, Call]]) -> dict[str, int]:
        """The scan script called directly, pipelined, in order: (pool id, visitor id, channel,
        call kind) each, as the service sends them (Call.NEW for a visitor id just made,
        Call.KNOWN for one from a cookie); outcomes counted."""
        async def go() -> dict[str, int]:
            script = self.store._scripts["scan"]
            outcomes: dict[str, int] = {}
            for start in range(0, len(calls), BATCH):
                async with self.r.pipeline(transaction=False) as pipe:
                    for pool_id, vid, channel, call in calls[start : start + BATCH]:
                        await script(keys=[keys.pool(pool_id), keys.sticky(pool_id, vid)],
                                     args=[keys.prefix(pool_id), vid, channel, call.value],
                                     client=pipe)
                    for reply in await pipe.execute():
                        outcome = reply[0].decode()
                        outcomes[outcome] = outcomes.get(outcome, 0) + 1
            return outcomes
        return self._run(go())

    def drop_visitors(self, pool_id: str) -> int:
        """Delete a pool's sticky records, so that each run starts from the same state."""
        async def go() -> int:
            batch: list[Any] = []
            dropped = 0
            async for key in self.r.scan_iter(match=keys.sticky_pattern(pool_id), count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    dropped += await self.r.unlink(*batch)
                    batch = []
            if batch:
                dropped += await self.r.unlink(*batch)
            return dropped
        return self._run(go())


def seed_bench_pool(seeder: Seeder) -> None:
    """An empty Redis with pool `bench` (20 groups x 100,000) and the sticky scenario's visitor
    already placed: the state every scan_new run starts from."""
    seeder.flush()
    seeder.create_pool(BENCH_POOL, [100_000] * 20)
    seeder.scan(BENCH_POOL, [STICKY_VISITOR])


def seed_big_pool(seeder: Seeder, pool_id: str, *, groups: int, open_groups: int,
                  capacity: int, full_capacity: int = 200,
                  fill: bool = True) -> tuple[list[str], list[str]]:
    """`groups` groups of which all but `open_groups` are full, the open ones (of `capacity`)
    spread evenly through the order; the others (of `full_capacity`) made full by setting their
    count to their capacity (unless `fill` is false). Returns (open ids, full ids)."""
    step = groups // open_groups
    roomy = {k * step for k in range(open_groups)}
    gids = seeder.create_pool(
        pool_id, [capacity if i in roomy else full_capacity for i in range(groups)])
    open_ids = [gids[i] for i in sorted(roomy)]
    full_ids = [g for i, g in enumerate(gids) if i not in roomy]
    if fill:
        seeder.set_counts(pool_id, full_ids, full_capacity)
    return open_ids, full_ids
