"""What the lifespan opens: the Redis clients and what is built on them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aredis

from app.allocator import scripts
from app.allocator.engine import Allocator
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from app.store.fastredis import PipelinedRedis
from app.store.pools import PoolStore


@dataclass
class Runtime:
    settings: Settings
    redis: aredis.Redis  # redis-py, for everything but the scan path
    fast: PipelinedRedis  # the scan path's auto-pipelining client
    store: PoolStore
    allocator: Allocator
    apikeys: ApiKeyStore

    @classmethod
    async def open(cls, settings: Settings, *, startup_timeout: float = 15.0) -> Runtime:
        url = settings.redis_url
        if not url:
            raise RuntimeError("LIVECODE_REDIS_URL is not set (`livecode serve` sets it)")
        client = aredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        version = await _server_version(client, startup_timeout)
        shebang = scripts.supports_shebang(version)
        fast = PipelinedRedis.from_url(url, max_inflight=settings.redis_max_inflight)
        return cls(
            settings=settings,
            redis=client,
            fast=fast,
            store=PoolStore(client, shebang=shebang, urls=settings.url_policy),
            allocator=Allocator(
                fast,
                shebang=shebang,
                deadline_s=settings.deadline_s,
                rate_limit=settings.scan_rate_limit_per_min,
            ),
            apikeys=ApiKeyStore(client),
        )

    async def close(self) -> None:
        await self.fast.close()
        await self.redis.aclose()


async def _server_version(client: aredis.Redis, wait_s: float) -> str:
    """Wait for Redis at start-up: a clear error beats a service that can only answer 503."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            info = await client.info("server")
            return str(info["redis_version"])
        except (aredis.RedisError, OSError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not answer within {wait_s:.0f} s: {exc}") from exc
            await asyncio.sleep(0.2)
