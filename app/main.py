"""The application: FastAPI for admin, health, metrics and docs, with the scan path in front of
it as a bare ASGI callable (see app/routes/scan.py for why)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from app import __version__, console, error_handlers, metrics
from app.bodylimit import BodyLimit
from app.console.web import unavailable_page
from app.deadline import Deadline
from app.errors import StoreUnavailable
from app.events import scheduler
from app.routes import docs, events, groups, health, pools, stats, webhooks
from app.routes import metrics as metrics_route
from app.routes.scan import PREFIX, Receive, ScanEndpoint, Scope, Send
from app.runtime import Runtime
from app.settings import Settings
from app.webhooks.service import Webhooks


class LivecodeApp:
    """Routes `/s/...` to the lean scan endpoint and everything else to FastAPI."""

    def __init__(self, api: FastAPI, scan: ScanEndpoint, settings: Settings) -> None:
        self.fastapi = api
        self.api = BodyLimit(
            Deadline(api, settings.admin_timeout_s, _too_slow(settings),
                     {"/metrics": settings.metrics_timeout_s}),
            settings.api_body_limit_bytes,
        )
        self.scan = scan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.scan(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def _too_slow(settings: Settings) -> Callable[[Scope], Response]:
    """The answer to a request cut off by the deadline: the console's page, else the API's
    error shape."""

    def answer(scope: Scope) -> Response:
        path: str = scope["path"]
        if path == "/console" or path.startswith("/console/"):
            return unavailable_page(Request(scope))
        exc = StoreUnavailable(
            f"the request did not finish within {settings.admin_timeout_ms} ms: the store is "
            "unavailable or slow, try again",
            {"timeout_ms": settings.admin_timeout_ms},
            headers={"Retry-After": str(settings.retry_after_s)},
        )
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    return answer


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
        # What start-up made (modules, routes, schemas) lives as long as the process: out of
        # the collector's sight, a full collection no longer walks it, which otherwise paused
        # the event loop (every scan) for ~80 ms at the first large admin request.
        gc.collect()
        gc.freeze()
        scan.allocator = runtime.allocator
        flusher = asyncio.create_task(_flush_metrics_every(1.0))
        api.state.webhooks = webhooks_service = Webhooks.start(
            runtime.redis, settings, shebang=runtime.store.shebang)
        background = [asyncio.create_task(scheduler.run(
            runtime.store, interval_s=settings.scheduler_interval_s,
            sinks=[webhooks_service.enqueue_all]))] if settings.scheduler else []
        try:
            yield
        finally:
            await api.state.webhooks.aclose()
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
    api.include_router(webhooks.router)
    api.include_router(health.router)
    api.include_router(metrics_route.router)
    console.mount(api)  # the operator console at /console
    docs.install(api)
    return LivecodeApp(api, scan, settings)


def create_app_from_env() -> LivecodeApp:
    """Factory for uvicorn workers: settings come from LIVECODE_* variables."""
    return create_app(Settings())
