"""A small auto-pipelining asyncio Redis client for the hot scan path (one script call per request).

One connection per client. Every command issued during one event-loop turn goes out in a single
`transport.write`; replies resolve the pending futures in FIFO order. Failures are reported as
`RedisUnavailable` (outcome unknown or not executed; `RedisTimeout` past a deadline) or
`RedisReplyError` (the server said no; `NoScript`, `TopologyChanged`). Nothing is retried except
EVALSHA -> EVAL after NOSCRIPT, which is safe: the script did not run. A script that is also
a function library (`Script.function`) is called with FCALL instead; when the server lacks
the function, that call goes as EVAL and the library is loaded for the next ones. Calls of one
script that share a key and are queued before the same write can be gathered into one call
(`evalsha_gathered`): the scan path sends one script call per pool per write.

    resp.py        packing commands, scripts
    errors.py      error replies as exception types, mapped once
    connection.py  one connection: write batching, the reply queue, deadlines, NOSCRIPT,
                   loading a missing function library
    gathering.py   calls gathered into one EVALSHA
    waitmode.py    WAIT after each written batch of scripts
    client.py      PipelinedRedis: connecting, the calls

RESP2 request/reply commands only: no SUBSCRIBE, MONITOR or CLIENT REPLY, and avoid blocking
commands (BLPOP...), which would hold up every call queued behind them on the shared connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from app.store.fastredis.client import FLUSH_AT, PipelinedRedis
from app.store.fastredis.errors import (
    NoScript,
    RedisReplyError,
    RedisTimeout,
    RedisUnavailable,
    TopologyChanged,
    reply_error,
)
from app.store.fastredis.gathering import Packer
from app.store.fastredis.resp import Arg, Script, as_eval, bulk


class ScanClient(Protocol):
    """What the allocator needs: this client, or one routed over Cluster/Sentinel."""

    async def evalsha(self, script: Script, keys: Sequence[bytes | str], args: Sequence[Arg],
                      *, timeout: float) -> Any: ...  # noqa: ASYNC109

    def pipelined(self) -> PipelinedRedis | None:
        """The client to send packed and gathered calls through, when there is one."""
        ...

    async def close(self) -> None: ...


__all__ = [
    "FLUSH_AT", "Arg", "NoScript", "Packer", "PipelinedRedis", "RedisReplyError",
    "RedisTimeout", "RedisUnavailable", "ScanClient", "Script", "TopologyChanged", "as_eval",
    "bulk", "reply_error",
]
