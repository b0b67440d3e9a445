"""The scan as a function library (Redis 7+): loaded when a server lacks it, called with FCALL,
and still correct where it cannot be loaded or is turned off."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import redis
import redis.asyncio as aredis

from app.allocator import scripts
from app.allocator.engine import Allocator
from app.store import keys
from app.store.fastredis import PipelinedRedis
from tests.helpers import counts, open_core, seed, visitor


@pytest.fixture(autouse=True)
def _functions_only(sync_redis: redis.Redis) -> None:
    if int(str(sync_redis.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip("Redis 6 has no functions: the scan runs as a script there")


def _calls(sync: redis.Redis) -> dict[str, int]:
    stats = sync.info("commandstats")
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
            for c in ("fcall", "eval", "evalsha", "function|load")}


def _libraries(sync: redis.Redis) -> list[str]:
    """The names of the function libraries on the server (FUNCTION LIST, RESP2: flat pairs)."""
    out = []
    for entry in sync.function_list():
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        out.append(fields[b"library_name"].decode())
    return out


async def test_a_missing_function_is_loaded_once_then_called(
    redis_url: str, sync_redis: redis.Redis,
) -> None:
    """Start-up loaded the library; after a FUNCTION FLUSH (or a restart without
    persistence) the first scan finds none, runs as EVAL and has the library loaded again;
    every scan after it is one FCALL. The library is the release's own."""
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 50}])
        lib = scripts.library("scan")
        assert core.allocator.script.command == (b"FCALL", lib.function.encode())
        assert _libraries(sync_redis) == [lib.function]  # Allocator.preload
        sync_redis.function_flush()
        assert _libraries(sync_redis) == []
        sync_redis.config_resetstat()
        first = await core.allocator.scan("pool-a", visitor())
        assert first.outcome == "new"
        # the FCALL that found no function, the EVAL that ran the scan, the load
        assert _calls(sync_redis) == {"fcall": 1, "eval": 1, "evalsha": 0, "function|load": 1}
        assert _libraries(sync_redis) == [lib.function]
        sync_redis.config_resetstat()
        for _ in range(10):
            assert (await core.allocator.scan("pool-a", visitor())).outcome == "new"
        assert _calls(sync_redis) == {"fcall": 10, "eval": 0, "evalsha": 0, "function|load": 0}
        assert await counts(core.redis) == {"g1": 11}


async def test_scans_go_on_where_the_function_cannot_be_loaded(
    redis_url: str, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    """An ACL user may not FUNCTION LOAD: start-up's load only logs it, then each scan goes
    as EVAL after its FCALL is refused, exactly as many allocations as there is room, and the
    log says why."""
    sync_redis.acl_setuser("scanner", enabled=True, passwords=["+pw"], keys=["*"],
                           channels=["*"], commands=["+@all", "-function"])
    try:
        async with open_core(redis_url) as core:
            await seed(core.store, groups=[{"capacity": 30}])
            sync_redis.function_flush()  # what open_core's own user loaded
            url = redis_url.replace("redis://", "redis://scanner:pw@")
            fast, admin = PipelinedRedis.from_url(url), aredis.Redis.from_url(url)
            allocator = Allocator(fast, shebang=True, deadline_s=2.0)
            try:
                with caplog.at_level(logging.WARNING, logger="livecode.redis"):
                    await allocator.preload(admin)
                    assert "could not load the scan function at start-up" in caplog.text
                    got = Counter([(await allocator.scan("pool-a", visitor())).outcome
                                   for _ in range(40)])
            finally:
                await fast.close()
                await admin.aclose()
            assert got == {"new": 30, "fallback": 10}
            assert await counts(core.redis) == {"g1": 30}
            assert _libraries(sync_redis) == []
            assert "could not load the scan function, so each scan goes as EVAL" in caplog.text
    finally:
        sync_redis.acl_deluser("scanner")


async def test_the_function_can_be_turned_off(redis_url: str, sync_redis: redis.Redis) -> None:
    """LIVECODE_SCAN_FUNCTION=false (Allocator(function=False)): EVALSHA, no library."""
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 5}])
        sync_redis.function_flush()  # what open_core's allocator loaded
        allocator = Allocator(core.fast, shebang=True, deadline_s=2.0, function=False)
        await allocator.scan("pool-a", visitor())  # NOSCRIPT, then EVAL
        sync_redis.config_resetstat()
        for _ in range(6):
            await allocator.scan("pool-a", visitor())
        assert _calls(sync_redis) == {"fcall": 0, "eval": 0, "evalsha": 6, "function|load": 0}
        assert _libraries(sync_redis) == []
        assert await counts(core.redis) == {"g1": 5}


async def test_nothing_of_a_call_reaches_the_next(redis_url: str) -> None:
    """The library's functions live across calls; the state of a call does not. Scans of
    two pools in turn, one with channels, each visitor once: each pool's totals, hour bucket
    and visitors are its own scans', exactly."""
    async with open_core(redis_url) as core:
        await seed(core.store, "pool-a", groups=[{"capacity": 100}])
        await seed(core.store, "pool-b", groups=[{"capacity": 3}])
        for i in range(12):
            await core.allocator.scan("pool-a", visitor(), "door" if i % 2 else "")
            await core.allocator.scan("pool-b", visitor())
        for pool_id, totals, hour in (
            ("pool-a", {"new": 12, "c:door": 6}, {"g:g1:new": 12, "c:door:new": 6}),
            ("pool-b", {"new": 3, "fallback": 9}, {"g:g1:new": 3, "fallback": 9}),
        ):
            p = keys.prefix(pool_id)
            assert _ints(await core.redis.hgetall(p + "st")) == totals, pool_id
            [hour_key] = [k async for k in core.redis.scan_iter(match=p + "h:*")]
            assert _ints(await core.redis.hgetall(hour_key)) == hour, pool_id
            [day_key] = [k async for k in core.redis.scan_iter(match=p + "u:*")
                         if b":door" not in k]
            assert await core.redis.pfcount(day_key) == 12, pool_id
        assert await counts(core.redis, "pool-a") == {"g1": 12}
        assert await counts(core.redis, "pool-b") == {"g1": 3}


def _ints(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}
