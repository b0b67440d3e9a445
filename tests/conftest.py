"""Fixtures: every test talks to a real redis-server that the fixtures start on a free port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis
from click.testing import CliRunner

from app.embedded import RedisProcess, free_port
from tests.api_helpers import Api, open_api
from tests.helpers import (
    SCAN_CLIENTS,
    Core,
    flush_scripts,
    open_scan_core,
    start_primary_and_replica,
)
from tests.topology import Cluster, redis_cluster
from tests.webhook_receiver import Receiver, receiving


def pytest_configure(config: pytest.Config) -> None:
    # The scheduler and event dispatcher run in the background of every app: tests that take
    # "nothing changed" snapshots around a request would see them move the event feed. The
    # tests of the scheduler turn it on (scheduler=True, or LIVECODE_SCHEDULER=true).
    os.environ.setdefault("LIVECODE_SCHEDULER", "false")


@pytest.fixture
def cli(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """The `livecode` commands against the test's Redis, from an empty folder, with the
    environment of nothing but that (and a public URL for posters)."""
    for name in list(os.environ):
        if name.startswith("LIVECODE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LIVECODE_REDIS_URL", redis_url)
    monkeypatch.setenv("LIVECODE_PUBLIC_URL", "https://lc.example")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


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
        flush_scripts(c)
    yield redis_server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """redis-py's asyncio client on the test's server (a test file may define its own `client`)."""
    c = aredis.Redis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
def rx() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 for webhooks."""
    with receiving() as r:
        yield r


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


# --- the scan path's clients -------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that uses `core` and is marked every_scan_client (or is in a module that is) runs
    once per scan client (SCAN_CLIENTS), unless it is marked plain_client_only."""
    if "scan_backend" not in metafunc.fixturenames:
        return
    test = metafunc.definition
    if test.get_closest_marker("every_scan_client") and not test.get_closest_marker(
        "plain_client_only"
    ):
        metafunc.parametrize("scan_backend", SCAN_CLIENTS, indirect=True)


@pytest.fixture(scope="session")
def replicated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A primary with one real replica, for WAIT mode: one pair for the session."""
    started: list[RedisProcess] = []

    def make(**kwargs: object) -> RedisProcess:
        server = RedisProcess(tmp_path_factory.mktemp("replicated"), port=free_port(), **kwargs)  # type: ignore[arg-type]
        started.append(server)
        server.start()
        return server

    try:
        primary, _ = start_primary_and_replica(make)
        yield primary
    finally:
        for server in started:
            server.kill()


@pytest.fixture(scope="session")
def scan_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A local Redis Cluster of 3 primaries (no replicas: the allocator suite needs the slots
    spread and the routing, not failover): one for the session."""
    with redis_cluster(tmp_path_factory.mktemp("cluster"), replicas_per_primary=0) as cluster:
        yield cluster


@pytest.fixture
def scan_backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of an emptied server (data and script cache) for the scan client `kind`:
    "plain" unless the test is parametrized over SCAN_CLIENTS (see pytest_generate_tests)."""
    kind: str = getattr(request, "param", "plain")
    if kind == "plain":
        return kind, request.getfixturevalue("redis_url")
    if kind == "wait":
        primary: RedisProcess = request.getfixturevalue("replicated_server")
        with primary.client() as c:
            c.flushall()
            flush_scripts(c)
        return kind, primary.url
    assert kind == "cluster", kind
    cluster: Cluster = request.getfixturevalue("scan_cluster")
    for node in cluster.nodes:  # every node is a primary
        node.call("FLUSHALL")
        node.call("SCRIPT", "FLUSH")
        try:
            node.call("FUNCTION", "FLUSH")
        except redis.ResponseError as exc:  # Redis 6: no functions, the scan is a script
            if "unknown command" not in str(exc):
                raise
    return kind, cluster.url


@pytest.fixture
async def core(scan_backend: tuple[str, str]) -> AsyncIterator[Core]:
    """The store, the scan path's client and the allocator on an emptied server: the plain
    client, or each of SCAN_CLIENTS in turn for tests marked every_scan_client."""
    async with open_scan_core(*scan_backend) as c:
        yield c
