"""The scan path past one Redis server: Redis Cluster and Redis Sentinel.

Where a key lives comes from redis-py (its cluster slot map, or the sentinels' answer for the
current primary); the scripts themselves go through our pipelined client, one per primary, so
the scan path keeps its speed and its WAIT mode runs on the node that ran the script. Any sign
that the topology moved (a refused connection, MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY) is
answered 503 for that scan and triggers one background refresh; the next scans go to the new
owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from app.store.fastredis import (
    Arg,
    PipelinedRedis,
    RedisUnavailable,
    Script,
    TopologyChanged,
)

log = logging.getLogger("livecode.topology")

REFRESH_EVERY_S = 0.2

ClientFactory = Callable[[str, int], PipelinedRedis]


class _Refresher:
    """At most one topology refresh at a time, at most one every REFRESH_EVERY_S."""

    def __init__(self, refresh: Callable[[], Any]) -> None:
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0

    def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        if (self._task is not None and not self._task.done()) or (
            loop.time() - self._last < REFRESH_EVERY_S
        ):
            return
        self._last = loop.time()
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:  # the next failing scan tries again
            log.warning("topology refresh failed: %r", exc)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def _call(client: PipelinedRedis, refresh: _Refresher, script: Script,
                keys: Sequence[bytes | str], args: Sequence[Arg], timeout: float) -> Any:  # noqa: ASYNC109
    try:
        return await client.evalsha(script, keys, args, timeout=timeout)
    except TopologyChanged as exc:
        refresh()
        raise RedisUnavailable(f"topology changed: {exc}") from exc
    except RedisUnavailable:
        refresh()
        raise


class ClusterScanClient:
    """Routes each script by its first key's slot, through redis-py's cluster slot map."""

    def __init__(self, cluster: RedisCluster, make: ClientFactory) -> None:
        self.cluster = cluster
        self.make = make
        self.clients: dict[tuple[str, int], PipelinedRedis] = {}
        self.refresh = _Refresher(self.cluster.nodes_manager.initialize)

    async def evalsha(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                      *, timeout: float) -> Any:  # noqa: ASYNC109
        key = keys[0]
        node = self.cluster.get_node_from_key(key.decode() if isinstance(key, bytes) else key)
        if node is None:
            self.refresh()
            raise RedisUnavailable("no node serves this slot right now")
        addr = (node.host, int(node.port))
        client = self.clients.get(addr)
        if client is None:
            client = self.clients[addr] = self.make(*addr)
        return await _call(client, self.refresh, script, keys, args, timeout)

    def pipelined(self) -> None:
        """Each script is routed by its key: no packed or gathered calls."""
        return None

    async def close(self) -> None:
        await self.refresh.close()
        for client in self.clients.values():
            await client.close()


class SentinelScanClient:
    """Follows the primary the sentinels name; asks them again when it stops answering."""

    def __init__(self, sentinel: Sentinel, service: str, make: ClientFactory) -> None:
        self.sentinel = sentinel
        self.service = service
        self.make = make
        self.addr: tuple[str, int] | None = None
        self.client: PipelinedRedis | None = None
        self.refresh = _Refresher(self.discover)

    async def discover(self) -> None:
        host, port = await self.sentinel.discover_master(self.service)
        addr = (str(host), int(port))
        if addr != self.addr:
            log.warning("redis primary for %s is now %s:%s", self.service, *addr)
            old, self.addr, self.client = self.client, addr, self.make(*addr)
            if old is not None:
                await old.close()

    async def evalsha(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                      *, timeout: float) -> Any:  # noqa: ASYNC109
        if self.client is None:
            try:
                async with asyncio.timeout(timeout):
                    await self.discover()
            except Exception as exc:
                raise RedisUnavailable(f"no primary from the sentinels: {exc!r}") from exc
        assert self.client is not None
        return await _call(self.client, self.refresh, script, keys, args, timeout)

    def pipelined(self) -> None:
        """The primary may change under a call: no packed or gathered calls."""
        return None

    async def close(self) -> None:
        await self.refresh.close()
        if self.client is not None:
            await self.client.close()
