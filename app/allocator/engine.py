"""The Python side of a scan: one EVALSHA of `scan.lua` through the pipelined client."""

from __future__ import annotations

from dataclasses import dataclass

from app.allocator import scripts
from app.store import keys
from app.store.fastredis import ScanClient, Script

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


class Allocator:
    def __init__(
        self, client: ScanClient, *, shebang: bool, deadline_s: float, rate_limit: int = 0
    ) -> None:
        self.client = client
        self.deadline_s = deadline_s
        self.rate_limit = rate_limit
        self.script = Script.from_source(scripts.source("scan", shebang=shebang))

    async def scan(
        self, pool_id: str, visitor_id: str, channel: str = "", client_ip: str = ""
    ) -> Decision:
        """Raises RedisUnavailable / RedisReplyError: the caller answers 503."""
        p = keys.prefix(pool_id)
        args: tuple[str | int, ...] = (p, visitor_id, channel)
        if self.rate_limit:
            args += ("", self.rate_limit, client_ip or "-")
        reply = await self.client.evalsha(
            self.script, (p + "pool", p + "v:" + visitor_id), args, timeout=self.deadline_s
        )
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

    async def probe(self) -> None:
        """Readiness: run the real script (on a pool that cannot exist), not only PING."""
        decision = await self.scan(READY_PROBE_POOL, "")
        if decision.outcome != "unknown":
            raise RuntimeError(f"readiness probe got {decision.outcome!r}")
