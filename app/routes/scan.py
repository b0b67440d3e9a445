"""`GET /s/{pool_id}`: the public scan endpoint, as a bare ASGI callable.

FastAPI's routing, validation and middleware cost several times the whole budget of a scan
(see ../shared/FIELD-NOTES.md), so this path parses the few things it needs by hand and answers
with pre-built headers. Everything that can go wrong ends in a page, never a 500: a Redis failure
or timeout is a 503 with Retry-After, and no decision is ever made from local state.
"""

from __future__ import annotations

import logging
import os
import re
from base64 import urlsafe_b64encode
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any
from urllib.parse import parse_qs

from app import metrics, pages
from app.allocator.engine import Allocator
from app.allocator.protocol import Decision, Outcome, decode, redirect_location
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
_PREFIX_LEN = len(PREFIX)
_NO_STORE = (b"cache-control", b"no-store")
_HTML = (b"content-type", b"text/html; charset=utf-8")
_REDIRECT = (_NO_STORE, (b"content-length", b"0"))
_ALLOW = (b"allow", b"GET, HEAD")


_IP_CHARS = frozenset("0123456789abcdefABCDEF:.")


_CHANNEL_BYTES_RE = re.compile(CHANNEL_RE.pattern.encode())


def _channel(query_string: bytes) -> str:
    """`?ch=`; a typo on a printed poster must not break scans: an invalid channel is dropped.
    The query of a poster's QR code is `ch=<name>` alone: read as it is, without parse_qs
    (~2 us a scan); anything else is parsed."""
    if query_string.startswith(b"ch=") and _CHANNEL_BYTES_RE.match(query_string, 3):
        return query_string[3:].decode()
    ch = parse_qs(query_string.decode("latin-1")).get("ch")
    return ch[0] if ch and CHANNEL_RE.match(ch[0]) else ""


def _client_ip(scope: Scope) -> str:
    """The peer, or the X-Forwarded-For client when uvicorn trusts the proxy (it rewrites
    scope["client"] only for LIVECODE_FORWARDED_ALLOW_IPS). It becomes part of a key name."""
    client = scope.get("client")
    ip = str(client[0]) if client else ""
    return ip if len(ip) <= 45 and set(ip) <= _IP_CHARS else "-"


class VisitorIds:
    """Random visitor ids (128 bits, base64url). Reads 16 KiB from the OS at a time: one
    getrandom() per scan cost more than the encoding. A forked child starts empty, so two
    workers never hand out the same ids (getpid() per scan would be a syscall each)."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self.drop)

    def drop(self) -> None:
        self._buf, self._pos = b"", 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._buf):
            self._buf, pos = os.urandom(16384), 0
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
        # One frame for the whole common path, awaiting the Redis future directly: each
        # coroutine between the task and that future is resumed once more per scan (bench/).
        started = perf_counter()
        outcome = "error"
        extra: list[tuple[bytes, bytes]] = []
        answering = False  # set just before the response starts: it cannot start twice
        try:
            method = scope["method"]
            pool_id = scope["path"][_PREFIX_LEN:].rstrip("/")
            if method not in ("GET", "HEAD"):
                answering = True
                await self._send(send, 405, pages.METHOD_NOT_ALLOWED, [_ALLOW])
            elif POOL_ID_RE.match(pool_id) is None:
                outcome, answering = "not_found", True
                await self._send(send, 404, pages.NOT_FOUND, head=method == "HEAD")
            else:
                cookie = user_agent = b""
                for name, value in scope["headers"]:
                    if name == b"cookie":
                        cookie = value
                    elif name == b"user-agent":
                        user_agent = value
                # HEAD and link-preview bots must never consume capacity: no Redis at all.
                if method == "HEAD" or is_bot(user_agent):
                    outcome, answering = "bot", True
                    await self._send(send, 200, pages.PREVIEW, head=method == "HEAD")
                else:
                    visitor = self._visitor(cookie) if cookie else None
                    fresh = visitor is None
                    if visitor is None:
                        visitor = new_visitor_id()
                        extra.append((b"set-cookie", self._cookie_prefix + visitor.encode()
                                      + self._cookie_attrs))
                    qs = scope["query_string"]
                    channel = _channel(qs) if qs else ""
                    allocator = self.allocator
                    assert allocator is not None, "lifespan did not run"
                    # only the rate limit needs the client address
                    ip = _client_ip(scope) if allocator.rate_limit else ""
                    reply = await allocator.submit(pool_id, visitor, channel, ip, fresh=fresh)
                    location = redirect_location(reply)
                    answering = True
                    if location is not None:
                        await send({"type": "http.response.start", "status": 302,
                                    "headers": [(b"location", location), *_REDIRECT, *extra]})
                        await send({"type": "http.response.body", "body": b""})
                        outcome = reply[0].decode()
                    else:
                        outcome = await self._answer(send, decode(reply), extra)
        except (RedisUnavailable, RedisReplyError) as exc:
            metrics.redis_error[exc.kind].inc()
            # the cookie still goes out, so a retry is the same visitor and counts once
            await self._send(send, 503, pages.UNAVAILABLE, [self._retry_after, *extra])
        except Exception as exc:
            if answering:
                # The answer was decided and under way when sending failed: the client went
                # away (the allocation, if any, stands). Nothing more can be sent.
                log.debug("scan answer not delivered: %r", exc)
                outcome = "disconnected"
            else:
                log.exception("scan failed")
                await self._send(send, 503, pages.UNAVAILABLE, [self._retry_after, *extra])
        metrics.scans.record(outcome, perf_counter() - started)

    async def _answer(self, send: Send, d: Decision, extra: list[tuple[bytes, bytes]]) -> str:
        """Everything but a plain redirect to a group: pages, fallbacks, closed pools."""
        outcome = d.outcome
        if outcome in (Outcome.NEW, Outcome.STICKY):
            if d.mode == "page":
                await self._send(send, 200, pages.group_page(d.pool_name, d.url), extra)
            else:
                await self._redirect(send, d.url, extra)
            return outcome.value
        if outcome is Outcome.FALLBACK:
            if d.fallback_url:
                await self._redirect(send, d.fallback_url, extra)
            else:
                body = pages.fallback_page(d.pool_name, d.fallback_message, d.fallback_contact)
                await self._send(send, 200, body, extra)
            return "fallback"
        if outcome is Outcome.UNKNOWN:
            await self._send(send, 404, pages.NOT_FOUND)
            return "not_found"
        if outcome is Outcome.LIMITED:
            retry = (b"retry-after", str(d.retry_after).encode())
            await self._send(send, 429, pages.TOO_MANY, [retry, *extra])
            return "limited"
        await self._send(send, 200, pages.closed_page(d.pool_name, outcome), extra)
        return "paused"

    def _visitor(self, cookie: bytes) -> str | None:
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
        headers = [(b"location", url.encode("latin-1")), *_REDIRECT, *extra]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
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
