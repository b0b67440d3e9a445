"""What the lifespan opens: the Redis clients and what is built on them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

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
        client = admin_client(url, settings.redis_admin_connections)
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


def admin_client(url: str, max_connections: int) -> aredis.Redis:
    """redis-py for the admin API: a pool that waits for a free connection instead of failing
    past its size, and retries only on connection errors (a timed-out command may have run)."""
    pool = aredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError],
    )
    return aredis.Redis.from_pool(pool)


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
