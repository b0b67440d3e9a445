"""Fixtures: every test talks to a real redis-server that the fixtures start on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.embedded import RedisProcess, free_port
from tests.api_helpers import Api, open_api
from tests.helpers import Core, open_core


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(
        tmp_path_factory.mktemp("redis"), port=free_port(), appendonly=False
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    """The shared server, emptied (data and script cache) before each test."""
    with redis_server.client() as c:
        c.flushall()
        c.script_flush()
    yield redis_server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """Dedicated servers for tests that stop, freeze or kill Redis."""
    started: list[RedisProcess] = []

    def make(**kwargs: object) -> RedisProcess:
        port = kwargs.pop("port", None) or free_port()
        server = RedisProcess(tmp_path / f"redis-{port}", port=int(port), **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.resume()
        server.kill()


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    """The admin API app in process on the shared server (tests/test_api_*.py)."""
    async for a in open_api(redis_url):
        yield a


@pytest.fixture
async def core(redis_url: str) -> AsyncIterator[Core]:
    """The store, the scan path's client and the allocator on the shared server."""
    async with open_core(redis_url) as c:
        yield c
