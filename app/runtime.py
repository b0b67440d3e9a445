"""What the lifespan opens: the Redis clients and what is built on them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from app.allocator import scripts
from app.allocator.engine import Allocator
from app.pool_metrics import PoolMetrics
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from app.store.fastredis import PipelinedRedis, ScanClient
from app.store.pools import AnyRedis, PoolStore, server_version
from app.store.topology import ClusterScanClient, SentinelScanClient

log = logging.getLogger("livecode")


@dataclass
class Runtime:
    settings: Settings
    redis: AnyRedis  # redis-py, for everything but the scan path
    fast: ScanClient  # the scan path: our pipelined client, routed on Cluster and Sentinel
    store: PoolStore
    allocator: Allocator
    apikeys: ApiKeyStore
    pool_metrics: PoolMetrics

    @classmethod
    async def open(cls, settings: Settings, *, startup_timeout: float = 15.0) -> Runtime:
        client, fast = await connect(settings, startup_timeout)
        version = await _server_version(client, startup_timeout)
        shebang = scripts.supports_shebang(version)
        store = PoolStore(client, shebang=shebang, settings=settings)
        try:
            await store.migrate()
        except (aredis.RedisError, RedisClusterException, OSError) as exc:  # the next start will
            log.warning("could not bring older pools up to date: %r", exc)
        allocator = Allocator(
            fast,
            shebang=shebang,
            deadline_s=settings.deadline_s,
            rate_limit=settings.scan_rate_limit_per_min,
            function=shebang and settings.scan_function,
        )
        await allocator.preload(client)
        return cls(
            settings=settings,
            redis=client,
            fast=fast,
            store=store,
            allocator=allocator,
            apikeys=ApiKeyStore(client),
            pool_metrics=PoolMetrics(store, settings.metrics_cache_s),
        )

    async def close(self) -> None:
        await self.fast.close()
        await self.redis.aclose()


async def connect(settings: Settings, wait_s: float = 15.0) -> tuple[AnyRedis, ScanClient]:
    """The admin client (redis-py) and the scan path's client, for one server, a Cluster
    (LIVECODE_REDIS_CLUSTER, the URL names a node) or Sentinel (LIVECODE_REDIS_SENTINELS)."""
    url = settings.redis_url
    sentinels = [s.strip() for s in settings.redis_sentinels.split(",") if s.strip()]
    if not url and not sentinels:
        raise RuntimeError("LIVECODE_REDIS_URL is not set (`livecode serve` sets it)")
    options = _url_options(url)
    connect_s = min(2.0, settings.admin_timeout_s)

    def node_client(host: str, port: int) -> PipelinedRedis:
        return PipelinedRedis(
            host=host, port=port, max_inflight=settings.redis_max_inflight,
            wait_replicas=settings.redis_wait_replicas, wait_ms=settings.redis_wait_ms,
            **options,
        )

    if sentinels:
        sentinel = Sentinel(
            [_hostport(s) for s in sentinels], socket_timeout=1,
            sentinel_kwargs={"socket_timeout": 1},
        )
        admin = sentinel.master_for(settings.redis_sentinel_master,
                                    socket_timeout=settings.admin_timeout_s,
                                    socket_connect_timeout=connect_s, **options)
        return admin, SentinelScanClient(sentinel, settings.redis_sentinel_master, node_client)
    assert url is not None
    if settings.redis_cluster:
        cluster = RedisCluster.from_url(url, socket_timeout=settings.admin_timeout_s,
                                        socket_connect_timeout=connect_s)
        await _retry_until(cluster.initialize, wait_s)
        return cluster, ClusterScanClient(cluster, node_client)
    fast = PipelinedRedis.from_url(
        url, max_inflight=settings.redis_max_inflight,
        wait_replicas=settings.redis_wait_replicas, wait_ms=settings.redis_wait_ms,
    )
    return admin_client(url, settings.redis_admin_connections, settings.admin_timeout_s), fast


def admin_client(url: str, max_connections: int, timeout_s: float = 3.0) -> aredis.Redis:
    """redis-py for the admin API: a pool that waits (at most `timeout_s`) for a free connection
    instead of failing past its size, and retries only on connection errors: a timed-out
    command may have run, and retrying it would multiply the wait (Retry's default list holds
    TimeoutError too, hence `supported_errors`). The request as a whole is bounded by
    app/deadline.py."""
    pool = aredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(2.0, timeout_s),
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2,
                    supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
    return aredis.Redis.from_pool(pool)


async def _retry_until(action: Callable[[], Awaitable[Any]], wait_s: float) -> Any:
    """Wait for Redis at start-up: a clear error beats a service that can only answer 503."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await action()
        except (aredis.RedisError, OSError, RedisClusterException) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not answer within {wait_s:.0f} s: {exc}") from exc
            await asyncio.sleep(0.2)


async def _server_version(client: AnyRedis, wait_s: float) -> str:
    return str(await _retry_until(lambda: server_version(client), wait_s))


def _hostport(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def _url_options(url: str | None) -> dict[str, Any]:
    """Password and user name of the URL, for the clients built per node."""
    if not url:
        return {}
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    if parts.password is not None:
        options["password"] = unquote(parts.password)
    if parts.username:
        options["username"] = unquote(parts.username)
    return options
