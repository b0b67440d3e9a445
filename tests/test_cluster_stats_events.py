"""Statistics, events, the scheduler's tick, the dispatcher, pool deletion and the per-pool
metrics on a real local Redis Cluster (3 primaries): every script stays in its slot (no
CROSSSLOT), the figures are exact."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from app.events.scheduler import Dispatcher, Scheduler
from app.pool_metrics import PoolMetrics
from app.stats.service import pool_stats
from app.store.apikeys import ApiKeyStore
from tests.helpers import Core, expire_groups, seed, visitor

pytestmark = pytest.mark.parametrize("scan_backend", ["cluster"], indirect=True)

POOLS = [f"cl-{i}" for i in range(6)]


async def test_stats_events_tick_and_feed_on_a_cluster(core: Core) -> None:
    assert core.kind == "cluster"
    store, r = core.store, core.redis
    soon = datetime.now(UTC) + timedelta(hours=3)
    for pool_id in POOLS:
        groups: list[dict[str, object]] = [{"capacity": 2}, {"capacity": 3, "expires_at": soon}]
        if pool_id == "cl-1":  # plenty of room, but all of it gone in 2 minutes
            groups.append({"capacity": 100,
                           "expires_at": datetime.now(UTC) + timedelta(minutes=2)})
        await seed(store, pool_id, groups=groups, alerts={"low_minutes": 5, "low_percent": 0})
    owners = {r.get_node_from_key(f"lc:{{{p}}}:pool").port for p in POOLS}
    assert len(owners) >= 2, owners  # the pools are spread over the shards
    await ApiKeyStore(r).create("read", "on a cluster")
    for pool_id in POOLS:
        if pool_id == "cl-5":
            await expire_groups(r, pool_id, ["g2"])
        a, b = visitor(), visitor()
        for vid, ch in ((a, "poster"), (a, "poster"), (b, ""), (visitor(), "flyer"),
                        (visitor(), "")):
            await core.allocator.scan(pool_id, vid, ch)
    # cl-0..cl-4: g1 (2) fills, g2 takes 2 more; a's second scan is sticky. cl-5: g2's code
    # expired: g1 fills, then fallbacks
    for pool_id in POOLS:
        stats = await pool_stats(store, pool_id, step="day", by="channel")
        pool, *channels = stats.series
        if pool_id == "cl-5":
            assert (pool.total.new, pool.total.sticky, pool.total.fallback) == (2, 1, 2)
        else:
            assert (pool.total.new, pool.total.sticky, pool.total.fallback) == (4, 1, 0)
        assert pool.total.scans == 5 and pool.total.visitors == 4
        assert {c.key: (c.total.scans, c.total.visitors) for c in channels} == {
            "flyer": (1, 1), "poster": (2, 1)}
        hourly = await pool_stats(store, pool_id, step="hour", by="group")
        assert sum(p.scans for p in hourly.series[0].points) == 5
    # the tick: every pool's g2 expires within 24 h, and cl-1's g3 (warned once); cl-5's g2
    # expired already. 4 allocations in a pool are too few to forecast from.
    ticked = await Scheduler(store).tick_all()
    assert ticked == {"pools": 6, "expired": 0, "warned": 6, "low": 0}, ticked
    assert await Scheduler(store).tick_all() == {"pools": 6, "expired": 0, "warned": 0,
                                                 "low": 0}
    # cl-0's last open code expires: the tick takes it out. A 5th allocation fills cl-1's g2:
    # its g3's 100 places would last the scan's own rate check 80 minutes and more, but the
    # forecast knows they expire in 2 (pool.low from the tick)
    await expire_groups(r, "cl-0", ["g2"])
    await core.allocator.scan("cl-1", visitor())
    assert await Scheduler(store).tick_all() == {"pools": 6, "expired": 1, "warned": 0,
                                                 "low": 1}
    # the feed: every event of every pool and the key, once; twice the dispatcher changes
    # nothing
    dispatcher = Dispatcher(store)
    first = await dispatcher.run_once()
    assert await dispatcher.run_once() == 0
    page = await store.events.list(limit=500)
    types = Counter(e.type for e in page.items)
    assert types == {"pool.created": 6, "group.created": 13, "group.full": 7,
                     "group.expiring": 6, "group.expired": 2, "pool.exhausted": 1,
                     "pool.low": 1, "key.created": 1}, types
    [low] = [e for e in page.items if e.type == "pool.low"]
    assert low.pool_id == "cl-1" and low.data["remaining"] == 100
    assert 0 < low.data["minutes_left"] <= 2 and low.data["reason"] == "rate"
    assert sum(types.values()) == first == len({e.id for e in page.items})
    own = await store.events.list(pool_id="cl-5", order="asc")
    assert [e.type for e in own.items] == ["pool.created", "group.created", "group.created",
                                           "group.expired", "group.full", "pool.exhausted"]
    # a pool deleted on a cluster: its last events reach the feed once
    await core.allocator.scan("cl-2", visitor())  # cl-2's g2 fills: not yet dispatched
    await store.delete_pool("cl-2")
    await dispatcher.run_once()
    await dispatcher.run_once()
    gone = [e for e in (await store.events.list(limit=500)).items if e.pool_id == "cl-2"]
    assert Counter(e.type for e in gone) == {"pool.created": 1, "group.created": 2,
                                             "group.full": 2, "group.expiring": 1,
                                             "pool.deleted": 1}
    assert len({e.id for e in gone}) == len(gone)
    # the per-pool metrics read every pool in its own slot
    families = {f.name: f for f in await PoolMetrics(store, 0).families()}
    room = {s.labels["pool"]: s.value for s in families["livecode_pool_room"].samples}
    assert room == {"cl-0": 0, "cl-1": 100, "cl-3": 1, "cl-4": 1, "cl-5": 0}


async def test_migrate_on_a_cluster(core: Core) -> None:
    """The start-up migration pipelines its script over pools on every shard."""
    store, r = core.store, core.redis
    for pool_id in POOLS:
        await seed(store, pool_id, groups=[{"capacity": 4}, {"capacity": 6}])
        await core.allocator.scan(pool_id, visitor())
        await r.hdel(f"lc:{{{pool_id}}}:pool", "room", "cap", "tz", "tzo", "sttl", "salt")
    assert await store.migrate() == len(POOLS)
    assert await store.migrate() == 0
    for pool_id in POOLS:
        assert await r.hmget(f"lc:{{{pool_id}}}:pool", ["room", "cap", "tz"]) == [
            b"9", b"10", b"UTC"]
