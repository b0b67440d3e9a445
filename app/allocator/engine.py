"""The Python side of a scan: one EVALSHA of `scan.lua` through the pipelined client."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from app.allocator import scripts
from app.store import keys
from app.store.fastredis import PipelinedRedis, RedisReplyError, ScanClient, Script, bulk

READY_PROBE_POOL = "_readyz"  # not a valid pool id, so never a real pool


@dataclass(slots=True)
class Decision:
    outcome: str  # new | sticky | fallback | paused | not_started | ended | unknown | limited
    group_id: str = ""
    url: str = ""
    mode: str = "redirect"
    pool_name: str = ""
    fallback_url: str = ""
    fallback_message: str = ""
    fallback_contact: str = ""
    retry_after: int = 0


class _ScanCommands:
    """scan.lua's EVALSHA for the common calls (no rate limit), packed by hand:
    hiredis.pack_command takes ~1.6 us for one, this ~0.5 (bench/NOTES.md). Everything but the
    visitor ids and channels is built once per pool; visitor ids are always 22 characters
    (VISITOR_ID_RE)."""

    def __init__(self, sha: bytes) -> None:
        self.sha = sha
        self.parts = lru_cache(maxsize=4096)(self._parts)

    def _parts(self, pool_id: str) -> tuple[bytes, bytes, bytes, bytes]:
        p = keys.prefix(pool_id).encode()
        pool_key, prefix = bulk(p + b"pool"), bulk(p)
        sticky = b"$%d\r\n" % (len(p) + 24) + p + b"v:"  # + visitor id + CRLF
        before = b"*9\r\n$7\r\nEVALSHA\r\n" + bulk(self.sha) + bulk(b"2") + pool_key + sticky
        return before, pool_key, sticky, prefix

    def __call__(self, pool_id: str, visitor_id: str, fresh: bool) -> bytes:
        """One scan without a channel."""
        before, _, _, prefix = self.parts(pool_id)
        v = visitor_id.encode()
        return before + v + b"\r\n" + prefix + b"$22\r\n" + v + (_FRESH if fresh else _KNOWN)

    def batch(self, pool_id: str, items: list[tuple[bytes, bytes]]) -> bytes:
        """New visitors' scans of one pool, (visitor id, channel) each: one scan alone, or
        scan.lua's batch form, whose reply is a list of theirs."""
        before, pool_key, sticky, prefix = self.parts(pool_id)
        (v1, ch1), n = items[0], len(items)
        if n == 1:
            return before + v1 + b"\r\n" + prefix + b"$22\r\n" + v1 + b"\r\n" + bulk(ch1) + _N
        return b"".join((
            b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 * n + 6), bulk(self.sha), bulk(b"%d" % (n + 1)),
            pool_key, *[sticky + v + b"\r\n" for v, _ in items],
            prefix, b"$22\r\n", v1, b"\r\n", bulk(ch1), _B,
            *[b"$22\r\n" + v + b"\r\n" + bulk(ch) for v, ch in items[1:]],
        ))


_N, _B = bulk(b"n"), bulk(b"b")  # ARGV[4]: a new visitor; a batch of them
_FRESH = b"\r\n" + bulk(b"") + _N  # ARGV[3] channel, ARGV[4] mode
_KNOWN = b"\r\n" + bulk(b"") + bulk(b"")


class Allocator:
    def __init__(
        self, client: ScanClient, *, shebang: bool, deadline_s: float, rate_limit: int = 0
    ) -> None:
        self.client = client
        self.deadline_s = deadline_s
        self.rate_limit = rate_limit
        self.script = Script.from_source(scripts.source("scan", shebang=shebang))
        # The plain pipelined client hands back a bare future: one coroutine less to resume
        # per scan (bench/NOTES.md). Its error replies come back as values, not raised.
        self._plain = (
            client if isinstance(client, PipelinedRedis) and not client.wait_replicas else None
        )
        self._packed = _ScanCommands(self.script.sha)
        self._batch = self._packed.batch

    def submit(
        self, pool_id: str, visitor_id: str, channel: str = "", client_ip: str = "",
        *, fresh: bool = False,
    ) -> Awaitable[Any]:
        """Start one scan; the awaitable gives the script's raw reply (see `decide`) or raises
        RedisUnavailable / RedisReplyError. `fresh`: the visitor id was just made, so there is
        no sticky record to look up."""
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
        p = keys.prefix(pool_id)
        args: tuple[str | int, ...] = (p, visitor_id, channel, "n" if fresh else "")
        if self.rate_limit:
            args += (self.rate_limit, client_ip or "-")
        ks = (p + "pool", p + "v:" + visitor_id)
        if plain is not None:
            return plain.evalsha_raw(self.script, ks, args, timeout=self.deadline_s)
        return self.client.evalsha(self.script, ks, args, timeout=self.deadline_s)

    async def scan(
        self, pool_id: str, visitor_id: str, channel: str = "", client_ip: str = "",
        *, fresh: bool = False,
    ) -> Decision:
        """Raises RedisUnavailable / RedisReplyError: the caller answers 503."""
        return decide(await self.submit(pool_id, visitor_id, channel, client_ip, fresh=fresh))

    async def probe(self) -> None:
        """Readiness: run the real script (on a pool that cannot exist), not only PING."""
        decision = await self.scan(READY_PROBE_POOL, "")
        if decision.outcome != "unknown":
            raise RuntimeError(f"readiness probe got {decision.outcome!r}")


def decide(reply: Any) -> Decision:
    """The script's reply as a Decision; an error reply raises RedisReplyError."""
    if type(reply) is not list:
        raise RedisReplyError(str(reply))
    r = [x.decode() for x in reply]
    outcome = r[0]
    if outcome in ("new", "sticky"):
        return Decision(outcome, group_id=r[1], url=r[2], mode=r[3], pool_name=r[4])
    if outcome == "fallback":
        return Decision(
            outcome, pool_name=r[1], fallback_url=r[2], fallback_message=r[3],
            fallback_contact=r[4],
        )
    if outcome == "unknown":
        return Decision(outcome)
    if outcome == "limited":
        return Decision(outcome, retry_after=int(r[1]))
    return Decision(outcome, pool_name=r[1])
