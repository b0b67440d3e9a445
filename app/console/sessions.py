"""Console sessions: a random token in an HttpOnly cookie; Redis holds only its SHA-256, with
the API key it was opened with and the session's CSRF token. The record's TTL is the idle
timeout, capped by what is left of the absolute one, so an abandoned session costs nothing.

The API key is checked again on every request (`ConsoleAuth.current`): a revoked key ends its
sessions at their next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.store import keys
from app.store.apikeys import ApiKeyPublic, Scope
from app.store.pools import AnyRedis

TOKEN_BYTES = 32
REVEAL_TTL_S = 120
_TOKEN_MAX = 100  # a longer cookie is no token of ours: refused before hashing


@dataclass(frozen=True)
class Session:
    key_id: str
    scope: Scope
    csrf: str
    created_ms: int

    @property
    def admin(self) -> bool:
        return self.scope == "admin"

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            self.csrf.encode(), (presented or "").encode()
        )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class SessionStore:
    def __init__(
        self,
        client: AnyRedis,
        *,
        idle_s: int,
        max_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = client
        self.idle_ms = idle_s * 1000
        self.max_ms = max_s * 1000
        self.clock = clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _ttl_ms(self, created_ms: int) -> int:
        return min(self.idle_ms, created_ms + self.max_ms - self._now_ms())

    async def open(self, key: ApiKeyPublic) -> str:
        """A new session for a verified key; the token goes in the cookie, never in Redis."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._now_ms()
        name = keys.console_session(_digest(token))
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping={
                "key_id": key.id, "scope": key.scope,
                "csrf": secrets.token_urlsafe(TOKEN_BYTES), "created": str(now),
            })
            pipe.pexpire(name, min(self.idle_ms, self.max_ms))
            await pipe.execute()
        return token

    async def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of a token, or None. `touch` restarts the idle timer (polling
        requests do not, so an open tab alone does not keep a session alive)."""
        if not token or len(token) > _TOKEN_MAX:
            return None
        name = keys.console_session(_digest(token))
        raw = {_s(k): _s(v) for k, v in (await self.r.hgetall(name)).items()}
        try:
            session = Session(
                key_id=raw["key_id"], scope=raw["scope"],  # type: ignore[arg-type]
                csrf=raw["csrf"], created_ms=int(raw["created"]),
            )
        except (KeyError, ValueError):
            return None
        ttl = self._ttl_ms(session.created_ms)
        if ttl <= 0:
            await self.r.delete(name)
            return None
        if touch:
            await self.r.pexpire(name, ttl)
        return session

    async def close(self, token: str | None) -> None:
        if token and len(token) <= _TOKEN_MAX:
            await self.r.delete(keys.console_session(_digest(token)),
                                keys.console_reveal(_digest(token)))

    async def reveal_next(self, token: str | None, what: str, ref: str, secret: str) -> None:
        """Keep `secret` for the next page of this session only (post, redirect, show once:
        reloading the page that shows it does not post again)."""
        if token and len(token) <= _TOKEN_MAX:
            await self.r.set(keys.console_reveal(_digest(token)),
                             json.dumps({"what": what, "ref": ref, "secret": secret}),
                             ex=REVEAL_TTL_S)

    async def revealed(self, token: str | None, what: str, ref: str) -> str | None:
        """The secret kept for this page, once: it is deleted as it is read."""
        if not token or len(token) > _TOKEN_MAX:
            return None
        name = keys.console_reveal(_digest(token))
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.get(name)
            pipe.delete(name)
            raw, _ = await pipe.execute()
        try:
            kept = json.loads(_s(raw)) if raw is not None else {}
        except ValueError:
            return None
        if kept.get("what") == what and kept.get("ref") == ref:
            return str(kept.get("secret") or "") or None
        return None


class SigninThrottle:
    """At most `limit` failed sign-ins per client address per window; the counter expires with
    its window, so memory stays bounded by the clients seen in one window."""

    def __init__(self, client: AnyRedis, *, limit: int, window_s: int) -> None:
        self.r = client
        self.limit = limit
        self.window_s = window_s

    async def blocked_for(self, client: str) -> int:
        """Seconds until this client may try again, 0 if it may now."""
        name = keys.console_signin_failures(client)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.ttl(name)
            count, ttl = await pipe.execute()
        if count is not None and int(count) >= self.limit:
            return max(int(ttl), 1)
        return 0

    async def failed(self, client: str) -> None:
        name = keys.console_signin_failures(client)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.set(name, 0, ex=self.window_s, nx=True)  # the window starts at the first
            pipe.incr(name)
            await pipe.execute()
