"""`GET /s/{pool_id}`: the public scan endpoint, as a bare ASGI callable.

FastAPI's routing, validation and middleware cost several times the whole budget of a scan
(see ../shared/FIELD-NOTES.md), so this path parses the few things it needs by hand and answers
with pre-built headers. Everything that can go wrong ends in a page, never a 500: a Redis failure
or timeout is a 503 with Retry-After, and no decision is ever made from local state.
"""

from __future__ import annotations

import logging
import os
import time
from base64 import urlsafe_b64encode
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from app import metrics, pages
from app.allocator.engine import Allocator
from app.bots import is_bot
from app.settings import Settings
from app.store.fastredis import RedisReplyError, RedisUnavailable
from app.store.keys import CHANNEL_RE, POOL_ID_RE, VISITOR_ID_RE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("livecode.scan")

PREFIX = "/s/"
_NO_STORE = (b"cache-control", b"no-store")
_HTML = (b"content-type", b"text/html; charset=utf-8")


_IP_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _client_ip(scope: Scope) -> str:
    """The peer, or the X-Forwarded-For client when uvicorn trusts the proxy (it rewrites
    scope["client"] only for LIVECODE_FORWARDED_ALLOW_IPS). It becomes part of a key name."""
    client = scope.get("client")
    ip = str(client[0]) if client else ""
    return ip if len(ip) <= 45 and set(ip) <= _IP_CHARS else "-"


class VisitorIds:
    """Random visitor ids (128 bits, base64url). Reads 16 KiB from the OS at a time: one
    getrandom() per scan cost more than the encoding. Refills after a fork."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._pid = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._buf) or self._pid != os.getpid():
            self._buf, pos, self._pid = os.urandom(16384), 0, os.getpid()
        self._pos = pos + 16
        return urlsafe_b64encode(self._buf[pos : pos + 16])[:22].decode()


new_visitor_id = VisitorIds()


class ScanEndpoint:
    def __init__(self, settings: Settings) -> None:
        self.allocator: Allocator | None = None  # set by the app's lifespan
        self.cookie_name = settings.cookie_name
        self._cookie_prefix = settings.cookie_name.encode() + b"="
        attrs = f"; Path=/; Max-Age={settings.cookie_max_age_s}; HttpOnly; SameSite=Lax"
        if settings.secure_cookie:
            attrs += "; Secure"
        self._cookie_attrs = attrs.encode()
        self._retry_after = (b"retry-after", str(settings.retry_after_s).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            outcome = await self._handle(scope, send)
        except Exception:
            log.exception("scan failed")
            await self._send(send, 503, pages.UNAVAILABLE, [self._retry_after])
        metrics.scans.record(outcome, time.perf_counter() - started)

    async def _handle(self, scope: Scope, send: Send) -> str:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await self._send(send, 405, pages.METHOD_NOT_ALLOWED, [(b"allow", b"GET, HEAD")])
            return "error"
        pool_id = scope["path"][len(PREFIX) :].rstrip("/")
        if POOL_ID_RE.match(pool_id) is None:
            await self._send(send, 404, pages.NOT_FOUND, head=method == "HEAD")
            return "not_found"

        cookie = user_agent = b""
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie = value
            elif name == b"user-agent":
                user_agent = value
        # HEAD and link-preview bots must never consume capacity: answer without Redis.
        if method == "HEAD" or is_bot(user_agent):
            await self._send(send, 200, pages.PREVIEW, head=method == "HEAD")
            return "bot"

        visitor = self._visitor(cookie)
        extra = []
        if visitor is None:
            visitor = new_visitor_id()
            cookie_value = self._cookie_prefix + visitor.encode() + self._cookie_attrs
            extra.append((b"set-cookie", cookie_value))
        channel = ""
        qs = scope.get("query_string", b"")
        if qs:
            ch = parse_qs(qs.decode("latin-1")).get("ch")
            # a typo on a printed poster must not break scans: an invalid channel is dropped
            if ch and CHANNEL_RE.match(ch[0]):
                channel = ch[0]

        assert self.allocator is not None, "lifespan did not run"
        try:
            ip = _client_ip(scope) if self.allocator.rate_limit else ""  # only the limit needs it
            d = await self.allocator.scan(pool_id, visitor, channel, ip)
        except (RedisUnavailable, RedisReplyError) as exc:
            kind = "reply" if isinstance(exc, RedisReplyError) else (
                "timeout" if "timeout" in str(exc) else "unavailable"
            )
            metrics.redis_error[kind].inc()
            # the cookie still goes out, so a retry is the same visitor and counts once
            await self._send(send, 503, pages.UNAVAILABLE, [self._retry_after, *extra])
            return "error"

        outcome = d.outcome
        if outcome in ("new", "sticky"):
            if d.mode == "page":
                await self._send(send, 200, pages.group_page(d.pool_name, d.url), extra)
            else:
                await self._redirect(send, d.url, extra)
            return outcome
        if outcome == "fallback":
            if d.fallback_url:
                await self._redirect(send, d.fallback_url, extra)
            else:
                body = pages.fallback_page(d.pool_name, d.fallback_message, d.fallback_contact)
                await self._send(send, 200, body, extra)
            return "fallback"
        if outcome == "unknown":
            await self._send(send, 404, pages.NOT_FOUND)
            return "not_found"
        if outcome == "limited":
            retry = (b"retry-after", str(d.retry_after).encode())
            await self._send(send, 429, pages.TOO_MANY, [retry, *extra])
            return "limited"
        await self._send(send, 200, pages.closed_page(d.pool_name, outcome), extra)
        return "paused"

    def _visitor(self, cookie: bytes) -> str | None:
        if not cookie:
            return None
        start = cookie.find(self._cookie_prefix)
        while start > 0 and cookie[start - 1 : start] not in (b" ", b";"):
            start = cookie.find(self._cookie_prefix, start + 1)
        if start < 0:
            return None
        start += len(self._cookie_prefix)
        end = cookie.find(b";", start)
        value = (cookie[start:] if end < 0 else cookie[start:end]).strip().decode("latin-1")
        return value if VISITOR_ID_RE.match(value) else None

    async def _redirect(self, send: Send, url: str, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"location", url.encode("latin-1")), _NO_STORE, (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 302, "headers": headers + extra})
        await send({"type": "http.response.body", "body": b""})

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
        *,
        head: bool = False,
    ) -> None:
        headers = [_HTML, _NO_STORE, (b"content-length", str(len(body)).encode())]
        if extra:
            headers += extra
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
