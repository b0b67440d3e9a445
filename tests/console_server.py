"""The app as a real HTTP server on 127.0.0.1 (uvicorn in a thread) for the console's tests,
and API keys made through the service layer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis.asyncio as aredis
import uvicorn

from app.embedded import free_port
from app.main import create_app
from app.settings import Settings
from app.store.apikeys import ApiKeyStore


@contextmanager
def running_app(redis_url: str, **settings: object) -> Iterator[str]:
    port = free_port()
    # the app's own bind address, as `livecode serve` would configure it: posters encode it
    settings = {"host": "127.0.0.1", "port": port, **settings}
    app = create_app(Settings(redis_url=redis_url, **settings))  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the app did not become ready"
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(15)


def make_key(redis_url: str, scope: str, name: str = "") -> tuple[str, str]:
    """A new API key: (its id, the full key)."""

    async def create() -> tuple[str, str]:
        client = aredis.Redis.from_url(redis_url)
        try:
            public, key = await ApiKeyStore(client).create(scope, name)  # type: ignore[arg-type]
            return public.id, key
        finally:
            await client.aclose()

    # in a thread of its own: Playwright's sync API keeps an event loop running on this one
    result: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(create())))
    worker.start()
    worker.join(30)
    return result[0]
