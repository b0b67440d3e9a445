"""Redis failures seen through the scan endpoint: killed, frozen, script cache flushed.
Each test owns its redis-server; the service must fail closed with a 503 page within the
deadline, never a 500, and recover by itself."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager

from app.embedded import RedisProcess
from app.main import create_app
from app.settings import Settings
from tests.helpers import counts, flush_scripts_async, open_core, seed

DEADLINE_MS = 250
SLACK_S = 0.15


@asynccontextmanager
async def service(url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(redis_url=url, deadline_ms=DEADLINE_MS))
    async with LifespanManager(app) as manager:  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lc.test") as c:
            yield c


async def timed_get(
    client: httpx.AsyncClient, cookie: str | None = None
) -> tuple[httpx.Response, float]:
    headers = {"cookie": f"lc_vid={cookie}"} if cookie else {}
    t0 = time.perf_counter()
    r = await client.get("/s/pool-a", headers=headers)
    return r, time.perf_counter() - t0


def assert_unavailable(r: httpx.Response, elapsed: float) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "2"
    assert r.headers["cache-control"] == "no-store"
    assert "scan again" in r.text
    assert elapsed < DEADLINE_MS / 1000 + SLACK_S, elapsed


async def test_redis_killed_gives_503_then_recovers_by_itself(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=True)
    async with open_core(server.url) as core:
        await seed(core.store, groups=[{"capacity": 1000}])
    async with service(server.url) as client:
        ok, _ = await timed_get(client)
        assert ok.status_code == 302
        server.kill()
        for _ in range(5):
            r, elapsed = await timed_get(client)
            assert_unavailable(r, elapsed)
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200

        server.start()  # same port, same AOF
        back = time.perf_counter()
        while True:
            r, _ = await timed_get(client)
            if r.status_code == 302:
                break
            assert r.status_code == 503
            assert time.perf_counter() - back < 1.0, "did not recover within a second"
            await asyncio.sleep(0.02)
        assert (await client.get("/readyz")).status_code == 200
    async with open_core(server.url) as core:
        # the scan before the kill survived in the AOF, and the visitor (same cookie) who came
        # back after the outage was recognised: still one
        assert await counts(core.redis) == {"g1": 1}


async def test_frozen_redis_answers_within_deadline_and_never_double_counts(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=False)
    async with open_core(server.url) as core:
        await seed(core.store, groups=[{"capacity": 10_000}])
    async with service(server.url) as client:
        server.pause()
        try:
            results = await asyncio.gather(*(timed_get(client) for _ in range(50)))
        finally:
            await asyncio.sleep(1.0)
            server.resume()
        visitors = []
        for r, elapsed in results:
            assert_unavailable(r, elapsed)
            visitors.append(r.cookies["lc_vid"])  # the cookie goes out with the 503
        assert len(set(visitors)) == 50
        # every visitor retries with its cookie until it gets in: each counts exactly once,
        # whether or not its frozen call ran when Redis woke up
        for _ in range(3):
            retries = await asyncio.gather(*(timed_get(client, v) for v in visitors))
            assert all(r.status_code in (302, 503) for r, _ in retries)
            if all(r.status_code == 302 for r, _ in retries):
                break
            await asyncio.sleep(0.5)
        assert all(r.status_code == 302 for r, _ in retries)
    async with open_core(server.url) as core:
        assert await counts(core.redis) == {"g1": len(set(visitors))}


async def test_script_flush_under_http_load_is_invisible(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=False)
    async with open_core(server.url) as core:
        await seed(core.store, groups=[{"capacity": 200}, {"capacity": 200}])
        async with service(server.url) as client:

            async def flusher() -> None:
                for _ in range(5):
                    await asyncio.sleep(0.02)
                    await flush_scripts_async(core.redis)

            results, _ = await asyncio.gather(
                asyncio.gather(*(client.get("/s/pool-a") for _ in range(600))), flusher()
            )
        statuses = Counter(r.status_code for r in results)
        assert statuses == {302: 400, 200: 200}  # 200: the fallback page
        assert await counts(core.redis) == {"g1": 200, "g2": 200}
