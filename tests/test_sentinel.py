"""The service behind Redis Sentinel follows a failover (the over-allocation bound and WAIT
mode are proven in test_wait_failover.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from app.schemas import Fallback
from tests.helpers import open_core, seed
from tests.history import FALLBACK_URL, History, Report, drive, new_visitors, schedule
from tests.test_serve import serve
from tests.topology import Node, Sentinel, redis_sentinel

pytestmark = pytest.mark.slow

CAPACITIES = {"g1": 60, "g2": 60}


@contextmanager
def sentinel_service(tmp_path: Path, *, wait: bool = False) -> Iterator[tuple[Sentinel, str]]:
    with redis_sentinel(tmp_path / "redis", master_name="livecode") as topology:
        env = {"LIVECODE_REDIS_SENTINELS": ",".join(topology.sentinels),
               "LIVECODE_REDIS_SENTINEL_MASTER": "livecode"}
        if wait:
            env |= {"LIVECODE_REDIS_WAIT_REPLICAS": "1", "LIVECODE_REDIS_WAIT_MS": "50"}
        primary = topology.primary()
        url = f"redis://127.0.0.1:{primary.port}/0"

        async def seeded() -> None:
            async with open_core(url) as core:
                await seed(core.store, groups=[{"capacity": c} for c in CAPACITIES.values()],
                           fallback=Fallback(url=FALLBACK_URL))
                await core.redis.execute_command("WAIT", 1, 2000)

        asyncio.run(seeded())
        with serve("--workers", "2", env=env, cwd=tmp_path) as base:
            yield topology, base


def hostport(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def analyze(history: History, node: Node) -> Report:
    with redis.Redis(host="127.0.0.1", port=node.port) as r:
        return history.analyze(r, "pool-a", CAPACITIES)


def test_sentinel_failover_is_followed(tmp_path: Path) -> None:
    with sentinel_service(tmp_path) as (topology, base):
        history = History()

        async def run() -> float:
            load = asyncio.create_task(drive(*hostport(base), "/s/pool-a",
                                             schedule(new_visitors(300)), history,
                                             concurrency=8, pace=0.02, duration=8.0))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(topology.failover_kill)
            switched = time.monotonic()
            await load
            return switched

        switched = asyncio.run(run())
        report = analyze(history, topology.primary())
    assert history.outcomes()["failed"] > 0
    late = [e for e in history.events if e.at > switched + 1.5]
    assert late and all(e.outcome in ("ok", "fallback") for e in late), "did not follow"
    assert not report.errors and not report.below and not report.above_capacity
    assert sum(report.over.values()) <= len(report.lost)
