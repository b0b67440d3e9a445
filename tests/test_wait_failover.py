"""A primary dies while its replica lags: without WAIT mode the scans it had acknowledged are
lost and their room is given again (over-allocation); with WAIT mode none is lost.

The replica follows the primary through a proxy that can hold back the replication stream, so
the lag is real (the data never reaches the replica); the service reaches Redis through a second
proxy that moves to the promoted replica, like a virtual IP on failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from app.embedded import RedisProcess
from app.schemas import Fallback
from tests.helpers import open_core, seed, until_a_replica_acknowledges
from tests.history import FALLBACK_URL, History, Report, drive, new_visitors
from tests.tcpproxy import Proxy
from tests.test_serve import serve

pytestmark = pytest.mark.slow

CAPACITIES = {"g1": 60, "g2": 60}
FAST_SYNC = ["--repl-diskless-sync-delay", "0"]


@contextmanager
def replicated_service(
    make_redis: Callable[..., RedisProcess], tmp_path: Path, *, wait: bool
) -> Iterator[tuple[RedisProcess, RedisProcess, Proxy, Proxy, str]]:
    primary = make_redis(appendonly=False, extra_args=FAST_SYNC)
    link = Proxy(primary.port)
    vip = Proxy(primary.port)
    try:
        replica = make_redis(appendonly=False,
                             extra_args=[*FAST_SYNC, "--replicaof", "127.0.0.1", str(link.port)])

        async def seeded() -> None:
            async with open_core(primary.url) as core:
                await seed(core.store, groups=[{"capacity": c} for c in CAPACITIES.values()],
                           fallback=Fallback(url=FALLBACK_URL))

        asyncio.run(seeded())
        with replica.client() as r:
            deadline = time.monotonic() + 10
            while not r.exists("lc:{pool-a}:g:g2"):
                assert time.monotonic() < deadline, "the replica did not sync"
                time.sleep(0.05)
        env = {"LIVECODE_REDIS_URL": f"redis://127.0.0.1:{vip.port}/0"}
        if wait:
            env |= {"LIVECODE_REDIS_WAIT_REPLICAS": "1", "LIVECODE_REDIS_WAIT_MS": "50"}
        with serve("--workers", "2", env=env, cwd=tmp_path) as base:
            yield primary, replica, link, vip, base
    finally:
        link.close()
        vip.close()


def wait_link_up(server: RedisProcess) -> None:
    with server.client() as r:
        deadline = time.monotonic() + 10
        while r.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)


def lagging_failover(make_redis: Callable[..., RedisProcess], tmp_path: Path,
                     *, wait: bool) -> tuple[History, Report]:
    with replicated_service(make_redis, tmp_path, wait=wait) as (primary, replica, link, vip,
                                                                   base):
        host, port = base.removeprefix("http://").split(":")
        history = History()
        visitors = new_visitors(400)

        async def run() -> None:
            link.holding = True  # the replica stops receiving: it lags from here on
            await drive(host, int(port), "/s/pool-a", visitors[:150], history, concurrency=8)
            primary.kill()
            link.drop()  # what the replica had not received is gone with the primary
            with replica.client() as r:
                r.execute_command("REPLICAOF", "NO", "ONE")
            vip.retarget(replica.port)
            # a new replica for the promoted primary (WAIT mode acknowledges nothing without one)
            spare = make_redis(appendonly=False,
                               extra_args=[*FAST_SYNC, "--replicaof", "127.0.0.1",
                                           str(replica.port)])
            await asyncio.to_thread(wait_link_up, spare)
            with replica.client() as r:
                await asyncio.to_thread(until_a_replica_acknowledges, r)
            # newcomers first: room lost with the primary goes to other people
            later = visitors[150:] + visitors[:150]
            await drive(host, int(port), "/s/pool-a", later, history, concurrency=8)

        asyncio.run(run())
        with redis.Redis(host="127.0.0.1", port=replica.port) as r:
            return history, history.analyze(r, "pool-a", CAPACITIES)


def test_without_wait_a_lagging_failover_over_allocates(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    """The documented failover bound in action: acknowledged scans lost, room given again."""
    history, report = lagging_failover(make_redis, tmp_path, wait=False)
    assert report.lost, history.outcomes()
    assert sum(report.over.values()) > 0  # more visitors acknowledged than a group holds
    assert sum(report.over.values()) <= len(report.lost)  # ... by at most the lost ones


def test_wait_mode_removes_the_over_allocation(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    history, report = lagging_failover(make_redis, tmp_path, wait=True)
    outcomes = history.outcomes()
    assert outcomes["failed"] > 0  # scans while the replica lagged were not acknowledged
    assert report.acked == sum(CAPACITIES.values())  # and the pool still filled exactly
    assert not report.violations(), report.violations()
