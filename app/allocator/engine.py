"""The Python side of a scan: one call of `scan.lua` (FCALL of its function library on Redis 7+,
else EVALSHA), sent the cheapest way the client allows. Arguments and replies are
`protocol.py`'s."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from app.allocator import scripts
from app.allocator.protocol import Call, Decision, Outcome, ScanCommands, call_args, decode
from app.store.fastredis import ScanClient, Script

log = logging.getLogger("livecode.redis")
READY_PROBE_POOL = "_readyz"  # not a valid pool id, so never a real pool


class Allocator:
    def __init__(
        self, client: ScanClient, *, shebang: bool, deadline_s: float, rate_limit: int = 0,
        function: bool | None = None,
    ) -> None:
        """`function`: call the scan as a function (Redis 7+, where `shebang` is true; the
        default there): its tables and helpers are made once, not per call (bench/NOTES.md)."""
        self.client = client
        self.deadline_s = deadline_s
        self.rate_limit = rate_limit
        source = scripts.source("scan", shebang=shebang)
        if shebang if function is None else function:
            lib = scripts.library("scan")
            self.script = Script.from_source(source, function=lib.function, library=lib.source)
        else:
            self.script = Script.from_source(source)
        # A client that takes packed and gathered calls hands back a bare future: one coroutine
        # less to resume per scan (bench/NOTES.md); its error replies come back as values.
        self._plain = client.pipelined()
        self._packed = ScanCommands(self.script)
        self._batch = self._packed.batch

    async def preload(self, admin: Any) -> None:
        """Load the scan's function library through the admin client (redis-py; on a cluster
        it goes to every primary), so that the first scans do not find it missing. Only a
        saving: a server that lacks it (a restart, a node added later) has each connection load
        it on its first miss, and where loading is refused (an ACL user without FUNCTION) every
        scan goes as EVAL."""
        if not self.script.library:
            return
        try:
            await admin.function_load(self.script.library.decode(), replace=True)
        except Exception as exc:  # the lazy load, or EVAL, covers it
            log.warning("could not load the scan function at start-up: %r", exc)

    def submit(
        self, pool_id: str, visitor_id: str, channel: str = "", client_ip: str = "",
        *, fresh: bool = False,
    ) -> Awaitable[Any]:
        """Start one scan; the awaitable gives the script's raw reply (`protocol.decode`) or
        raises RedisUnavailable / RedisReplyError. `fresh`: the visitor id was just made, so
        there is no sticky record to look up."""
        plain = self._plain
        if plain is not None and not self.rate_limit and len(visitor_id) == 22:
            if fresh:
                # New visitors' scans of a pool queued before the same write go out as one
                # script call: Redis reads the pool once for all of them (bench/NOTES.md).
                item = (visitor_id.encode(), channel.encode())
                return plain.evalsha_gathered(self.script, self._batch, pool_id, item,
                                              self.deadline_s)
            if not channel:
                packed = self._packed(pool_id, visitor_id, fresh)
                return plain.evalsha_packed(self.script, packed, self.deadline_s)
        ks, args = call_args(pool_id, visitor_id, channel, Call.NEW if fresh else Call.KNOWN,
                             self.rate_limit, client_ip)
        if plain is not None:
            return plain.evalsha_raw(self.script, ks, args, timeout=self.deadline_s)
        return self.client.evalsha(self.script, ks, args, timeout=self.deadline_s)

    async def scan(
        self, pool_id: str, visitor_id: str, channel: str = "", client_ip: str = "",
        *, fresh: bool = False,
    ) -> Decision:
        """Raises RedisUnavailable / RedisReplyError: the caller answers 503."""
        return decode(await self.submit(pool_id, visitor_id, channel, client_ip, fresh=fresh))

    async def probe(self) -> None:
        """Readiness: run the real script (on a pool that cannot exist), not only PING."""
        decision = await self.scan(READY_PROBE_POOL, "")
        if decision.outcome is not Outcome.UNKNOWN:
            raise RuntimeError(f"readiness probe got {decision.outcome!r}")
