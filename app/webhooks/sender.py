"""One HTTP attempt of a webhook: POST, no redirects, bounded time, at most MAX_RESPONSE_BYTES
of the reply read (enough for a platform's status JSON), judged by the format's rule."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore
import httpx

from app import __version__
from app.settings import Settings
from app.webhooks.models import Attempt
from app.webhooks.netguard import BlockedAddress, GuardedBackend

MAX_RESPONSE_BYTES = 64 * 1024
MAX_ERROR_CHARS = 300
USER_AGENT = f"livecode-webhooks/{__version__}"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")

# The format's verdict on a reply: None if it is a success, else why it is not.
Judge = Callable[[int, bytes], str | None]


@dataclass(frozen=True)
class Outgoing:
    url: str
    headers: dict[str, str]
    body: bytes
    judge: Judge


@dataclass(frozen=True)
class Outcome:
    attempt: Attempt
    retry_after_s: float | None = None  # the receiver's Retry-After, in seconds


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go through GuardedBackend.
    httpx has no public option for the network backend yet (encode/httpx#3749), so the pool is
    rebuilt the way AsyncHTTPTransport builds it, with that backend."""

    def __init__(self, *, allow_private: bool, verify: ssl.SSLContext | bool = True) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        super().__init__(verify=verify, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


class Sender:
    """Sends attempts; one per deliverer (its connection pool is shared by its attempts)."""

    def __init__(self, settings: Settings, *, verify: ssl.SSLContext | bool = True) -> None:
        self.timeout_s = settings.webhook_timeout_s
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(allow_private=settings.webhook_allow_private, verify=verify),
            timeout=httpx.Timeout(settings.webhook_timeout_s,
                                  connect=settings.webhook_connect_timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxies from the environment: they would bypass the guard
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, out: Outgoing) -> Outcome:
        at = datetime.now(UTC)
        start = time.monotonic()
        status: int | None = None
        retry_after: float | None = None
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": USER_AGENT,
            "accept-encoding": "identity",  # a bounded read of a compressed reply is not bounded
            **out.headers,
        }
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.client.stream(
                    "POST", out.url, content=out.body, headers=headers
                ) as response:
                    status = response.status_code
                    body = await _read_bounded(response)
                    retry_after = _retry_after(response.headers.get("retry-after"))
            error = _judge(status, body, response.headers.get("location"), out.judge)
        except TimeoutError:
            error = f"timed out after {self.timeout_s:g} s"
        except httpx.TimeoutException as exc:
            error = f"timed out ({type(exc).__name__}): {exc}"
        except httpx.ConnectError as exc:
            cause = exc.__cause__ or exc.__context__
            error = str(exc) if isinstance(cause, BlockedAddress) else f"cannot connect: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = round((time.monotonic() - start) * 1000)
        attempt = Attempt(
            at=at, status=status, latency_ms=latency_ms, ok=error is None,
            error=_clip(error) if error else None,
        )
        return Outcome(attempt, retry_after)


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk[: MAX_RESPONSE_BYTES - size])
        size += len(chunks[-1])
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)


def _judge(status: int, body: bytes, location: str | None, judge: Judge) -> str | None:
    if 300 <= status < 400:
        where = f" to {location}" if location else ""
        return f"HTTP {status}: a redirect{where}, not followed (update the webhook's URL)"
    if not 200 <= status < 300:
        return f"HTTP {status}: {_snippet(body)}"
    return judge(status, body)


def _snippet(body: bytes) -> str:
    text = _UNPRINTABLE.sub(" ", body[:MAX_ERROR_CHARS].decode("utf-8", "replace")).strip()
    return text or "(empty body)"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from webhook receivers: ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
