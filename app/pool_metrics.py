"""Per-pool Prometheus metrics, read from Redis when /metrics is scraped, so they are the same
whichever worker answers: room and capacity, groups by state, the time to exhaustion at the
current rate, the next code expiry, whether the pool takes scans, and its scans by outcome.

One script call per pool (app/allocator/pool_gauges.lua), pipelined 500 at a time, and one more
per GAUGE_SLOTS groups past the first for a pool that has more of them; the result is
kept for `cache_s`, so that several Prometheus servers or a fast scrape interval cost one read
of every pool per period (bench/: the cost of a scrape of 10,000 pools).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.stats.forecast import OpenGroup, simulate
from app.store import keys
from app.store.pools import PoolStore
from app.store.schema import OUTCOME_FIELDS
from app.tasks import raise_if_cancelled

STATES = ("open", "full", "expired", "disabled")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _Samples(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class PoolMetrics:
    def __init__(self, store: PoolStore, cache_s: float = 10.0) -> None:
        self.store = store
        self.cache_s = cache_s
        self._text = b""
        self._at = -math.inf
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        """The per-pool metrics in Prometheus' text format, at most `cache_s` old."""
        async with self._lock:
            if time.monotonic() - self._at >= self.cache_s:
                registry = CollectorRegistry(auto_describe=False)
                registry.register(_Samples(await self.families()))
                self._text = generate_latest(registry)
                self._at = time.monotonic()
            return self._text

    async def families(self) -> list[Metric]:
        r = self.store.r
        script = await self.store.pipelined_script("pool_gauges")
        ids = [_s(p) for p in await r.zrange(keys.POOLS_INDEX, 0, -1)]
        now_ms = int(time.time() * 1000)
        room = GaugeMetricFamily("livecode_pool_room", "Places left in the pool's enabled, "
                                 "unexpired groups", labels=["pool"])
        capacity = GaugeMetricFamily("livecode_pool_capacity", "Capacity of the pool's "
                                     "enabled, unexpired groups", labels=["pool"])
        groups = GaugeMetricFamily("livecode_pool_groups", "The pool's groups by state",
                                   labels=["pool", "state"])
        exhaustion = GaugeMetricFamily(
            "livecode_pool_exhaustion_seconds", "Estimated seconds until the pool has no room "
            "at the rate of the last 5 minutes, counting codes that expire first (+Inf: not "
            "within a year: no allocations lately, and a group that never expires)",
            labels=["pool"])
        next_expiry = GaugeMetricFamily(
            "livecode_pool_next_expiry_seconds", "Seconds until the earliest expiry among the "
            "pool's open groups (+Inf: none expires)", labels=["pool"])
        active = GaugeMetricFamily("livecode_pool_active", "1 when the pool takes scans "
                                   "(active and within its schedule)", labels=["pool"])
        exhausted = GaugeMetricFamily("livecode_pool_exhausted", "1 while the pool is "
                                      "exhausted (scans get the fallback)", labels=["pool"])
        scans = CounterMetricFamily("livecode_pool_scans", "Scans of the pool by outcome, "
                                    "since it was made", labels=["pool", "outcome"])
        for start in range(0, len(ids), 500):
            raise_if_cancelled()  # the scrape's bound: redis-py may have swallowed its cancel
            chunk = ids[start : start + 500]
            async with r.pipeline(transaction=False) as pipe:
                for pool_id in chunk:
                    args: list[str | int] = [keys.prefix(pool_id), now_ms // 60000, 1]
                    await script(keys=[keys.pool(pool_id)], args=args,
                                 client=pipe)  # type: ignore[arg-type]
                replies = await pipe.execute()
            for pool_id, first in zip(chunk, replies, strict=True):
                reply = await _the_rest(script, pool_id, first, now_ms) if first else None
                if not reply:  # deleted meanwhile
                    continue
                (status, vf, vu, rm, cap, exh, nexp, strategy, states, totals, recent,
                 expiring, _) = reply
                status, vf, vu = _s(status), _s(vf), _s(vu)
                takes = status == "active" and (not vf or int(vf) <= now_ms) and (
                    not vu or int(vu) > now_ms)
                active.add_metric([pool_id], 1.0 if takes else 0.0)
                exhausted.add_metric([pool_id], 1.0 if _s(exh) == "1" else 0.0)
                room_left = int(_s(rm) or 0)
                room.add_metric([pool_id], room_left)
                capacity.add_metric([pool_id], int(_s(cap) or 0))
                for state, n in zip(STATES, states, strict=True):
                    groups.add_metric([pool_id, state], int(n))
                nexp_s = _s(nexp)
                next_expiry.add_metric([pool_id], max((int(nexp_s) - now_ms) / 1000, 0.0)
                                       if nexp_s else math.inf)
                rate = int(recent) / (4 + (now_ms % 60000) / 60000) if takes else 0.0
                exhaustion.add_metric([pool_id], _exhaustion_s(
                    _s(strategy) or "fill", room_left, rate, expiring, now_ms))
                fields = {_s(k): int(v) for k, v in zip(totals[::2], totals[1::2],
                                                         strict=True)}
                legacy = sum(v for k, v in fields.items() if k.startswith("n:"))
                for outcome in OUTCOME_FIELDS:
                    n = fields.get(outcome, 0) + (legacy if outcome == "new" else 0)
                    scans.add_metric([pool_id, outcome], n)
        dead = GaugeMetricFamily("livecode_webhook_dead_letters", "Webhook deliveries given up "
                                 "after their retries, kept to be redelivered")
        dead.add_metric([], int(await r.zcard(keys.WEBHOOKS_DEAD)))
        return [room, capacity, groups, exhaustion, next_expiry, active, exhausted, scans, dead]


async def _the_rest(script: Any, pool_id: str, reply: list[Any], now_ms: int) -> list[Any] | None:
    """A pool of more groups than one pool_gauges call reads (GAUGE_SLOTS): the calls for
    the rest of its slots, one round trip each, added to the first call's figures. None: the
    pool was deleted meanwhile."""
    reply = list(reply)
    while int(reply[12]):
        raise_if_cancelled()
        more = await script(keys=[keys.pool(pool_id)],
                            args=[keys.prefix(pool_id), now_ms // 60000, int(reply[12])])
        if not more:
            return None
        reply[3] = int(reply[3]) + int(more[3])  # room
        reply[4] = int(reply[4]) + int(more[4])  # capacity
        soonest = [int(_s(x)) for x in (reply[6], more[6]) if _s(x)]
        reply[6] = str(min(soonest)) if soonest else ""  # next expiry
        reply[8] = [int(a) + int(b) for a, b in zip(reply[8], more[8], strict=True)]
        reply[11] = list(reply[11]) + list(more[11])  # the open groups that expire
        reply[12] = more[12]
    return reply


def _exhaustion_s(strategy: str, room: int, rate_per_min: float, expiring: list[Any],
                  now_ms: int) -> float:
    if not expiring:  # no open group expires: every place fills, in room / rate
        if room <= 0:
            return 0.0
        return room / rate_per_min * 60 if rate_per_min > 0 else math.inf
    groups = []
    for i in range(0, len(expiring), 6):
        gid, left, exp, weight, cap, pos = expiring[i : i + 6]
        exp_s = _s(exp)
        groups.append(OpenGroup(
            _s(gid), int(left), (int(exp_s) - now_ms) / 60000 if exp_s else None,
            weight=int(_s(weight)), capacity=int(_s(cap)), position=int(_s(pos))))
    minutes = simulate(strategy, groups, rate_per_min).minutes_to_exhaustion
    return math.inf if minutes is None else minutes * 60
