"""Faults under load, judged by the history checker (tests/history.py): `livecode serve` with
two workers against a redis-server the test owns, real HTTP scans on loopback, bounded in
count and time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis

from app.embedded import RedisProcess
from app.schemas import Fallback
from tests.helpers import flush_scripts, open_core, seed
from tests.history import FALLBACK_URL, History, drive, new_visitors, schedule
from tests.test_serve import serve

pytestmark = pytest.mark.slow

CAPACITIES = {"g1": 150, "g2": 150, "g3": 150}
DEADLINE_S = 0.25


async def seeded(server: RedisProcess) -> None:
    async with open_core(server.url) as core:
        await seed(core.store, groups=[{"capacity": c} for c in CAPACITIES.values()],
                   fallback=Fallback(url=FALLBACK_URL))


def hostport(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def env(server: RedisProcess) -> dict[str, str]:
    return {"LIVECODE_REDIS_URL": server.url, "LIVECODE_DEADLINE_MS": str(int(DEADLINE_S * 1000))}


@asynccontextmanager
async def under_load(server: RedisProcess, tmp_path: Path, history: History,
                     seconds: float = 4.0) -> AsyncIterator[str]:
    """serve with two workers on a seeded pool, and 16 clients scanning it for `seconds`
    (recorded in `history`) while the block injects its fault; leaves when the load is done."""
    await seeded(server)
    with serve("--workers", "2", env=env(server), cwd=tmp_path) as base:
        load = asyncio.create_task(drive(*hostport(base), "/s/pool-a",
                                         schedule(new_visitors(500)), history,
                                         concurrency=16, pace=0.02, duration=seconds))
        yield base
        await load


def healthy_after(history: History, moment: float) -> bool:
    """Every scan answered from a second after `moment` on was a success, and there were some."""
    late = [e for e in history.events if e.at > moment + 1.0]
    return bool(late) and all(e.outcome in ("ok", "fallback") for e in late)


def check(history: History, server: RedisProcess) -> dict[str, int]:
    with redis.Redis.from_url(server.url) as r:
        return history.check(r, "pool-a", CAPACITIES)


async def test_kill_9_of_redis_mid_load_then_restart_from_aof(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    server = make_redis(appendonly=True)
    history = History()
    async with under_load(server, tmp_path, history):
        await asyncio.sleep(0.6)
        server.kill()
        await asyncio.sleep(1.0)
        server.start()
        back = time.monotonic()
    outcomes = history.outcomes()
    assert outcomes["failed"] > 0, outcomes  # the outage was seen: clean 503s
    first_ok = min(e.at for e in history.events if e.outcome == "ok" and e.at > back)
    assert first_ok - back < 1.0, "did not recover within a second of Redis returning"
    assert healthy_after(history, back)
    counts = check(history, server)
    assert sum(counts.values()) > 0


async def test_frozen_redis_every_scan_answers_within_the_deadline(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    server = make_redis(appendonly=False)
    history = History()
    async with under_load(server, tmp_path, history):
        await asyncio.sleep(0.5)
        server.pause()
        frozen = time.monotonic()
        await asyncio.sleep(2.0)
        server.resume()
        thawed = time.monotonic()
    during = [e for e in history.events if frozen + 0.05 < e.at - e.latency and e.at < thawed]
    assert during, "no scan was sent while Redis was frozen"
    assert all(e.outcome == "failed" for e in during), history.outcomes()
    worst = max(e.latency for e in during)
    assert worst < DEADLINE_S + 0.25, f"a scan took {worst:.3f} s while Redis was frozen"
    assert healthy_after(history, thawed), "a worker hangs"
    check(history, server)  # nothing allocated twice after SIGCONT


async def test_script_flush_and_redis_restart_under_load(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    server = make_redis(appendonly=True)
    history = History()
    async with under_load(server, tmp_path, history):
        for _ in range(3):
            await asyncio.sleep(0.2)
            with server.client() as r:
                flush_scripts(r)
        flushed = time.monotonic()
        server.stop()  # graceful: AOF flushed
        server.start()
        back = time.monotonic()
    assert all(e.outcome in ("ok", "fallback") for e in history.events if e.at < flushed), (
        "a SCRIPT FLUSH was visible"
    )
    assert healthy_after(history, back)
    check(history, server)


async def test_timeout_after_the_script_ran_then_retry_counts_once(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    server = make_redis(appendonly=False)
    await seeded(server)
    history = History()
    visitor = new_visitors(1)
    busy = "local t0 = redis.call('TIME') while true do local t = redis.call('TIME') " \
           "if (t[1] - t0[1]) * 1e6 + (t[2] - t0[2]) > 600000 then return 1 end end"
    with serve(env=env(server), cwd=tmp_path) as base:
        host, port = hostport(base)
        with server.client() as r:
            blocker = asyncio.get_running_loop().run_in_executor(None, r.eval, busy, 0)
            await asyncio.sleep(0.05)  # Redis is now busy for 0.6 s
            await drive(host, port, "/s/pool-a", visitor, history, concurrency=1)
            await blocker
        assert [e.outcome for e in history.events] == ["failed"]  # the app gave up at 250 ms
        with server.client() as r:  # ... but the script ran once Redis was free
            assert int(r.hget("lc:{pool-a}:g:g1", "c") or 0) == 1
        await drive(host, port, "/s/pool-a", visitor * 3, history, concurrency=1)
    assert [e.outcome for e in history.events] == ["failed", "ok", "ok", "ok"]
    assert check(history, server) == {"g1": 1, "g2": 0, "g3": 0}


async def test_kill_9_of_one_app_worker_under_load(
    make_redis: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    server = make_redis(appendonly=False)
    history = History()
    async with under_load(server, tmp_path, history) as base:
        await asyncio.sleep(0.7)
        victim = _workers_of(hostport(base)[1])[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
    late = [e for e in history.events if e.at > killed + 0.5]
    assert late and all(e.outcome in ("ok", "fallback") for e in late), history.outcomes()
    check(history, server)


def _workers_of(port: int) -> list[int]:
    parent = subprocess.run(["pgrep", "-f", f"app.cli serve --port {port}"],
                            capture_output=True, text=True).stdout.split()
    assert parent, "serve process not found"
    children = subprocess.run(["pgrep", "-P", parent[0]], capture_output=True,
                              text=True).stdout.split()
    workers = [int(pid) for pid in children
               if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
               and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2, workers
    return workers
