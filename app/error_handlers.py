"""How the API answers errors: every one as `errors.error_body` JSON with its headers."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.auth import bearer, require_admin, require_read
from app.errors import LivecodeError, StoreUnavailable, error_body, validation_details

log = logging.getLogger("livecode")


def error_response(exc: LivecodeError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)


def install(api: FastAPI, retry_after_s: int) -> None:
    retry = {"Retry-After": str(retry_after_s)}

    @api.exception_handler(LivecodeError)
    async def _livecode(_: Request, exc: LivecodeError) -> JSONResponse:
        if isinstance(exc, StoreUnavailable) and "Retry-After" not in exc.headers:
            exc.headers.update(retry)
        return error_response(exc)

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
        return JSONResponse(error_body("invalid_input", "request validation failed", details),
                            status_code=422)

    async def _store(request: Request, exc: Exception) -> JSONResponse:
        log.warning("admin request failed on Redis: %r", exc)
        return await _livecode(request, StoreUnavailable("the store is unavailable, try again"))

    api.add_exception_handler(RedisError, _store)
    api.add_exception_handler(asyncio.TimeoutError, _store)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # an undecodable body: who may ask comes first, then a 422
            denied = await auth_first(request)
            if denied is not None:
                return denied
            return JSONResponse(error_body("invalid_input",
                                           f"the body cannot be read: {exc.detail}"),
                                status_code=422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                                headers=exc.headers)
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
