"""Abuse limits: the per-client scan rate limit (off by default) and the API body cap."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from tests.helpers import counts, open_core, seed, snapshot
from tests.loadgen import fire
from tests.test_serve import serve


def app_client(app: object, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://lc.test")


async def test_rate_limit_stops_one_client_draining_a_pool(redis_url: str) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 100}])
        app = create_app(Settings(redis_url=redis_url, scan_rate_limit_per_min=3))
        async with (
            LifespanManager(app) as m,  # type: ignore[arg-type]
            app_client(m.app) as one,
            app_client(m.app, "198.51.100.9") as other,
        ):
            statuses = []
            for _ in range(5):
                one.cookies.clear()
                statuses.append((await one.get("/s/pool-a")).status_code)
            assert statuses == [302, 302, 302, 429, 429]
            one.cookies.clear()
            limited = await one.get("/s/pool-a")
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            assert limited.headers["cache-control"] == "no-store"
            # a visitor who already has a group still gets it back
            sticky = await other.get("/s/pool-a")
            assert sticky.status_code == 302
            for _ in range(4):
                assert (await other.get("/s/pool-a")).status_code == 302
            other.cookies.clear()
            assert (await other.get("/s/pool-a")).status_code == 302  # its own budget
        assert await counts(core.redis) == {"g1": 5}


async def test_no_rate_limit_by_default(redis_url: str) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 100}])
        app = create_app(Settings(redis_url=redis_url))
        async with LifespanManager(app) as m, app_client(m.app) as c:  # type: ignore[arg-type]
            for _ in range(20):
                c.cookies.clear()
                assert (await c.get("/s/pool-a")).status_code == 302


@pytest.mark.slow
@pytest.mark.parametrize("trusted,expected", [("127.0.0.1", 4), ("", 2)])
async def test_forwarded_for_counts_only_from_trusted_proxies(
    redis_url: str, tmp_path: Path, trusted: str, expected: int
) -> None:
    """Two clients behind a proxy on 127.0.0.1, each sending 3 scans, limit 2 a minute: with the
    proxy trusted they are two clients (4 allocations); untrusted, one (2)."""
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 100}])
    env = {"LIVECODE_REDIS_URL": redis_url, "LIVECODE_SCAN_RATE_LIMIT_PER_MIN": "2",
           "LIVECODE_FORWARDED_ALLOW_IPS": trusted}
    with serve(env=env, cwd=tmp_path) as base:
        host, port = base.removeprefix("http://").split(":")
        got = []
        for ip in ("192.0.2.1", "192.0.2.2"):
            got += await fire(host, int(port), "/s/pool-a", 3, concurrency=1,
                              headers={"X-Forwarded-For": ip})
    assert sum(r.status == 302 for r in got) == expected
    assert sum(r.status == 429 for r in got) == 6 - expected
    async with open_core(redis_url) as core:
        assert await counts(core.redis) == {"g1": expected}


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    app = create_app(Settings(redis_url=redis_url, api_body_limit_bytes=4096))
    async with LifespanManager(app) as m, app_client(m.app) as c:  # type: ignore[arg-type]
        rt = app.fastapi.state.runtime
        _, secret = await ApiKeyStore(rt.redis).create("admin")
        yield c, {"Authorization": f"Bearer {secret}"}


async def test_oversized_api_body_is_refused_before_it_is_read(
    api: tuple[httpx.AsyncClient, dict[str, str]], redis_url: str
) -> None:
    client, auth = api
    assert (await client.get("/api/v1/pools", headers=auth)).status_code == 200  # key's 1st use
    async with open_core(redis_url) as core:
        before = await snapshot(core.redis)
        big = json.dumps({"id": "big-pool", "name": "x" * 10_000})
        r = await client.post("/api/v1/pools", content=big,
                              headers={**auth, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"id": "big-pool", "name": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        r = await client.post("/api/v1/pools", content=chunks(),
                              headers={**auth, "content-type": "application/json"})
        assert r.status_code == 413
        assert await snapshot(core.redis) == before
        ok = await client.post("/api/v1/pools", json={"id": "small-pool"}, headers=auth)
        assert ok.status_code == 201


async def test_malformed_json_is_a_clear_422(api: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, auth = api
    r = await client.post("/api/v1/pools", content=b'{"id": "x",',
                          headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
