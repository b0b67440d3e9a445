"""A small auto-pipelining asyncio Redis client for the hot scan path (one EVALSHA per request).

One connection per client. Every command issued during one event-loop turn goes out in a single
`transport.write`; replies resolve the pending futures in FIFO order. Failures are reported as
`RedisUnavailable` (outcome unknown or not executed) or `RedisReplyError` (the server said no).
Nothing is retried except EVALSHA -> EVAL after NOSCRIPT, which is safe: the script did not run.
Calls of one script that share a key and are queued before the same write can be gathered into
one EVALSHA (`evalsha_gathered`): the scan path sends one script call per pool per write.

RESP2 request/reply commands only: no SUBSCRIBE, MONITOR or CLIENT REPLY, and avoid blocking
commands (BLPOP...), which would hold up every call queued behind them on the shared connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Arg = bytes | str | int | float

_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)
_ReplyError = hiredis.ReplyError
# Write as soon as this many commands (or gathered calls) are buffered instead of waiting for the
# end of the loop turn, so Redis starts on the first while the loop is still parsing requests.
# One script call per command: 4 was best (whole turns made the app and Redis take turns).
# With a pool's new scans gathered into one call, 16 was best: Redis and the worker both spend
# less per scan, and p99 stayed under 2x the ceiling's (bench/NOTES.md).
_FLUSH_AT = 16
_RETRY_CONNECT_AFTER = 0.1  # seconds: fail fast instead of hammering a server that just refused us


class ScanClient(Protocol):
    """What the allocator needs: this client, or one routed over Cluster/Sentinel."""

    async def evalsha(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                      *, timeout: float) -> Any: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


class RedisUnavailable(Exception):
    """Connect failure, lost connection, timeout or overload: the outcome is unknown or the
    command was never executed. Never retried by this client."""


class RedisReplyError(Exception):
    """The server answered with an error reply."""


@dataclass(frozen=True)
class Script:
    body: bytes
    sha: bytes  # sha1 hex digest of body, as ASCII bytes

    @classmethod
    def from_source(cls, source: str) -> Script:
        body = source.encode()
        return cls(body=body, sha=hashlib.sha1(body).hexdigest().encode())


_Retry = tuple[Script, bytes]  # a script and its packed EVALSHA, to send as EVAL on NOSCRIPT
# Packs one EVALSHA for a gathering's key and items; for one item, that call alone, whose reply
# is that item's own. For more, the reply must be a list with one element per item, in order.
Packer = Callable[[Any, list[Any]], bytes]


class _Gathering:
    """Calls gathered into one EVALSHA, queued like one call: it answers to `done`,
    `set_result` and `set_exception` as a future does, for all of its calls. It gives up at
    the earliest of their deadlines."""

    __slots__ = ("deadline", "futs", "items", "key", "pack", "script")

    def __init__(self, script: Script, pack: Packer, key: Any, deadline: float) -> None:
        self.script, self.pack, self.key, self.deadline = script, pack, key, deadline
        self.items: list[Any] = []
        self.futs: list[asyncio.Future[Any]] = []

    def done(self) -> bool:
        return all(f.done() for f in self.futs)

    def set_result(self, reply: Any) -> None:
        futs = self.futs
        if len(futs) == 1:
            if not futs[0].done():
                futs[0].set_result(reply)
            return
        ok = type(reply) is list and len(reply) == len(futs)
        for i, fut in enumerate(futs):
            if not fut.done():
                # an error reply (or a malformed one) is every call's answer
                fut.set_result(reply[i] if ok else reply)

    def set_exception(self, exc: BaseException) -> None:
        for fut in self.futs:
            if not fut.done():
                fut.set_exception(exc)


_Waiter = asyncio.Future[Any] | _Gathering


def bulk(value: bytes) -> bytes:
    """One RESP bulk string, for commands packed by hand."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def as_eval(script: Script, evalsha: bytes) -> bytes:
    """The EVAL twin of a packed EVALSHA of `script`: the same keys and arguments."""
    count_end = evalsha.index(b"\r\n") + 2
    head = b"$7\r\nEVALSHA\r\n" + bulk(script.sha)
    if not evalsha.startswith(head, count_end):
        raise ValueError("not a packed EVALSHA of this script")
    rest = evalsha[count_end + len(head) :]
    return evalsha[:count_end] + b"$4\r\nEVAL\r\n" + bulk(script.body) + rest


class _Connection(asyncio.Protocol):
    """One connection attempt and, once up, the connection itself. Never reused after `fail`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handshake: bytes, handshake_n: int,
                 stall_timeout: float, on_handshake_error: Callable[[str], None]) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: deque[_Waiter] = deque()
        self.calls = 0  # callers waiting on `pending` and `gathering` (max_inflight)
        self.deadlines: deque[float] = deque()  # loop time by which each pending call gives up
        self.retries: deque[_Retry | None] = deque()  # an EVALSHA's script, to EVAL on NOSCRIPT
        self.sweep_at: float | None = None
        self.sweep_handle: asyncio.TimerHandle | None = None
        self.buf = bytearray()  # user commands not yet written
        self.gathering: dict[Any, _Gathering] = {}  # gathered calls not yet packed into buf
        self.handshake = handshake  # AUTH/SELECT, written first and alone
        self.handshake_left = handshake_n
        self.ready = False  # transport up and handshake accepted: user commands may be written
        self.closed = False
        self.flush_scheduled = False
        self.progress_at = 0.0  # last reply, or when the pending queue became non-empty
        self.stall_timeout = stall_timeout
        self.on_handshake_error = on_handshake_error
        self.connect_task: asyncio.Task[None] | None = None
        self.writes = 0
        self.nbuf = 0
        # WAIT mode: one WAIT goes out after each written batch of scripts that asked for it,
        # and every one of them awaits its reply (`wait_fut`, deadline `wait_deadline`).
        self.wait_command = b""
        self.wait_fut: asyncio.Future[Any] | None = None
        self.wait_deadline = 0.0

    # -- asyncio.Protocol --
    def connection_made(self, base_transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base_transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # asyncio and uvloop set it already
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.closed:
            transport.abort()
            return
        self.transport = transport
        if self.handshake_left:
            self.transport.write(self.handshake)
        else:
            self._set_ready()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection lost" + (f": {exc}" if exc else ""))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        self.progress_at = self.loop.time()
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self.fail(f"protocol error: {e}")
                return
            if reply is False:
                return
            if self.handshake_left:
                self.handshake_left -= 1
                if type(reply) is _ReplyError:
                    self.on_handshake_error(f"connection setup failed: {reply}")
                    self.fail(f"connection setup failed: {reply}")
                    return
                if not self.handshake_left:
                    self._set_ready()
                continue
            if not pending:
                self.fail("protocol desync: reply without a pending request")
                return
            fut = pending.popleft()
            deadline = self.deadlines.popleft()
            retry = self.retries.popleft()
            self.calls -= len(fut.futs) if type(fut) is _Gathering else 1
            if fut.done():  # a timed-out or cancelled call: discard its reply
                continue
            if (retry is not None and type(reply) is _ReplyError
                    and str(reply).startswith("NOSCRIPT")):
                self.resend_as_eval(fut, deadline, retry)
                continue
            fut.set_result(reply)

    def resend_as_eval(self, fut: _Waiter, deadline: float, retry: _Retry) -> None:
        """NOSCRIPT (a restart, a failover, SCRIPT FLUSH): the script did not run, so send its
        body with EVAL for the same future and deadline. Replies stay in order: the EVAL goes
        to the back of the queue, like any new command."""
        script, evalsha = retry
        self.calls += len(fut.futs) if type(fut) is _Gathering else 1
        self.pending.append(fut)
        self.deadlines.append(deadline)
        self.retries.append(None)
        if self.sweep_at is None or deadline < self.sweep_at:
            self.watch(deadline)
        self.buf += as_eval(script, evalsha)
        self.nbuf += 1
        self.flush()

    # -- client side --
    def _set_ready(self) -> None:
        self.ready = True
        self.flush()

    def schedule_flush(self) -> None:
        self.flush_scheduled = True
        self.loop.call_soon(self.flush)

    def seal(self) -> None:
        """Pack the gathered calls into the buffer, each gathering queued as one call. Done
        before any other command is queued, so the buffer's order stays the queue's."""
        gathered, self.gathering = self.gathering, {}
        for g in gathered.values():
            try:
                packed = g.pack(g.key, g.items)
            except Exception as e:  # a bug in the caller's packer: its calls fail, not others
                self.calls -= len(g.futs)
                g.set_exception(e)
                continue
            self.buf += packed
            if not self.pending:
                self.progress_at = self.loop.time()
            self.pending.append(g)
            self.deadlines.append(g.deadline)
            self.retries.append((g.script, packed))
            if self.sweep_at is None or g.deadline < self.sweep_at:
                self.watch(g.deadline)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.gathering:
            self.seal()
        transport = self.transport
        if transport is not None and self.buf and self.ready:
            if self.wait_fut is not None:
                self.buf += self.wait_command
                self.calls += 1
                self.pending.append(self.wait_fut)
                self.deadlines.append(self.wait_deadline)
                self.retries.append(None)
                self.wait_fut = None
            buf, self.buf = self.buf, bytearray()  # never mutate what the transport may hold
            transport.write(buf)
            self.writes += 1
            self.nbuf = 0

    def watch(self, deadline: float) -> None:
        """One timer per connection, not one per call: it fires at the earliest deadline."""
        if self.sweep_at is None or deadline < self.sweep_at:
            if self.sweep_handle is not None:
                self.sweep_handle.cancel()
            self.sweep_at = deadline
            self.sweep_handle = self.loop.call_at(deadline, self.sweep)

    def sweep(self) -> None:
        """Fail every call past its deadline (its entry stays queued until its reply arrives),
        then re-arm for the earliest deadline still open."""
        self.sweep_at = self.sweep_handle = None
        now = self.loop.time()
        earliest: float | None = None
        for fut, deadline in zip(self.pending, self.deadlines, strict=True):
            if fut.done():
                continue
            if deadline <= now:
                fut.set_exception(RedisUnavailable("timeout"))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        self.check_stall()
        if earliest is not None and not self.closed:
            self.watch(earliest)

    def check_stall(self) -> None:
        if (self.pending and not self.closed
                and self.loop.time() - self.progress_at > self.stall_timeout):
            self.fail(f"no reply for more than {self.stall_timeout} s: connection aborted")

    def fail(self, message: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.ready = False
        self.buf = bytearray()
        transport, self.transport = self.transport, None
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
            self.sweep_at = self.sweep_handle = None
        self.deadlines.clear()
        self.retries.clear()
        gathered, self.gathering = list(self.gathering.values()), {}
        self.calls = 0
        for g in gathered:
            g.set_exception(RedisUnavailable(message))
        pending = self.pending
        while pending:
            fut = pending.popleft()
            if not fut.done():
                fut.set_exception(RedisUnavailable(message))
        if transport is not None:
            transport.abort()


def _read_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class PipelinedRedis:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, path: str | None = None,
                 password: str | None = None, username: str | None = None, db: int = 0,
                 connect_timeout: float = 1.0, max_inflight: int = 10_000,
                 stall_timeout: float = 2.0, wait_replicas: int = 0, wait_ms: int = 0) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db
        self.connect_timeout = connect_timeout
        self.max_inflight = max_inflight
        self.stall_timeout = stall_timeout
        self.wait_replicas = wait_replicas
        self._wait_command = _pack((b"WAIT", wait_replicas, wait_ms)) if wait_replicas else b""
        handshake: list[bytes] = []
        if password is not None:
            auth = (b"AUTH", username, password) if username else (b"AUTH", password)
            handshake.append(_pack(auth))
        if db:
            handshake.append(_pack((b"SELECT", db)))
        self._handshake = b"".join(handshake)
        self._handshake_n = len(handshake)
        self._conn: _Connection | None = None
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
        reply = await self._send(_pack(args), timeout)
        if type(reply) is _ReplyError:
            raise RedisReplyError(str(reply))
        return reply

    async def evalsha(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                      *, timeout: float) -> Any:  # noqa: ASYNC109
        """EVALSHA, falling back once to EVAL on NOSCRIPT within the same deadline. In WAIT mode
        (wait_replicas > 0) the reply counts only once a WAIT on the same connection says that
        many replicas have it; else RedisUnavailable (the script ran: the outcome is unknown)."""
        if self.wait_replicas:
            return await self._evalsha_replicated(script, keys, args, timeout)
        reply = await self.evalsha_raw(script, keys, args, timeout=timeout)
        if type(reply) is _ReplyError:
            raise RedisReplyError(str(reply))
        return reply

    def evalsha_raw(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                    *, timeout: float) -> asyncio.Future[Any]:
        """The hot path's EVALSHA: a plain future, no coroutine of its own to resume. It
        resolves to the reply, an error reply as a `hiredis.ReplyError` value; NOSCRIPT is
        handled by the connection (EVAL for the same future). Not for WAIT mode."""
        packed = _pack((b"EVALSHA", script.sha, len(keys), *keys, *args))
        return self.evalsha_packed(script, packed, timeout)

    def evalsha_packed(self, script: Script, packed: bytes, timeout: float) -> asyncio.Future[Any]:
        """evalsha_raw for an EVALSHA of `script` that the caller packed (see `bulk`)."""
        return self._send(packed, timeout, (script, packed))

    def evalsha_gathered(self, script: Script, pack: Packer, key: Any, item: Any,
                         timeout: float) -> asyncio.Future[Any]:
        """One call of `script` for `item`, gathered with the other calls of `script` and `pack`
        for the same `key` that are queued before the next write into one EVALSHA that `pack`
        makes. The future resolves to this item's part of the reply (errors as values). Not
        for WAIT mode."""
        conn = self._open_with_room()
        loop = conn.loop
        fut = loop.create_future()
        deadline = loop.time() + timeout
        g = conn.gathering.get((script.sha, pack, key))
        if g is None:
            g = conn.gathering[script.sha, pack, key] = _Gathering(script, pack, key, deadline)
        elif deadline < g.deadline:
            g.deadline = deadline
        g.items.append(item)
        g.futs.append(fut)
        conn.calls += 1
        conn.nbuf += 1
        if conn.nbuf >= _FLUSH_AT and conn.ready:
            conn.flush()
        elif not conn.flush_scheduled:
            conn.schedule_flush()  # also when not connected yet: the gathering is sealed
        return fut

    async def _evalsha_replicated(self, script: Script, keys: Sequence[bytes | str],
                                  args: Sequence[Arg], timeout: float) -> Any:  # noqa: ASYNC109
        started = asyncio.get_running_loop().time()
        body = (len(keys), *keys, *args)
        fut, wait_fut = self._send_waited(_pack((b"EVALSHA", script.sha, *body)), timeout)
        reply, acked = await fut, await wait_fut
        if type(reply) is _ReplyError and str(reply).startswith("NOSCRIPT"):
            remaining = started + timeout - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise RedisUnavailable("timeout")
            fut, wait_fut = self._send_waited(_pack((b"EVAL", script.body, *body)), remaining)
            reply, acked = await fut, await wait_fut
        if type(reply) is _ReplyError:
            raise RedisReplyError(str(reply))
        if type(acked) is _ReplyError or int(acked) < self.wait_replicas:
            raise RedisUnavailable(f"not acknowledged by {self.wait_replicas} replica(s): {acked}")
        return reply

    def _send_waited(
        self, packed: bytes, timeout: float
    ) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        """Queue a script and make sure a WAIT follows it in the same write."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._connect()
        if conn.wait_fut is None:
            conn.wait_fut = conn.loop.create_future()
            # A caller whose script failed first never awaits this one: read its outcome here
            # so asyncio does not log "Future exception was never retrieved".
            conn.wait_fut.add_done_callback(_read_outcome)
            conn.wait_command = self._wait_command
            conn.wait_deadline = conn.loop.time() + timeout
        wait_fut = conn.wait_fut
        return self._send(packed, timeout), wait_fut

    def _open_with_room(self) -> _Connection:
        """The connection (a new one if there is none), if it can take one more call."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._connect()
        if conn.calls >= self.max_inflight:
            conn.check_stall()
            raise RedisUnavailable("overloaded")
        return conn

    def _send(self, packed: bytes, timeout: float,
              retry: _Retry | None = None) -> asyncio.Future[Any]:
        """Queue one packed command; the future resolves to its reply (errors as values)."""
        conn = self._open_with_room()
        if conn.gathering:
            conn.seal()
        pending = conn.pending
        loop = conn.loop
        fut = loop.create_future()
        deadline = loop.time() + timeout
        if not pending:
            conn.progress_at = deadline - timeout
        pending.append(fut)
        conn.calls += 1
        conn.deadlines.append(deadline)
        conn.retries.append(retry)
        if conn.sweep_at is None or deadline < conn.sweep_at:
            conn.watch(deadline)
        conn.buf += packed
        conn.nbuf += 1
        if conn.ready:
            if conn.nbuf >= _FLUSH_AT:
                conn.flush()
            elif not conn.flush_scheduled:
                conn.schedule_flush()
        return fut

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
    def _connect(self) -> _Connection:
        if self._closed:
            raise RedisUnavailable("client closed")
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_after:
            raise RedisUnavailable(f"connect failed recently: {self._last_error}")
        if self._conn is not None:
            self._old_writes += self._conn.writes
        conn = _Connection(loop, self._handshake, self._handshake_n, self.stall_timeout,
                           self._connect_failed)
        self._conn = conn
        conn.connect_task = loop.create_task(self._open(conn))
        return conn

    def _connect_failed(self, message: str) -> None:
        self._last_error = message
        self._retry_after = asyncio.get_running_loop().time() + _RETRY_CONNECT_AFTER

    async def _open(self, conn: _Connection) -> None:
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
