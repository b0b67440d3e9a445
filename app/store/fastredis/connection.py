"""One connection and its reply queue: commands queued during a loop turn leave in one write
(or every `flush_at` commands), replies resolve their waiters in FIFO order, each call gives up
at its deadline, and a stalled connection is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis

from app.store.fastredis.errors import NoScript, RedisTimeout, RedisUnavailable, reply_error
from app.store.fastredis.gathering import Gathering
from app.store.fastredis.resp import Script, as_eval

ReplyErrorValue = hiredis.ReplyError
Waiter = asyncio.Future[Any] | Gathering
Retry = tuple[Script, bytes]  # a script and its packed call, to send as EVAL on NOSCRIPT
log = logging.getLogger("livecode.redis")


class Connection(asyncio.Protocol):
    """One connection attempt and, once up, the connection itself. Never reused after `fail`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handshake: bytes, handshake_n: int,
                 stall_timeout: float, flush_at: int,
                 on_handshake_error: Callable[[str], None]) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: deque[Waiter] = deque()
        self.calls = 0  # callers waiting on `pending` and `gathering` (max_inflight)
        self.deadlines: deque[float] = deque()  # loop time by which each pending call gives up
        self.retries: deque[Retry | None] = deque()  # an EVALSHA's script, to EVAL on NOSCRIPT
        self.sweep_at: float | None = None
        self.sweep_handle: asyncio.TimerHandle | None = None
        self.buf = bytearray()  # commands not yet written
        self.nbuf = 0
        self.flush_at = flush_at
        self.gathering: dict[Any, Gathering] = {}  # gathered calls not yet packed into buf
        # A command written after each batch that asked for one (WAIT mode's WAIT), whose
        # reply every caller of that batch awaits: (command, future, deadline).
        self.trailer: tuple[bytes, asyncio.Future[Any], float] | None = None
        self.handshake = handshake  # AUTH/SELECT, written first and alone
        self.handshake_left = handshake_n
        self.ready = False  # transport up and handshake accepted: commands may be written
        self.closed = False
        self.flush_scheduled = False
        self.progress_at = 0.0  # last reply, or when the pending queue became non-empty
        self.stall_timeout = stall_timeout
        self.on_handshake_error = on_handshake_error
        self.connect_task: asyncio.Task[None] | None = None
        self.writes = 0
        self.loading = False  # a FUNCTION LOAD is on its way (load_library)

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
                if type(reply) is ReplyErrorValue:
                    self.on_handshake_error(f"connection setup failed: {reply}")
                    self.fail(f"connection setup failed: {reply}")
                    return
                if not self.handshake_left:
                    self._set_ready()
                continue
            if not pending:
                self.fail("protocol desync: reply without a pending request")
                return
            waiter = pending.popleft()
            deadline = self.deadlines.popleft()
            retry = self.retries.popleft()
            self.calls -= waiter.calls if type(waiter) is Gathering else 1
            if waiter.done():  # a timed-out or cancelled call: discard its reply
                continue
            if (retry is not None and type(reply) is ReplyErrorValue
                    and type(reply_error(reply)) is NoScript):
                self.resend_as_eval(waiter, deadline, retry)
                continue
            waiter.set_result(reply)

    def resend_as_eval(self, waiter: Waiter, deadline: float, retry: Retry) -> None:
        """NOSCRIPT: the script did not run, so send its body with EVAL for the same waiter
        and deadline. Replies stay in order: the EVAL goes to the back of the queue, like any
        new command."""
        script, packed = retry
        if script.library:
            self.load_library(script, deadline)
        self.queue(as_eval(script, packed), waiter, deadline, None)
        self.flush()

    def load_library(self, script: Script, deadline: float) -> None:
        """The server lacks the script's function (a restart without persistence, FUNCTION
        FLUSH, a cluster node that never had it): load it for the calls that follow, once at
        a time. The call that found it missing goes as EVAL meanwhile."""
        if self.loading:
            return
        self.loading = True
        fut = self.loop.create_future()
        fut.add_done_callback(self._loaded)
        self.queue(script.load_command(), fut, deadline, None)

    def _loaded(self, fut: asyncio.Future[Any]) -> None:
        self.loading = False
        if fut.cancelled():
            return
        outcome = fut.exception() or fut.result()
        if type(outcome) is ReplyErrorValue:  # scans still run, each as FCALL then EVAL
            log.warning("could not load the scan function, so each scan goes as EVAL after "
                        "it (LIVECODE_SCAN_FUNCTION=false calls the script directly): %s",
                        outcome)

    # -- queueing and writing --
    def queue(self, packed: bytes, waiter: Waiter, deadline: float, retry: Retry | None) -> None:
        """Put one packed command in the buffer for `waiter` (a future, or a gathering)."""
        if not self.pending:
            self.progress_at = self.loop.time()
        self.pending.append(waiter)
        self.calls += waiter.calls if type(waiter) is Gathering else 1
        self.deadlines.append(deadline)
        self.retries.append(retry)
        if self.sweep_at is None or deadline < self.sweep_at:
            self.watch(deadline)
        self.buf += packed
        self.nbuf += 1

    def wrote_one(self) -> None:
        """A call was queued: write at `flush_at` commands, else at the end of the loop turn."""
        if self.ready:
            if self.nbuf >= self.flush_at:
                self.flush()
            elif not self.flush_scheduled:
                self.schedule_flush()

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
                self.calls -= g.calls
                g.set_exception(e)
                continue
            self.calls -= g.calls  # counted when gathered; queue() counts them again
            self.queue(packed, g, g.deadline, (g.script, packed))

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.gathering:
            self.seal()
        transport = self.transport
        if transport is not None and self.buf and self.ready:
            if self.trailer is not None:
                command, fut, deadline = self.trailer
                self.trailer = None
                self.queue(command, fut, deadline, None)
            buf, self.buf = self.buf, bytearray()  # never mutate what the transport may hold
            transport.write(buf)
            self.writes += 1
            self.nbuf = 0

    # -- deadlines and failure --
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
        for waiter, deadline in zip(self.pending, self.deadlines, strict=True):
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(RedisTimeout("timeout"))
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
        waiters: list[Waiter] = [*gathered, *self.pending]
        self.pending.clear()
        if self.trailer is not None:
            waiters.append(self.trailer[1])
            self.trailer = None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(RedisUnavailable(message))
        if transport is not None:
            transport.abort()
