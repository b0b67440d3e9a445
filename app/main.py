"""The application: FastAPI for admin, health, metrics and docs, with the scan path in front of
it as a bare ASGI callable (see app/routes/scan.py for why)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__, console, error_handlers, metrics
from app.bodylimit import BodyLimit
from app.events import scheduler
from app.routes import docs, events, groups, health, pools, stats
from app.routes import metrics as metrics_route
from app.routes.scan import PREFIX, Receive, ScanEndpoint, Scope, Send
from app.runtime import Runtime
from app.settings import Settings


class LivecodeApp:
    """Routes `/s/...` to the lean scan endpoint and everything else to FastAPI."""

    def __init__(self, api: FastAPI, scan: ScanEndpoint, body_limit: int) -> None:
        self.fastapi = api
        self.api = BodyLimit(api, body_limit)
        self.scan = scan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.scan(scope, receive, send)
        else:
            await self.api(scope, receive, send)


async def _flush_metrics_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        metrics.scans.flush()


def create_app(settings: Settings | None = None) -> LivecodeApp:
    settings = settings or Settings()
    scan = ScanEndpoint(settings)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.open(settings)
        api.state.runtime = runtime
        scan.allocator = runtime.allocator
        flusher = asyncio.create_task(_flush_metrics_every(1.0))
        background = [asyncio.create_task(scheduler.run(
            runtime.store, interval_s=settings.scheduler_interval_s))] if settings.scheduler else []
        try:
            yield
        finally:
            flusher.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            metrics.scans.flush()
            scan.allocator = None
            await runtime.close()

    api = FastAPI(
        title="livecode",
        version=__version__,
        summary="One stable QR code, a pool of chat groups, atomic allocation in Redis.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,  # app/routes/docs.py
    )
    error_handlers.install(api, settings.retry_after_s)
    api.include_router(pools.router)
    api.include_router(groups.router)
    api.include_router(stats.router)
    api.include_router(events.router)
    api.include_router(health.router)
    api.include_router(metrics_route.router)
    console.mount(api)  # the operator console at /console
    docs.install(api)
    return LivecodeApp(api, scan, settings.api_body_limit_bytes)


def create_app_from_env() -> LivecodeApp:
    """Factory for uvicorn workers: settings come from LIVECODE_* variables."""
    return create_app(Settings())
