"""The application: FastAPI for admin, health, metrics and docs, with the scan path in front of
it as a bare ASGI callable (see app/routes/scan.py for why)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app import __version__, metrics
from app.auth import bearer, require_admin, require_read
from app.bodylimit import BodyLimit
from app.errors import LivecodeError, validation_details
from app.routes import groups, health, pools, webhooks
from app.routes import metrics as metrics_route
from app.routes.scan import PREFIX, Receive, ScanEndpoint, Scope, Send
from app.runtime import Runtime
from app.settings import Settings
from app.webhooks.service import Webhooks

log = logging.getLogger("livecode")


def _error(status: int, code: str, message: str, details: object = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status
    )


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(LivecodeError)
    async def _livecode(_: Request, exc: LivecodeError) -> JSONResponse:
        return JSONResponse(
            exc.body(), status_code=exc.status, headers=getattr(exc, "headers", None)
        )

    async def auth_first(request: Request) -> JSONResponse | None:
        """FastAPI parses the body before the auth dependency runs: who may ask comes first."""
        if not request.url.path.startswith("/api/"):
            return None
        try:
            credentials = await bearer(request)
            if request.method in ("GET", "HEAD"):
                await require_read(request, credentials)
            else:
                await require_admin(request, credentials)
        except LivecodeError as denied:
            return await _livecode(request, denied)
        return None

    @api.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        denied = await auth_first(request)
        if denied is not None:
            return denied
        details = validation_details(exc.errors())
        return _error(422, "invalid_input", "request validation failed", details)

    @api.exception_handler(RedisError)
    async def _store(_: Request, exc: RedisError) -> JSONResponse:
        log.warning("admin request failed on Redis: %r", exc)
        response = _error(503, "store_unavailable", "the store is unavailable, try again")
        response.headers["Retry-After"] = "2"
        return response

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # an undecodable body: who may ask comes first, then a 422
            denied = await auth_first(request)
            if denied is not None:
                return denied
            return _error(422, "invalid_input", f"the body cannot be read: {exc.detail}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = _error(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request)
        return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method of the path (RFC 9110 15.5.6). Starlette's own 405 names only those of the
    first route whose path matched, and FastAPI makes one route per method; so each method is
    tried against the routes, through their public `matches`."""
    routes = request.app.router.routes
    return ", ".join(m for m in _METHODS if any(
        r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes))


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
        api.state.webhooks = Webhooks.start(runtime.redis, settings, shebang=runtime.store.shebang)
        try:
            yield
        finally:
            await api.state.webhooks.aclose()
            flusher.cancel()
            metrics.scans.flush()
            scan.allocator = None
            await runtime.close()

    api = FastAPI(
        title="livecode",
        version=__version__,
        summary="One stable QR code, a pool of chat groups, atomic allocation in Redis.",
        lifespan=lifespan,
    )
    install_error_handlers(api)
    api.include_router(pools.router)
    api.include_router(groups.router)
    api.include_router(webhooks.router)
    api.include_router(health.router)
    api.include_router(metrics_route.router)
    return LivecodeApp(api, scan, settings.api_body_limit_bytes)


def create_app_from_env() -> LivecodeApp:
    """Factory for uvicorn workers: settings come from LIVECODE_* variables."""
    return create_app(Settings())
