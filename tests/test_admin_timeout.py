"""The admin API and the console while Redis is frozen (SIGSTOP): every request answers 503
within LIVECODE_ADMIN_TIMEOUT_MS (JSON error shape with Retry-After for the API, an HTML page
for the console), and everything works again once Redis is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aredis
from asgi_lifespan import LifespanManager

from app.console.sessions import SessionStore
from app.embedded import RedisProcess
from app.main import create_app
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from tests.api_helpers import assert_error
from tests.tcpproxy import Proxy

TIMEOUT_MS = 1000
SLACK_S = 0.6  # a loaded 2-core machine; Redis itself is not answering at all


@dataclass
class Admin:
    http: httpx.AsyncClient
    key: str
    console_cookie: str


@asynccontextmanager
async def service(url: str, **settings: Any) -> AsyncIterator[Admin]:
    client = aredis.Redis.from_url(url)
    try:
        public, key = await ApiKeyStore(client).create("admin", "t")
        token = await SessionStore(client, idle_s=600, max_s=3600).open(public)
    finally:
        await client.aclose()
    app = create_app(Settings(redis_url=url, public_url="http://lc.test", **settings))
    async with LifespanManager(app) as manager:  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lc.test") as http:
            yield Admin(http, key, token)


def requests(admin: Admin) -> dict[str, tuple[str, str, dict[str, Any]]]:
    auth = {"authorization": f"Bearer {admin.key}"}
    cookie = {"cookie": f"lc_console={admin.console_cookie}"}
    group = {"url": "https://t.me/+frozen", "capacity": 5}
    return {
        "list pools": ("GET", "/api/v1/pools", {"headers": auth}),
        "create pool": ("POST", "/api/v1/pools", {"headers": auth, "json": {"id": "new-pool"}}),
        "add groups": ("POST", "/api/v1/pools/pool-a/groups", {"headers": auth,
                                                               "json": [group]}),
        "key check": ("GET", "/api/v1/pools/pool-a", {"headers": {
            "authorization": "Bearer lc_0123abcd_" + "x" * 43}}),
        "console": ("GET", "/console", {"headers": cookie}),
        "console pool": ("GET", "/console/pools/pool-a", {"headers": cookie}),
    }


async def timed(http: httpx.AsyncClient, method: str, path: str,
                **kwargs: Any) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    # the outer bound only keeps a failing run short; the assertion is on `elapsed`
    r = await asyncio.wait_for(http.request(method, path, **kwargs), 15)
    return r, time.perf_counter() - t0


async def test_admin_requests_answer_503_within_the_bound_while_redis_is_frozen(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=False)
    async with service(server.url, admin_timeout_ms=TIMEOUT_MS) as admin:
        auth = {"authorization": f"Bearer {admin.key}"}
        r = await admin.http.post("/api/v1/pools", json={"id": "pool-a"}, headers=auth)
        assert r.status_code == 201, r.text
        calls = requests(admin)
        server.pause()
        try:
            # all at once: each must be bounded on its own, not by waiting in line
            results = await asyncio.gather(*(timed(admin.http, m, p, **kw)
                                             for m, p, kw in calls.values()))
        finally:
            server.resume()
        for name, (r, elapsed) in zip(calls, results, strict=True):
            assert elapsed < TIMEOUT_MS / 1000 + SLACK_S, (name, elapsed)
            assert r.headers.get("retry-after") == "2", (name, r.headers)
            if name.startswith("console"):
                assert r.status_code == 503, (name, r.status_code, r.text[:300])
                assert r.headers["content-type"].startswith("text/html"), name
                assert "Content-Security-Policy" in r.headers, name
            else:
                assert_error(r, 503, "store_unavailable")

        # Redis is back: the same requests work again
        for name, (method, path, kwargs) in calls.items():
            r, _ = await timed(admin.http, method, path, **kwargs)
            expected = {"create pool": 201, "add groups": 201, "key check": 401}.get(name, 200)
            assert r.status_code == expected, (name, r.status_code, r.text[:300])


async def test_the_default_bound_is_a_few_seconds(
    make_redis: Callable[..., RedisProcess],
) -> None:
    assert Settings().admin_timeout_ms == 3000  # type: ignore[attr-defined]
    server = make_redis(appendonly=False)
    async with service(server.url) as admin:
        auth = {"authorization": f"Bearer {admin.key}"}
        server.pause()
        try:
            r, elapsed = await timed(admin.http, "GET", "/api/v1/pools", headers=auth)
        finally:
            server.resume()
        assert_error(r, 503, "store_unavailable")
        assert elapsed < 3 + SLACK_S, elapsed
        assert (await admin.http.get("/api/v1/pools", headers=auth)).status_code == 200


async def test_a_slow_client_upload_does_not_count_against_the_bound(
    make_redis: Callable[..., RedisProcess],
) -> None:
    """The bound is on the store's work: a request body that trickles in for longer than the
    bound is still served (waiting on the client is not waiting on Redis)."""
    server = make_redis(appendonly=False)
    async with service(server.url, admin_timeout_ms=TIMEOUT_MS) as admin:
        auth = {"authorization": f"Bearer {admin.key}"}
        await admin.http.post("/api/v1/pools", json={"id": "pool-a"}, headers=auth)
        body = b'[{"url": "https://t.me/+slow", "capacity": 5}]'

        async def trickle() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 8):
                await asyncio.sleep(0.25)
                yield body[i : i + 8]

        r = await admin.http.post("/api/v1/pools/pool-a/groups", content=trickle(),
                                  headers={**auth, "content-type": "application/json"})
        assert r.status_code == 201, r.text


async def test_the_whole_request_is_bounded_not_only_each_redis_call(
    make_redis: Callable[..., RedisProcess],
) -> None:
    """Redis that answers every command, but each only after 0.3 s (a slow link): no socket
    timeout fires, yet a request of several commands must still answer 503 within the bound."""
    server = make_redis(appendonly=False)
    proxy = Proxy(server.port)
    try:
        async with service(f"redis://127.0.0.1:{proxy.port}/0",
                           admin_timeout_ms=TIMEOUT_MS) as admin:
            auth = {"authorization": f"Bearer {admin.key}"}
            assert (await admin.http.post("/api/v1/pools", json={"id": "pool-a"},
                                          headers=auth)).status_code == 201
            proxy.delay_s = 0.3
            r, elapsed = await timed(admin.http, "GET", "/api/v1/pools/pool-a", headers=auth)
            assert_error(r, 503, "store_unavailable")
            assert r.json()["error"]["details"] == {"timeout_ms": TIMEOUT_MS}
            assert elapsed < TIMEOUT_MS / 1000 + SLACK_S, elapsed
            proxy.delay_s = 0
            r = await admin.http.get("/api/v1/pools/pool-a", headers=auth)
            assert r.status_code == 200, r.text
    finally:
        proxy.close()


async def test_a_pool_delete_cut_off_by_the_bound_still_finishes(
    make_redis: Callable[..., RedisProcess],
) -> None:
    """Deleting a pool takes several round trips after its hash is gone (groups, indexes, a
    scan for sticky records): a request answered 503 by the bound must not leave them behind."""
    server = make_redis(appendonly=False)
    proxy = Proxy(server.port)
    try:
        async with service(f"redis://127.0.0.1:{proxy.port}/0",
                           admin_timeout_ms=TIMEOUT_MS) as admin:
            auth = {"authorization": f"Bearer {admin.key}"}
            assert (await admin.http.post("/api/v1/pools", json={"id": "pool-a"},
                                          headers=auth)).status_code == 201
            groups = [{"url": f"https://t.me/+g{i}"} for i in range(3)]
            assert (await admin.http.post("/api/v1/pools/pool-a/groups", json=groups,
                                          headers=auth)).status_code == 201
            # the delete script is loaded, and the key's last use stamped, before the link slows
            await admin.http.post("/api/v1/pools", json={"id": "pool-b"}, headers=auth)
            r = await admin.http.delete("/api/v1/pools/pool-b", headers=auth)
            assert r.status_code == 204
            with server.client() as c:
                c.mset({f"lc:{{pool-a}}:v:{i:022d}": "1" for i in range(50)})
                assert len(c.keys("lc:{pool-a}:*")) > 50
            # the key check and the delete script take 2 round trips (0.5 s), what follows
            # (the groups, the sticky records, the index) 6 more: the bound cuts in there
            proxy.delay_s = 0.25
            r, _ = await timed(admin.http, "DELETE", "/api/v1/pools/pool-a", headers=auth)
            assert_error(r, 503, "store_unavailable")
            with server.client() as c:
                assert not c.exists("lc:{pool-a}:pool")
            proxy.delay_s = 0
            deadline = time.monotonic() + 15
            with server.client() as c:
                while c.keys("lc:{pool-a}:*") or c.zscore("lc:pools", "pool-a") is not None:
                    assert time.monotonic() < deadline, c.keys("lc:{pool-a}:*")
                    await asyncio.sleep(0.05)
    finally:
        proxy.close()
