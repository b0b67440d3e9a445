"""The allocation script against a real Redis: every strategy, stickiness, expiry, schedule,
exactness under concurrency, idempotent retries, and cost that does not grow with pool size.

Every test runs over each of the scan path's clients (tests/helpers.py: SCAN_CLIENTS), as one
conformance suite over every backend: the plain pipelined client (the allocator's fast paths),
WAIT mode on a primary with a real replica, and Redis Cluster. Tests that count the commands of
one server are plain_client_only. Expiry never waits on the clock: expire_groups() gives indexed
groups a past expiry, the state the clock would leave."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.allocator import scripts
from app.allocator.protocol import Call, call_args, decode
from app.schemas import GroupCreate, GroupUpdate, PoolUpdate
from app.store import keys
from app.store.schema import MAX_CHANNELS, POOL
from tests.helpers import (
    STRATEGIES,
    Core,
    allocation_snapshot,
    counts,
    expire_groups,
    flush_scripts_async,
    script_calls,
    seed,
    snapshot,
)

pytestmark = pytest.mark.every_scan_client


def visitor() -> str:
    return secrets.token_urlsafe(16)


async def scan_many(core: Core, n: int, pool_id: str = "pool-a") -> list[str]:
    """n scans by n distinct visitors, one after the other; the group id or the outcome."""
    out = []
    for _ in range(n):
        d = await core.allocator.scan(pool_id, visitor())
        out.append(d.group_id if d.outcome == "new" else d.outcome)
    return out


async def test_fill_fills_in_order_then_falls_back(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 2}, {"capacity": 3}, {"capacity": 1}])
    assert await scan_many(core, 8) == ["g1", "g1", "g2", "g2", "g2", "g3", "fallback", "fallback"]
    assert await counts(core.redis) == {"g1": 2, "g2": 3, "g3": 1}
    totals = await core.store.statistics.totals("pool-a")
    assert (totals.new, totals.fallback, totals.scans) == (6, 2, 8)


async def test_round_robin_rotates_and_skips_full(core: Core) -> None:
    await seed(core.store, strategy="round_robin",
               groups=[{"capacity": 3}, {"capacity": 1}, {"capacity": 3}])
    assert await scan_many(core, 8) == ["g1", "g2", "g3", "g1", "g3", "g1", "g3", "fallback"]


async def test_least_filled_picks_lowest_fill_ratio(core: Core) -> None:
    await seed(core.store, strategy="least_filled",
               groups=[{"capacity": 10}, {"capacity": 20}, {"capacity": 10}])
    await scan_many(core, 20)
    assert await counts(core.redis) == {"g1": 5, "g2": 10, "g3": 5}


async def test_weighted_follows_weights_and_skips_full(core: Core) -> None:
    await seed(core.store, strategy="weighted", groups=[
        {"capacity": 10_000, "weight": 1}, {"capacity": 10_000, "weight": 3},
        {"capacity": 5, "weight": 100},
    ])
    got = Counter(await scan_many(core, 1205))
    assert got["g3"] == 5  # full after 5, never picked again despite its weight
    share = got["g2"] / (got["g1"] + got["g2"])
    assert 0.70 < share < 0.80, got  # expected 0.75; 1,200 draws give sd ~0.013
    assert got["fallback"] == 0


async def test_weighted_draws_exactly_the_group_the_cumulative_weights_name(core: Core) -> None:
    """300 groups (the Fenwick descent reads 4 levels per HMGET, so several rounds), random
    weights, some disabled: every draw is the group whose cumulative weight range holds
    r = floor(x / 2^32 * total), x being the first 32 bits of SHA-1(the pool's salt + the
    visitor id): a visitor cannot choose its group by choosing its id."""
    rng = random.Random(7)
    specs = [{"capacity": 100_000, "weight": rng.randint(1, 9),
              "enabled": rng.random() > 0.2} for _ in range(300)]
    await seed(core.store, strategy="weighted", groups=specs)
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    live = [(f"g{i + 1}", g["weight"]) for i, g in enumerate(specs) if g["enabled"]]
    total = sum(w for _, w in live)
    salt = (await core.redis.hget(keys.pool("pool-a"), POOL.stored("draw_salt"))).decode()
    assert len(salt) == 32
    for _ in range(150):
        vid = "".join(rng.choice(b64) for _ in range(22))
        x = int(hashlib.sha1((salt + vid).encode()).hexdigest()[:8], 16)
        r = min(math.floor(x / 2**32 * total), total - 1)
        upto, expected = 0, ""
        for gid, w in live:
            upto += w
            if r < upto:
                expected = gid
                break
        d = await core.allocator.scan("pool-a", vid)
        assert (d.outcome, d.group_id) == ("new", expected), (vid, r)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_disabled_and_expired_groups_are_skipped(core: Core, strategy: str) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    await seed(core.store, strategy=strategy, groups=[
        {"capacity": 5, "enabled": False},
        {"capacity": 5, "expires_at": past},
        {"capacity": 5},
    ])
    assert set(await scan_many(core, 7)) == {"g3", "fallback"}
    assert await counts(core.redis) == {"g1": 0, "g2": 0, "g3": 5}


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_group_that_expires_later_is_skipped_and_purged(core: Core, strategy: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, strategy=strategy,
               groups=[{"capacity": 100, "expires_at": later}, {"capacity": 100}])
    assert await core.redis.zscore(keys.prefix("pool-a") + "av", "g1") is not None
    await expire_groups(core.redis, "pool-a", ["g1"])
    assert set(await scan_many(core, 20)) == {"g2"}
    assert await core.redis.zscore(keys.prefix("pool-a") + "av", "g1") is None
    assert await core.redis.zscore(keys.prefix("pool-a") + "ex", "g1") is None


async def test_earliest_expiry_follows_every_change(core: Core) -> None:
    """A scan reads the `ex` zset only once the pool's `exn` (its earliest score) has passed, so
    `exn` must follow every change: expiries set and cleared, groups filling, deleted, purged."""
    p = keys.prefix("pool-a")

    async def exn() -> float | None:
        raw = await core.redis.hget(keys.pool("pool-a"), "exn")
        return float(raw) if raw is not None else None

    async def earliest() -> float | None:
        head = await core.redis.zrange(p + "ex", 0, 0, withscores=True)
        return head[0][1] if head else None

    now = datetime.now(UTC)
    soon, later, latest = (now + timedelta(minutes=m) for m in (30, 60, 120))
    await seed(core.store, groups=[{"capacity": 1, "expires_at": later},
                                   {"capacity": 100, "expires_at": soon},
                                   {"capacity": 100, "expires_at": latest}, {"capacity": 100}])
    assert await exn() == await earliest() == soon.timestamp() * 1000 // 1
    await core.store.update_group("pool-a", "g2", GroupUpdate(expires_at=None))
    assert await exn() == await earliest() == later.timestamp() * 1000 // 1
    assert await scan_many(core, 1) == ["g1"]  # g1 fills and leaves the indexes
    assert await exn() == await earliest() == latest.timestamp() * 1000 // 1
    await core.store.delete_group("pool-a", "g3")
    assert await exn() is None and await earliest() is None
    await core.store.update_group("pool-a", "g4", GroupUpdate(expires_at=soon))
    assert await exn() == await earliest() == soon.timestamp() * 1000 // 1
    await expire_groups(core.redis, "pool-a", ["g4"])
    assert await scan_many(core, 3) == ["g2"] * 3  # g4 expired: skipped and purged
    assert await exn() is None and await earliest() is None


def vid_drawing(salt: str, low: bool) -> str:
    """A visitor id whose weighted draw lies in the low (or high) half of the total weight:
    SHA-1(salt + id)'s first 32 bits below (or from) 2^31."""
    while True:
        vid = visitor()
        x = int(hashlib.sha1((salt + vid).encode()).hexdigest()[:8], 16)
        if (x < 2**31) == low:
            return vid


# The draw is r = floor(x / 2^32 * total) over the open weights, here g2 and g3 (1 each): the
# low half draws g2, the high half g3. Counting the expired g1 and g4 (5 each) would land most
# draws on them.
@pytest.mark.parametrize("low,expected", [(True, "g2"), (False, "g3")])
async def test_weighted_pick_excludes_expired_slots_in_the_same_scan(
    core: Core, low: bool, expected: str
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, strategy="weighted", groups=[
        {"expires_at": later, "weight": 5}, {"weight": 1}, {"weight": 1},
        {"expires_at": later, "weight": 5},
    ])
    salt = (await core.redis.hget(keys.pool("pool-a"), POOL.stored("draw_salt"))).decode()
    await expire_groups(core.redis, "pool-a", ["g1", "g4"])
    for _ in range(5):
        d = await core.allocator.scan("pool-a", vid_drawing(salt, low))
        assert (d.outcome, d.group_id) == ("new", expected)


async def test_sticky_rescan_returns_same_group_without_consuming(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 1}, {"capacity": 5}])
    v = visitor()
    first = await core.allocator.scan("pool-a", v)
    assert (first.outcome, first.group_id) == ("new", "g1")  # g1 is now full
    for _ in range(3):
        again = await core.allocator.scan("pool-a", v)
        assert (again.outcome, again.group_id, again.url) == ("sticky", "g1", first.url)
    assert await counts(core.redis) == {"g1": 1, "g2": 0}
    ttl = await core.redis.ttl(keys.sticky("pool-a", v))
    assert 7 * 24 * 3600 - 5 <= ttl <= 7 * 24 * 3600


@pytest.mark.parametrize("fresh", [True, False])
async def test_sticky_record_lives_as_long_as_the_pool_says(core: Core, fresh: bool) -> None:
    """The pool's sticky_ttl_s, not the default, is the sticky record's TTL, for a visitor id
    made by this request and for one that came with a cookie."""
    await seed(core.store, sticky_ttl_s=600)
    v = visitor()
    assert (await core.allocator.scan("pool-a", v, fresh=fresh)).outcome == "new"
    assert 595 <= await core.redis.ttl(keys.sticky("pool-a", v)) <= 600


async def test_sticky_visitor_gets_new_group_when_theirs_is_disabled(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 5}, {"capacity": 5}])
    v = visitor()
    assert (await core.allocator.scan("pool-a", v)).group_id == "g1"
    await core.store.update_group("pool-a", "g1", GroupUpdate(enabled=False))
    d = await core.allocator.scan("pool-a", v)
    assert (d.outcome, d.group_id) == ("new", "g2")
    assert (await core.allocator.scan("pool-a", v)).outcome == "sticky"
    assert await counts(core.redis) == {"g1": 1, "g2": 1}


async def test_sticky_visitor_gets_new_group_when_theirs_expired(core: Core) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, groups=[{"expires_at": later}, {}])
    v = visitor()
    assert (await core.allocator.scan("pool-a", v)).group_id == "g1"
    await expire_groups(core.redis, "pool-a", ["g1"])
    d = await core.allocator.scan("pool-a", v)
    assert (d.outcome, d.group_id) == ("new", "g2")


async def test_sticky_visitor_gets_new_group_when_theirs_is_deleted(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 5}, {"capacity": 5}])
    v = visitor()
    assert (await core.allocator.scan("pool-a", v)).group_id == "g1"
    assert await core.store.visitor_group("pool-a", v) == "g1"
    await core.store.delete_group("pool-a", "g1")
    await core.store.add_groups("pool-a", [GroupCreate(id="g1", url="https://t.me/+new")])
    d = await core.allocator.scan("pool-a", v)  # the new g1 is another group: a new pick
    assert (d.outcome, d.group_id) == ("new", "g2")
    assert await core.store.visitor_group("pool-a", v) == "g2"


async def test_retried_scan_counts_once(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 10}])
    v = visitor()
    results = await asyncio.gather(*(core.allocator.scan("pool-a", v) for _ in range(20)))
    assert sorted(r.outcome for r in results) == ["new"] + ["sticky"] * 19
    assert await counts(core.redis) == {"g1": 1}


async def test_unknown_pool_writes_nothing(core: Core) -> None:
    await seed(core.store)
    before = await snapshot(core.redis)
    d = await core.allocator.scan("no-such-pool", visitor(), "poster")
    assert d.outcome == "unknown"
    assert await snapshot(core.redis) == before


@pytest.mark.parametrize(
    "update,outcome",
    [
        ({"status": "paused"}, "paused"),
        ({"valid_from": datetime.now(UTC) + timedelta(hours=1)}, "not_started"),
        ({"valid_until": datetime.now(UTC) - timedelta(seconds=1),
          "valid_from": datetime.now(UTC) - timedelta(hours=1)}, "ended"),
    ],
)
async def test_paused_or_out_of_schedule_allocates_nothing(
    core: Core, update: dict[str, object], outcome: str
) -> None:
    await seed(core.store)
    await core.store.update_pool("pool-a", PoolUpdate.model_validate(update))
    before = await allocation_snapshot(core.redis)
    d = await core.allocator.scan("pool-a", visitor(), "poster")
    assert (d.outcome, d.pool_name) == (outcome, "Pool A")
    assert await allocation_snapshot(core.redis) == before
    # the page view is counted, as a scan of a closed pool
    assert await core.redis.hgetall(keys.stats("pool-a")) == {b"paused": b"1"}
    await core.store.update_pool("pool-a", PoolUpdate(status="active", valid_from=None,
                                                      valid_until=None))
    assert (await core.allocator.scan("pool-a", visitor())).outcome == "new"


async def test_channel_is_counted_and_bounded(core: Core) -> None:
    """A pool counts at most MAX_CHANNELS named channels; later ones count as '~other', in
    the totals, the hourly buckets and the visitors."""
    await seed(core.store, groups=[{"capacity": 1000}])
    for ch in ["poster", "poster", "ad"]:
        await core.allocator.scan("pool-a", visitor(), ch)
    totals = await core.store.statistics.totals("pool-a")
    assert totals.by_channel == {"poster": 2, "ad": 1} and totals.new == 3
    for i in range(100):
        await core.allocator.scan("pool-a", visitor(), f"c{i}")
    totals = await core.store.statistics.totals("pool-a")
    assert len(totals.by_channel) == MAX_CHANNELS + 1  # and "~other"
    assert totals.by_channel["~other"] == 100 - (MAX_CHANNELS - 2)  # c0.. past 64 named
    assert sum(totals.by_channel.values()) == 103 == totals.new
    registry = await core.redis.hlen(keys.prefix("pool-a") + "chs")
    assert registry == MAX_CHANNELS + 1


async def test_capacity_changes_take_effect_on_next_scan(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 1}, {"capacity": 5}])
    assert await scan_many(core, 2) == ["g1", "g2"]
    await core.store.update_group("pool-a", "g1", GroupUpdate(capacity=2))
    assert await scan_many(core, 1) == ["g1"]
    await core.store.update_group("pool-a", "g2", GroupUpdate(capacity=1))
    assert await scan_many(core, 1) == ["fallback"]
    await core.store.reset_group("pool-a", "g2")
    assert await scan_many(core, 2) == ["g2", "fallback"]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_concurrent_scans_never_overfill(core: Core, strategy: str) -> None:
    await seed(core.store, strategy=strategy,
               groups=[{"capacity": 200}, {"capacity": 150, "weight": 3}, {"capacity": 50}])
    results = await asyncio.gather(*(core.allocator.scan("pool-a", visitor()) for _ in range(1000)))
    got = Counter(r.group_id if r.outcome == "new" else r.outcome for r in results)
    assert got == {"g1": 200, "g2": 150, "g3": 50, "fallback": 600}
    assert await counts(core.redis) == {"g1": 200, "g2": 150, "g3": 50}


async def test_script_flush_mid_run_is_invisible(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 300}, {"capacity": 300}])

    async def flusher() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)
            await flush_scripts_async(core.redis)

    results, _ = await asyncio.gather(
        asyncio.gather(*(core.allocator.scan("pool-a", visitor()) for _ in range(800))),
        flusher(),
    )
    got = Counter(r.outcome for r in results)
    assert got == {"new": 600, "fallback": 200}
    assert await counts(core.redis) == {"g1": 300, "g2": 300}


async def _commands_per_scan(core: Core, pool_id: str, *, fresh: bool = False,
                             by_name: bool = False, visitor_id: str | None = None) -> Any:
    await core.redis.config_resetstat()
    await core.allocator.scan(pool_id, visitor_id or visitor(), fresh=fresh)
    stats = await core.redis.info("commandstats")
    # the script's own commands: not how it was called (EVALSHA, EVAL, FCALL, FUNCTION LOAD),
    # nor CONFIG (Redis 7: config|resetstat), INFO
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()
             if k.removeprefix("cmdstat_").split("|")[0] not in (
                 "evalsha", "eval", "fcall", "function", "config", "info")}
    return calls if by_name else sum(calls.values())


# What the common scan (fill, a visitor without a cookie, groups that never expire) runs, by
# phase of scan.lua: the throughput figures in bench/ depend on it. A new recorder adds its
# own line here, and a change to a phase shows up as a change to its line. (The first scan of
# an hour and of a minute also set expiries and check the rate: warmed up before counting.)
PICK_AND_ALLOCATE = {"hmget": 2, "zrange": 1,  # pool, open index, group
                     "hincrby": 2, "set": 1}  # count, the pool's room; sticky record
RECORDER_COMMANDS = {
    "stats": {"time": 1, "hincrby": 3, "pfadd": 1},  # total, group's hour, rate; visitors
    "events": {},  # nothing unless a group fills, the pool runs low or out
}
# ... and for a returning visitor who keeps their group
RETURNING_RECORDER_COMMANDS = {"time": 1, "hincrby": 2, "pfadd": 1}  # stats: total, hour; UV


def _sum(*parts: dict[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


@pytest.mark.plain_client_only("counts commands on one server's INFO commandstats")
async def test_common_scan_runs_the_commands_of_its_phases(core: Core) -> None:
    """No expiry index and no sticky lookup for the common scan; a group that expires adds
    nothing (the clock is read anyway); a cookie adds the sticky lookup. A returning visitor
    who keeps their group reads neither the index nor the allocation's pool fields."""
    assert set(RECORDER_COMMANDS) == set(scripts.RECORDERS)
    await seed(core.store, groups=[{"capacity": 100_000}] * 3)
    await core.allocator.scan("pool-a", visitor(), fresh=True)
    common = await _commands_per_scan(core, "pool-a", fresh=True, by_name=True)
    assert common == _sum(PICK_AND_ALLOCATE, *RECORDER_COMMANDS.values()), common
    await core.store.update_group("pool-a", "g1", GroupUpdate(
        expires_at=datetime.now(UTC) + timedelta(days=7)))
    dated = await _commands_per_scan(core, "pool-a", fresh=True, by_name=True)
    assert dated == common, dated
    cookie = await _commands_per_scan(core, "pool-a", by_name=True)
    # no sticky record for this cookie: the allocation's pool fields are read after the lookup
    assert cookie == {**dated, "get": 1, "hmget": dated["hmget"] + 1}, cookie
    # the same visitor again: pool, sticky record, its group's slot and fields; PV and UV
    vid = visitor()
    await core.allocator.scan("pool-a", vid, fresh=True)
    again = await _commands_per_scan(core, "pool-a", by_name=True, visitor_id=vid)
    assert again == {"hmget": 2, "get": 1, "hget": 1, **RETURNING_RECORDER_COMMANDS}, again


async def test_scan_cost_does_not_grow_with_pool_size(core: Core) -> None:
    """Counts the Redis commands one scan runs inside the script: a pool of 10 open groups vs
    a pool of 2,000 of which only the last 10 have room. Linear work would add ~2,000."""
    await seed(core.store, "small", groups=[{"capacity": 100_000}] * 10)
    await seed(core.store, "big", groups=[{"capacity": 1}] * 1990 + [{"capacity": 100_000}] * 10)
    for i in range(1990):
        await core.store._put("big", f"g{i + 1}", ["count", "1"])  # full, as if scanned
    bound = 2 * math.ceil(math.log2(2000)) + 4
    for strategy in STRATEGIES:
        for pool_id in ("small", "big"):
            await core.store.update_pool(pool_id, PoolUpdate(strategy=strategy))  # type: ignore[arg-type]
        small = await _commands_per_scan(core, "small")
        big = await _commands_per_scan(core, "big")
        assert big <= small + bound, (strategy, small, big)
    picked = {(await core.allocator.scan("big", visitor())).group_id for _ in range(50)}
    assert picked <= {f"g{i}" for i in range(1991, 2001)}


async def test_expired_burst_larger_than_purge_batch(core: Core) -> None:
    """A burst of expired groups ahead of the open one: the first scan still finds it."""
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, groups=[{"expires_at": later}] * 100 + [{"capacity": 1000}])
    await expire_groups(core.redis, "pool-a", [f"g{i}" for i in range(1, 101)])
    for strategy in STRATEGIES:
        await core.store.update_pool("pool-a", PoolUpdate(strategy=strategy))  # type: ignore[arg-type]
        d = await core.allocator.scan("pool-a", visitor())
        assert (d.outcome, d.group_id) == ("new", "g101"), strategy


async def test_a_chosen_visitor_id_does_not_choose_the_weighted_group(core: Core) -> None:
    """The draw once came from the visitor id's first characters, and any 22-character cookie
    is accepted: `lc_vid=AAAA...` always drew the first slot. With the pool's secret salt, such
    cookies spread like any others, and the same visitor still draws the same group."""
    await seed(core.store, strategy="weighted",
               groups=[{"capacity": 100_000, "weight": 1}, {"capacity": 100_000, "weight": 999}])
    crafted = ["AAAA" + secrets.token_urlsafe(16)[:18] for _ in range(60)]
    got = Counter([(await core.allocator.scan("pool-a", vid)).group_id for vid in crafted])
    assert got["g1"] <= 3, got  # a fair draw gives g1 to 60 * 1/1000 of them
    ks, args = call_args("pool-a", crafted[0], call=Call.PEEK)
    script = core.redis.register_script(scripts.source("scan", shebang=core.store.shebang))
    peeks = {decode(await script(keys=ks, args=args)).group_id for _ in range(5)}
    assert len(peeks) == 1, peeks


# scan.lua reads at most 1,000 expired entries of `ex` per scan (ZRANGEBYSCORE ... LIMIT 0 1000):
# the rest are still indexed and must be caught by pick()'s own eligibility check.
PURGE_BATCH = 1000


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_expired_burst_past_the_purge_limit_never_gets_a_scan(
    core: Core, strategy: str
) -> None:
    """1,001 expired groups ahead of one open group: more than one scan's purge reads, so one
    expired group is still indexed and comes first for every strategy (its id, g999, sorts last
    among the expired ones, so the purge leaves it; its position and Fenwick slot come before
    the open group's; the open group's id sorts after it in `lf`; the visitor ids draw the
    low half of the weight that is left in the weighted pick, its slot). Every scan gets the
    open group, never an expired one."""
    n = PURGE_BATCH + 1
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, strategy=strategy,
               groups=[{"expires_at": later}] * n + [{"id": "zz-open", "capacity": 1000}])
    await expire_groups(core.redis, "pool-a", [f"g{i}" for i in range(1, n + 1)])
    salt = (await core.redis.hget(keys.pool("pool-a"), POOL.stored("draw_salt"))).decode()
    got = [await core.allocator.scan("pool-a", vid_drawing(salt, low=True)) for _ in range(3)]
    assert [(d.outcome, d.group_id) for d in got] == [("new", "zz-open")] * 3, strategy
    stored = await counts(core.redis)
    assert stored["zz-open"] == 3 and sum(stored.values()) == 3  # no expired group counted


@pytest.mark.plain_client_only("times the script on one server's INFO commandstats")
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_expired_burst_past_the_purge_batch_is_walked_past_quickly(
    core: Core, strategy: str
) -> None:
    """2,500 expired groups still indexed ahead of the open one: the purge reads 1,000, the
    pick walks past the rest (up to 2,000 per scan) and allocates the open group in the same
    scan, without blocking Redis (the weighted pick once took seconds for 1,100: its search
    rounds grew with the skipped groups; now one descent over the tree minus their weights).
    The expired groups leave the indexes with that scan."""
    n = PURGE_BATCH + 1500
    later = datetime.now(UTC) + timedelta(hours=1)
    await seed(core.store, strategy=strategy,
               groups=[{"expires_at": later}] * n + [{"id": "zz-open", "capacity": 1000}])
    await expire_groups(core.redis, "pool-a", [f"g{i}" for i in range(1, n + 1)])
    salt = (await core.redis.hget(keys.pool("pool-a"), POOL.stored("draw_salt"))).decode()
    await core.redis.config_resetstat()
    d = await core.allocator.scan("pool-a", vid_drawing(salt, low=True))
    assert (d.outcome, d.group_id) == ("new", "zz-open"), strategy
    used = script_calls(await core.redis.info("commandstats"), "usec")
    assert used < 500_000, used  # the scan's script: well under a second
    assert await core.redis.zcard(keys.prefix("pool-a") + "av") == 1
