"""The operator console: server-rendered pages at /console over the same service layer as the
API and the CLI (app/console/README.md)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from app.console import (
    auth_routes,
    event_routes,
    group_routes,
    keys_routes,
    pool_routes,
    poster_routes,
    stats_routes,
    webhook_routes,
)
from app.console.views import PoolViews

STATIC = Path(str(files("app.console") / "static"))


class _StaticAssets:
    """The console's CSS, JS and vendored libraries, with nosniff and a day of caching (their
    URLs carry the version)."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=STATIC)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"public, max-age=86400"),
                ]
            await send(message)

        await self.files(scope, receive, send_with_headers)


def mount(api: FastAPI) -> None:
    api.state.console_views = PoolViews()
    api.mount("/console/static", _StaticAssets(), name="console-static")
    for module in (auth_routes, pool_routes, group_routes, poster_routes, stats_routes,
                   event_routes, webhook_routes, keys_routes):
        api.include_router(module.router)
