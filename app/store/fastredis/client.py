"""The client: one connection at a time, reconnecting on demand, calls with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from app.store.fastredis.connection import Connection
from app.store.fastredis.errors import RedisUnavailable, reply_error
from app.store.fastredis.gathering import Gathering, Packer
from app.store.fastredis.resp import Arg, Script, pack
from app.store.fastredis.waitmode import WaitMode

ReplyErrorValue = hiredis.ReplyError
# Write as soon as this many commands (or gathered calls) are buffered instead of waiting for the
# end of the loop turn, so Redis starts on the first while the loop is still parsing requests.
# One script call per command: 4 was best (whole turns made the app and Redis take turns).
# With a pool's new scans gathered into one call, 16 was best: Redis and the worker both spend
# less per scan, and p99 stayed under 2x the ceiling's (bench/NOTES.md).
FLUSH_AT = 16
RETRY_CONNECT_AFTER = 0.1  # seconds: fail fast instead of hammering a server that refused us


class PipelinedRedis:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, path: str | None = None,
                 password: str | None = None, username: str | None = None, db: int = 0,
                 connect_timeout: float = 1.0, max_inflight: int = 10_000,
                 stall_timeout: float = 2.0, wait_replicas: int = 0, wait_ms: int = 0,
                 flush_at: int = FLUSH_AT) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db
        self.connect_timeout = connect_timeout
        self.max_inflight = max_inflight
        self.stall_timeout = stall_timeout
        self.flush_at = flush_at
        self.wait_replicas = wait_replicas
        self.wait_mode = WaitMode(wait_replicas, wait_ms) if wait_replicas else None
        handshake: list[bytes] = []
        if password is not None:
            auth = (b"AUTH", username, password) if username else (b"AUTH", password)
            handshake.append(pack(auth))
        if db:
            handshake.append(pack((b"SELECT", db)))
        self._handshake = b"".join(handshake)
        self._handshake_n = len(handshake)
        self._conn: Connection | None = None
        self._retry_after = 0.0
        self._last_error = ""
        self._closed = False
        self._old_writes = 0  # transport writes on earlier connections

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> PipelinedRedis:
        """redis://[[user]:password@]host[:port][/db] or unix:///path.sock[?db=N]; kw override."""
        u = urlsplit(url)
        query = parse_qs(u.query)
        opts: dict[str, Any] = {}
        if u.username:
            opts["username"] = unquote(u.username)
        if u.password is not None:
            opts["password"] = unquote(u.password)
        db = query.get("db", [""])[0]
        if u.scheme == "redis":
            opts["host"] = u.hostname or "127.0.0.1"
            opts["port"] = u.port or 6379
            db = u.path.strip("/") or db
        elif u.scheme == "unix":
            if not u.path:
                raise ValueError(f"no socket path in {url!r}")
            opts["path"] = unquote(u.path)
        else:
            raise ValueError(f"unsupported Redis URL scheme {u.scheme!r} (redis:// or unix://)")
        if db:
            opts["db"] = int(db)
        opts.update(kw)
        return cls(**opts)

    def pipelined(self) -> PipelinedRedis | None:
        """This client, for callers that pack their own EVALSHAs or gather calls: not in WAIT
        mode, where every script call must be followed by its WAIT."""
        return None if self.wait_mode is not None else self

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.transport is not None and not conn.closed

    @property
    def write_count(self) -> int:
        """Transport writes so far (for pipelining metrics and tests)."""
        return self._old_writes + (self._conn.writes if self._conn is not None else 0)

    # A deadline argument, not asyncio.timeout(): a timer per call costs ~2 us (bench/).
    async def execute(self, *args: Arg, timeout: float) -> Any:  # noqa: ASYNC109
        """Send one command; `timeout` bounds the whole call, connecting included."""
        reply = await self.send(pack(args), timeout)
        if type(reply) is ReplyErrorValue:
            raise reply_error(reply)
        return reply

    async def evalsha(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                      *, timeout: float) -> Any:  # noqa: ASYNC109
        """EVALSHA (FCALL for a function), falling back once to EVAL on NOSCRIPT within the same
        deadline. In WAIT mode the reply counts only once a WAIT on the same connection says
        that enough replicas have it; else RedisUnavailable (the script ran: the outcome is
        unknown)."""
        if self.wait_mode is not None:
            return await self.wait_mode.evalsha(self, script, keys, args, timeout)
        reply = await self.evalsha_raw(script, keys, args, timeout=timeout)
        if type(reply) is ReplyErrorValue:
            raise reply_error(reply)
        return reply

    def evalsha_raw(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                    *, timeout: float) -> asyncio.Future[Any]:
        """The hot path's EVALSHA or FCALL: a plain future, no coroutine of its own to resume. It
        resolves to the reply, an error reply as a `hiredis.ReplyError` value; NOSCRIPT is
        handled by the connection (EVAL for the same future). Not for WAIT mode."""
        packed = pack((*script.command, len(keys), *keys, *args))
        return self.evalsha_packed(script, packed, timeout)

    def evalsha_packed(self, script: Script, packed: bytes, timeout: float) -> asyncio.Future[Any]:
        """evalsha_raw for a call of `script` that the caller packed (`Script.head`, `bulk`)."""
        return self.send(packed, timeout, (script, packed))

    def evalsha_gathered(self, script: Script, pack: Packer, key: Any, item: Any,
                         timeout: float) -> asyncio.Future[Any]:
        """One call of `script` for `item`, gathered with the other calls of `script` and `pack`
        for the same `key` that are queued before the next write into one EVALSHA that `pack`
        makes. The future resolves to this item's part of the reply (errors as values). Not
        for WAIT mode."""
        conn = self.open_with_room()
        loop = conn.loop
        fut = loop.create_future()
        deadline = loop.time() + timeout
        g = conn.gathering.get((script.sha, pack, key))
        if g is None:
            g = conn.gathering[script.sha, pack, key] = Gathering(script, pack, key, deadline)
        g.add(item, fut, deadline)
        conn.calls += 1
        conn.nbuf += 1
        if conn.nbuf >= conn.flush_at and conn.ready:
            conn.flush()
        elif not conn.flush_scheduled:
            conn.schedule_flush()  # also when not connected yet: the gathering is sealed
        return fut

    def send(self, packed: bytes, timeout: float,
             retry: tuple[Script, bytes] | None = None) -> asyncio.Future[Any]:
        """Queue one packed command; the future resolves to its reply (errors as values)."""
        conn = self.open_with_room()
        if conn.gathering:
            conn.seal()
        fut = conn.loop.create_future()
        conn.queue(packed, fut, conn.loop.time() + timeout, retry)
        conn.wrote_one()
        return fut

    def open_with_room(self) -> Connection:
        """The connection (a new one if there is none), if it can take one more call."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._connect()
        if conn.calls >= self.max_inflight:
            conn.check_stall()
            raise RedisUnavailable("overloaded")
        return conn

    async def close(self) -> None:
        self._closed = True
        conn = self._conn
        if conn is None:
            return
        conn.fail("client closed")
        task = conn.connect_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- connecting --
    def _connect(self) -> Connection:
        if self._closed:
            raise RedisUnavailable("client closed")
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_after:
            raise RedisUnavailable(f"connect failed recently: {self._last_error}")
        if self._conn is not None:
            self._old_writes += self._conn.writes
        conn = Connection(loop, self._handshake, self._handshake_n, self.stall_timeout,
                          self.flush_at, self._connect_failed)
        self._conn = conn
        conn.connect_task = loop.create_task(self._open(conn))
        return conn

    def _connect_failed(self, message: str) -> None:
        self._last_error = message
        self._retry_after = asyncio.get_running_loop().time() + RETRY_CONNECT_AFTER

    async def _open(self, conn: Connection) -> None:
        loop = conn.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.path is not None:
                    await loop.create_unix_connection(lambda: conn, self.path)
                else:
                    await loop.create_connection(lambda: conn, self.host, self.port)
        except asyncio.CancelledError:
            conn.fail("connect cancelled")
            raise
        except Exception as e:
            message = f"connect failed: {e!r}"
            self._connect_failed(message)
            conn.fail(message)
