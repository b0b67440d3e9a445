"""A time bound on every request that reaches FastAPI (the admin API, the console, health):
past LIVECODE_ADMIN_TIMEOUT_MS of the service's own work the request is cancelled and answered
503 with Retry-After, so a frozen Redis cannot hold an admin request for the length of socket
timeouts and retries. Time spent waiting on the client (its body arriving, our answer being
read) does not count: a slow phone uploading a screenshot is not a slow store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("livecode")


class Deadline:
    """`paths`: paths with a bound of their own (the scrape of /metrics reads every pool)."""

    def __init__(self, app: ASGIApp, timeout_s: float,
                 on_timeout: Callable[[Scope], Response],
                 paths: dict[str, float] | None = None) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = False
        waiting = 0  # client waits in progress (receive and send may overlap)
        remaining: float | None = None  # of the bound, while it is paused
        inside = False
        timeout_s = self.paths.get(scope["path"], self.timeout_s)
        bound = asyncio.timeout(timeout_s)

        def pause() -> None:
            nonlocal waiting, remaining
            waiting += 1
            when = bound.when()
            if waiting == 1 and inside and when is not None and not bound.expired():
                remaining = max(when - loop.time(), 0.0)
                bound.reschedule(None)

        def unpause() -> None:
            nonlocal waiting, remaining
            waiting -= 1
            if waiting == 0 and remaining is not None:
                if inside and not bound.expired():
                    bound.reschedule(loop.time() + remaining)
                remaining = None

        async def client_receive() -> Message:
            pause()
            try:
                return await receive()
            finally:
                unpause()

        async def client_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            pause()
            try:
                await send(message)
            finally:
                unpause()

        try:
            async with bound:
                inside = True
                try:
                    await self.app(scope, client_receive, client_send)
                finally:
                    inside = False
        except TimeoutError:
            if not bound.expired():
                raise
            await self._answer(scope, receive, send, started, timeout_s)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, started: bool,
                      timeout_s: float) -> None:
        log.warning("request %s %s cancelled after %.1f s", scope.get("method"),
                    scope.get("path"), timeout_s)
        if started:  # too late for a 503: the connection is closed without the rest
            return
        await self.on_timeout(scope)(scope, receive, send)
