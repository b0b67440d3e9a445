"""Where posters point (issue 12, item 8): only at LIVECODE_PUBLIC_URL or, without it, the address
the service is bound to, never at the Host a request names; and when that address is loopback,
which no phone can open, the API, the CLI and `serve` say so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aredis
from asgi_lifespan import LifespanManager
from click.testing import CliRunner

from app.cli import main
from app.main import create_app
from app.qr import decode_qr_image
from app.settings import Settings
from app.store.apikeys import ApiKeyStore


async def _client(settings: Settings, host: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    app = create_app(settings)
    r = aredis.Redis.from_url(settings.redis_url)
    _, key = await ApiKeyStore(r).create("admin", "poster test")
    try:
        async with LifespanManager(app) as manager:  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=manager.app)
            # every request names another host, as any client may
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}",
                                         headers={"Authorization": f"Bearer {key}",
                                                  "X-Forwarded-Host": host}) as http:
                created = await http.post("/api/v1/pools", json={"id": "spring"})
                assert created.status_code == 201, created.text
                yield http, key
    finally:
        await r.aclose()


@pytest.fixture
async def bound_only(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """No public URL: the service bound to 127.0.0.1:8123, asked as evil.example."""
    settings = Settings(redis_url=redis_url, public_url=None, host="127.0.0.1", port=8123)
    async for http, _ in _client(settings, "evil.example"):
        yield http


@pytest.fixture
async def public(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(redis_url=redis_url, public_url="https://qr.example.com/",
                        host="127.0.0.1", port=8123)
    async for http, _ in _client(settings, "evil.example"):
        yield http


@pytest.mark.parametrize("fmt", ["png", "pdf"])
async def test_the_poster_ignores_the_host_header(bound_only: httpx.AsyncClient,
                                                  fmt: str) -> None:
    r = await bound_only.get(f"/api/v1/pools/spring/qr.{fmt}", params={"ch": "door"})
    assert r.status_code == 200, r.text
    if fmt == "png":
        assert decode_qr_image(r.content) == "http://127.0.0.1:8123/s/spring?ch=door"
    assert b"evil.example" not in r.content
    warning = r.headers["livecode-warning"]
    assert "http://127.0.0.1:8123 is a loopback address" in warning
    assert "LIVECODE_PUBLIC_URL" in warning


async def test_the_pool_says_its_poster_url_is_loopback(bound_only: httpx.AsyncClient) -> None:
    pool = (await bound_only.get("/api/v1/pools/spring")).json()
    assert pool["scan_url"] == "http://127.0.0.1:8123/s/spring"
    assert "loopback" in pool["poster_warning"]


async def test_a_public_url_gives_posters_without_a_warning(public: httpx.AsyncClient) -> None:
    r = await public.get("/api/v1/pools/spring/qr.png")
    assert r.status_code == 200
    assert decode_qr_image(r.content) == "https://qr.example.com/s/spring"
    assert "livecode-warning" not in r.headers
    pool = (await public.get("/api/v1/pools/spring")).json()
    assert pool["scan_url"] == "https://qr.example.com/s/spring"
    assert pool["poster_warning"] is None


def test_the_cli_warns_when_the_poster_is_loopback(cli: CliRunner, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVECODE_PUBLIC_URL")  # the `cli` fixture sets one
    monkeypatch.setenv("LIVECODE_PORT", "8124")
    assert cli.invoke(main, ["pools", "create", "spring"]).exit_code == 0
    result = cli.invoke(main, ["qr", "spring", "-o", "poster.png"])
    assert result.exit_code == 0, result.stderr
    assert decode_qr_image((tmp_path / "poster.png").read_bytes()) == (
        "http://127.0.0.1:8124/s/spring")
    assert "warning: the poster URL http://127.0.0.1:8124 is a loopback address" in (
        result.stderr)

    monkeypatch.setenv("LIVECODE_PUBLIC_URL", "https://qr.example.com")
    result = cli.invoke(main, ["qr", "spring", "-o", "poster.png"])
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
    assert decode_qr_image((tmp_path / "poster.png").read_bytes()) == (
        "https://qr.example.com/s/spring")
