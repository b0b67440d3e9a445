"""scan.lua's batch form: new visitors' scans of one pool in one call, as the scan path gathers
them. A batch makes every pick in memory before its first write, so it must end exactly where
the same scans one by one would: the same replies and the same stored state, for every strategy,
with groups filling, expiring and rotating mid-batch, and the stats hash at its field cap.

The batch form is the plain client's alone (Allocator.submit gathers only there): these tests
run on it, except the gathered-scans one, which is marked every_scan_client."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.allocator import scripts
from app.allocator.protocol import Call, call_args
from app.allocator.protocol import decode as decide
from app.schemas import Fallback, GroupCreate, PoolCreate
from app.store import keys
from app.store.schema import MAX_CHANNELS, POOL
from tests.helpers import (
    B64,
    STRATEGIES,
    Core,
    allocation_snapshot,
    counts,
    expire_groups,
    script_calls,
    seed,
)

CHANNELS = ["", "", "", "poster", "ad", "post"]


def _text(reply: Any) -> Any:
    if isinstance(reply, list):
        return [_text(x) for x in reply]
    return reply.decode() if isinstance(reply, bytes) else reply


class Scans:
    """scan.lua called directly: one by one, or as one batch."""

    def __init__(self, core: Core) -> None:
        self.r = core.redis
        self.script = core.redis.register_script(
            scripts.source("scan", shebang=core.store.shebang))

    async def one(self, pool_id: str, vid: str, ch: str = "") -> Any:
        ks, args = call_args(pool_id, vid, ch, Call.NEW)
        return _text(await self.script(keys=ks, args=args))

    async def batch(self, pool_id: str, scans: list[tuple[str, str]]) -> Any:
        p = keys.prefix(pool_id)
        (v1, ch1), rest = scans[0], scans[1:]
        args = [p, v1, ch1, Call.BATCH.value] + [x for v, ch in rest for x in (v, ch)]
        return _text(await self.script(keys=[p + "pool"] + [p + "v:" + v for v, _ in scans],
                                       args=args))


# Pool fields that record when something happened, not what: they differ between twins run
# a few milliseconds apart (and the creation time and draw salt are each pool's own).
_WHEN = {POOL.stored(f) for f in ("created", "draw_salt", "stats_hour", "low_at", "low_checked")}


async def pool_state(core: Core, pool_id: str) -> dict[str, Any]:
    """Every key of the pool, its name and values with the pool id taken out; a sticky key's
    TTL as present or not. What is filed by time is summed over time (hourly buckets, visitors
    per day, the rate per minute), and events compare by type and group, but pool.low: a
    batch checks the rate once where scans one by one check it at each minute's first."""
    p = keys.prefix(pool_id)
    out: dict[str, Any] = {}
    hours: Counter[str] = Counter()
    visitor_keys: dict[str, list[bytes]] = {}
    async for raw in core.redis.scan_iter(match=p + "*"):
        name = raw.decode()[len(p):]
        kind = (await core.redis.type(raw)).decode()
        if name.startswith("h:"):
            hours.update({k.decode(): int(v) for k, v in (await core.redis.hgetall(raw)).items()})
            continue
        if name.startswith("u:"):
            channel = name.split(":", 2)[2] if name.count(":") == 2 else ""
            visitor_keys.setdefault(channel, []).append(raw)
            continue
        if name == "r":
            out[name] = sum(int(v) for v in (await core.redis.hvals(raw)))
            continue
        if name == "ev":
            out[name] = sorted((_text(f[b"type"]), _text(f[b"group"]))
                               for _, f in await core.redis.xrange(raw)
                               if f[b"type"] != b"pool.low")
            continue
        if kind == "string":
            value: Any = (await core.redis.get(raw), await core.redis.ttl(raw) > 0)
        elif kind == "hash":
            value = {k: v for k, v in (await core.redis.hgetall(raw)).items()}
        elif kind == "zset":
            value = await core.redis.zrange(raw, 0, -1, withscores=True)
        else:
            value = kind
        if name == "chs":  # channel -> the day its visitors' expiry was set
            value = sorted(value)
        out[name] = _text(value) if not isinstance(value, dict) else {
            k.decode(): v.decode().replace(pool_id, "<pool>") for k, v in value.items()
            if k.decode() not in _WHEN}
    out["h:*"] = dict(hours)
    out["u:*"] = {ch: await core.redis.pfcount(*ks) for ch, ks in visitor_keys.items()}
    return out


def visitor_ids(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(B64) for _ in range(22)) for _ in range(n)]


async def twin_pools(core: Core, rng: random.Random, strategy: str) -> None:
    """pool-a (for batches) and pool-b (one by one), alike: groups with small capacities so
    that several fill within one batch, some weights, one disabled, one that has expired,
    ids that sort differently as bytes and as numbers ('g10' < 'g2') or with a hyphen."""
    ids = ["g1", "g2", "g10", "a-b", "ab", "a-c", "g3", "g11"][: rng.randint(4, 8)]
    later = datetime.now(UTC) + timedelta(hours=1)
    groups = []
    for i, gid in enumerate(ids):
        g: dict[str, Any] = {"id": gid, "url": f"https://chat.example.com/{gid}",
                             "capacity": rng.randint(1, 6), "weight": rng.randint(1, 5)}
        if i == 1:
            g["expires_at"] = later  # expired below, before any scan
        elif i == 2 and rng.random() < 0.5:
            g["enabled"] = False
        elif rng.random() < 0.3:
            g["expires_at"] = datetime.now(UTC) + timedelta(days=3)
        groups.append(GroupCreate(**g))
    past = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    for pool_id in ("pool-a", "pool-b"):
        await core.store.create_pool(PoolCreate(id=pool_id, name="Twin", strategy=strategy,
                                                fallback=Fallback(message="Full")))
        await core.store.add_groups(pool_id, groups)
        # the group has expired, still indexed until a scan meets it: a batch purges it
        await expire_groups(core.redis, pool_id, [ids[1]], at_ms=past)
    # the same draws: the twins share the secret that salts the weighted draw
    salt = POOL.stored("draw_salt")
    secret = await core.redis.hget(keys.pool("pool-a"), salt)
    await core.redis.hset(keys.pool("pool-b"), salt, secret)


@pytest.mark.parametrize("seed_n", range(6))
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_batch_ends_where_the_same_scans_one_by_one_would(
    core: Core, strategy: str, seed_n: int
) -> None:
    rng = random.Random(f"{strategy}-{seed_n}")
    await twin_pools(core, rng, strategy)
    run = Scans(core)
    sizes = Counter[str]()
    for _ in range(8):  # until the pool is full, and past it
        scans = list(zip(visitor_ids(rng, rng.randint(1, 9)),
                         (rng.choice(CHANNELS) for _ in range(9)), strict=False))
        got = await run.batch("pool-a", scans) if len(scans) > 1 else [
            await run.one("pool-a", *scans[0])]
        want = [await run.one("pool-b", v, ch) for v, ch in scans]
        assert got == want, (strategy, scans)
        assert await pool_state(core, "pool-a") == await pool_state(core, "pool-b")
        sizes.update(r[0] for r in got)
    assert sizes["new"] > 0 and sizes["fallback"] > 0, sizes  # the pool filled up on the way


async def fill_channel_registry(core: Core, pool_id: str, n: int) -> None:
    await core.redis.hset(keys.prefix(pool_id) + "chs",
                          mapping={f"old{i}": 1 for i in range(n)})


async def test_the_channel_cap_counts_channels_registered_earlier_in_the_batch(
    core: Core
) -> None:
    """A pool registers at most MAX_CHANNELS channels; past that, a new channel counts as
    '~other'. Channels that earlier scans of the same batch register count."""
    run = Scans(core)
    for pool_id in ("pool-a", "pool-b"):
        await seed(core.store, pool_id, groups=[{"capacity": 10}], name="Twin")
        await fill_channel_registry(core, pool_id, MAX_CHANNELS - 2)
    scans = list(zip(visitor_ids(random.Random(7), 6), ["", "c1", "c2", "c3", "c1", "c4"],
                     strict=True))
    got = await run.batch("pool-a", scans)
    assert got == [await run.one("pool-b", v, ch) for v, ch in scans]
    totals = await core.store.statistics.totals("pool-a")
    # MAX_CHANNELS - 2 + c1 + c2 = MAX_CHANNELS: c3 and c4 are ~other
    assert totals.by_channel == {"c1": 2, "c2": 1, "~other": 2} and totals.new == 6
    assert await pool_state(core, "pool-a") == await pool_state(core, "pool-b")


async def test_the_cap_lets_a_channel_in_while_there_is_room(core: Core) -> None:
    run = Scans(core)
    for pool_id in ("pool-a", "pool-b"):
        await seed(core.store, pool_id, groups=[{"capacity": 50}], name="Twin")
        await fill_channel_registry(core, pool_id, MAX_CHANNELS - 2)
    scans = list(zip(visitor_ids(random.Random(3), 5), ["a", "b", "a", "c", "b"], strict=True))
    got = await run.batch("pool-a", scans)
    assert got == [await run.one("pool-b", v, ch) for v, ch in scans]
    totals = await core.store.statistics.totals("pool-a")
    assert totals.by_channel == {"a": 2, "b": 2, "~other": 1}


async def test_the_same_visitor_twice_in_a_batch_counts_once(core: Core) -> None:
    await seed(core.store, groups=[{"capacity": 2}, {"capacity": 2}])
    run = Scans(core)
    v, w = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    got = await run.batch("pool-a", [(v, ""), (w, ""), (v, "poster")])
    assert [r[:2] for r in got] == [["new", "g1"], ["new", "g1"], ["sticky", "g1"]]
    assert await counts(core.redis) == {"g1": 2, "g2": 0}
    assert (await core.store.statistics.totals("pool-a")).new == 2
    # and the record is the one a re-scan with the cookie finds
    assert (await core.allocator.scan("pool-a", v)).outcome == "sticky"


@pytest.mark.parametrize("state", ["unknown", "paused", "ended"])
async def test_a_closed_or_unknown_pool_answers_every_scan_of_a_batch(
    core: Core, state: str
) -> None:
    if state == "paused":
        await seed(core.store, status="paused")
    elif state == "ended":
        now = datetime.now(UTC)
        await seed(core.store, valid_from=now - timedelta(hours=1),
                   valid_until=now - timedelta(seconds=1))
    before = await allocation_snapshot(core.redis)
    scans = [(secrets.token_urlsafe(16), "") for _ in range(3)]
    got = await Scans(core).batch("pool-a", scans)
    assert [decide([x.encode() for x in r]).outcome for r in got] == [state] * 3
    assert await allocation_snapshot(core.redis) == before
    # a closed pool counts the page views (scans of an unknown pool count nowhere)
    totals = await core.store.statistics.totals("pool-a")
    assert totals.paused == (0 if state == "unknown" else 3)


@pytest.mark.every_scan_client
async def test_gathered_scans_fill_exactly_under_concurrency(core: Core) -> None:
    """2,000 concurrent new visitors through the allocator, which gathers a pool's scans into
    batches on the plain client: exactly 200 per group, the rest fallbacks, and far fewer
    script calls than scans. The other clients send each scan alone, and fill exactly too."""
    await seed(core.store, groups=[{"capacity": 200}] * 3)
    gathers = core.kind == "plain"
    if gathers:
        await core.redis.config_resetstat()
    replies = await asyncio.gather(*(
        core.allocator.submit("pool-a", secrets.token_urlsafe(16), fresh=True)
        for _ in range(2000)))
    outcomes = Counter(decide(r).group_id or decide(r).outcome for r in replies)
    assert outcomes == {"g1": 200, "g2": 200, "g3": 200, "fallback": 1400}
    assert await counts(core.redis) == {"g1": 200, "g2": 200, "g3": 200}
    if gathers:
        calls = script_calls(await core.redis.info("commandstats"))
        assert calls <= 2000 / 8, calls
