"""WAIT mode: a script call counts only once a WAIT on the same connection says that enough
replicas have it. One WAIT goes out after each written batch of scripts that asked for one, and
every call of that batch awaits its reply: a replica round trip per batch, not per call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hiredis

from app.store.fastredis.errors import NoScript, RedisTimeout, RedisUnavailable, reply_error
from app.store.fastredis.resp import Arg, Script, pack

if TYPE_CHECKING:
    from app.store.fastredis.client import PipelinedRedis

ReplyErrorValue = hiredis.ReplyError


def _read_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class WaitMode:
    def __init__(self, replicas: int, timeout_ms: int) -> None:
        self.replicas = replicas
        self.command = pack((b"WAIT", replicas, timeout_ms))

    async def evalsha(self, client: PipelinedRedis, script: Script, keys: Sequence[bytes | str],
                      args: Sequence[Arg], timeout: float) -> Any:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        started = loop.time()
        body = (len(keys), *keys, *args)
        fut, wait_fut = self._send(client, pack((*script.command, *body)), timeout)
        reply, acked = await fut, await wait_fut
        if type(reply) is ReplyErrorValue and type(reply_error(reply)) is NoScript:
            remaining = started + timeout - loop.time()
            if remaining <= 0:
                raise RedisTimeout("timeout")
            if script.library:
                client.open_with_room().load_library(script, loop.time() + remaining)
            fut, wait_fut = self._send(client, pack((b"EVAL", script.body, *body)), remaining)
            reply, acked = await fut, await wait_fut
        if type(reply) is ReplyErrorValue:
            raise reply_error(reply)
        if type(acked) is ReplyErrorValue or int(acked) < self.replicas:
            raise RedisUnavailable(f"not acknowledged by {self.replicas} replica(s): {acked}")
        return reply

    def _send(self, client: PipelinedRedis, packed: bytes,
              timeout: float) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        """Queue a script and make sure a WAIT follows it in the same write."""
        conn = client.open_with_room()
        if conn.trailer is None:
            wait_fut = conn.loop.create_future()
            # A caller whose script failed first never awaits this one: read its outcome here
            # so asyncio does not log "Future exception was never retrieved".
            wait_fut.add_done_callback(_read_outcome)
            conn.trailer = (self.command, wait_fut, conn.loop.time() + timeout)
        wait_fut = conn.trailer[1]
        return client.send(packed, timeout), wait_fut
