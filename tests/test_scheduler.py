"""The scheduler and the dispatcher (app/events/scheduler.py) run once per deployment: two app
instances on one Redis deliver every event to the feed exactly once, the lease passes on when
the leader stops or dies, a dispatcher that dies between its webhooks and the feed re-delivers
without appending twice, and the cursors survive a Redis restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aredis

from app.embedded import RedisProcess
from app.events.model import EventPublic
from app.events.scheduler import Dispatcher, Lease, Scheduler
from app.events.store import SYSTEM, pool_stream
from app.schemas import GroupCreate, GroupUpdate, PoolCreate
from app.stats.store import zone_offset_s
from app.store import keys
from app.store.apikeys import ApiKeyStore
from app.store.pools import PoolStore
from tests.api_helpers import Api, open_api
from tests.test_serve import scan_all, serve

QUIET = {"low_minutes": 1, "low_percent": 0}


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def every_event_id(r: aredis.Redis) -> list[str]:
    """The ids of every event in every pool's stream and in the system stream (as the feed
    names them)."""
    ids = []
    for pool_id in [p.decode() for p in await r.zrange(keys.POOLS_INDEX, 0, -1)]:
        ids += [f"{pool_id}:{sid.decode()}" for sid, _ in await r.xrange(pool_stream(pool_id))]
    for sid, fields in await r.xrange(keys.EVENTS_SYSTEM):
        moved = fields.get(b"id")
        ids.append(moved.decode() if moved else f"{SYSTEM}:{sid.decode()}")
    return ids


async def feed_ids(r: aredis.Redis) -> list[str]:
    return [EventPublic.model_validate_json(f[b"event"]).id
            for _, f in await r.xrange(keys.EVENTS_FEED)]


async def instance(redis_url: str) -> tuple[Api, AsyncIterator[Api]]:
    """An app with its scheduler on (a tick every 0.3 s), started; stop it with aclose()."""
    gen = open_api(redis_url, scheduler=True, scheduler_interval_s=0.3)
    return await gen.__anext__(), gen


async def test_two_instances_deliver_every_event_once(redis_url: str) -> None:
    a, stop_a = await instance(redis_url)
    r = a.redis
    await until(lambda: r.exists(keys.SCHEDULER_LEADER), 30, "a leader")
    leader = await r.get(keys.SCHEDULER_LEADER)
    b, stop_b = await instance(redis_url)
    try:
        soon = datetime.now(UTC) + timedelta(hours=2)
        await a.make_pool("two-a", [{"capacity": 3}, {"capacity": 2}], alerts=QUIET)
        await b.make_pool("two-b", [{"capacity": 2}], alerts=QUIET)
        await a.make_pool("two-c", [{"capacity": 5, "expires_at": soon.isoformat()}],
                          alerts=QUIET)
        for i in range(7):  # both instances' scan paths, both pools run out
            await (a if i % 2 else b).scan_group("two-a")
            await (b if i % 2 else a).scan_group("two-b")
        await b.ok("PATCH", "/pools/two-a", json={"name": "renamed"})

        async def warned() -> bool:
            return any(f[b"type"] == b"group.expiring"
                       for _, f in await r.xrange(pool_stream("two-c")))

        await until(warned, 30, "a tick")

        async def all_in_feed() -> bool:
            return Counter(await feed_ids(r)) == Counter(await every_event_id(r))

        await until(all_in_feed, 30, "the feed to catch up")
        ids = await feed_ids(r)
        assert len(ids) == len(set(ids))
        types = Counter(e["type"] for e in (await a.ok("GET", "/events", params={
            "limit": 500}))["items"])
        # made by the API: 3 pools, 4 groups, a change; by scans: 3 full, 2 exhausted; by the
        # ticks of either instance: two-c's code expires within 24 h, once; the two API keys
        # of each instance
        assert types == {"pool.created": 3, "group.created": 4, "pool.updated": 1,
                         "group.full": 3, "pool.exhausted": 2, "group.expiring": 1,
                         "key.created": 4}, types
        assert await r.get(keys.SCHEDULER_LEADER) == leader  # still the first one
        # the leader stops: the other takes over and delivers what comes next
        await stop_a.aclose()
        await until(lambda: _leader_is_not(r, leader), 30, "a new leader")
        await b.ok("PATCH", "/pools/two-b", json={"name": "after"})
        await until(all_in_feed, 30, "the feed to catch up after the handover")
        ids = await feed_ids(r)
        assert len(ids) == len(set(ids)) == sum(types.values()) + 1
    finally:
        await stop_b.aclose()
        await stop_a.aclose()


async def _leader_is_not(r: aredis.Redis, old: bytes | None) -> bool:
    now = await r.get(keys.SCHEDULER_LEADER)
    return now is not None and now != old


async def test_a_lease_that_is_not_renewed_passes_on(redis_url: str) -> None:
    r = aredis.Redis.from_url(redis_url)
    try:
        one, two = Lease(r, lease_ms=500), Lease(r, lease_ms=500)
        assert await one.hold() and not await two.hold()
        assert await one.hold() and not await two.hold()  # renewing keeps it
        # the holder dies without releasing it: the other gets it once it runs out
        await until(two.hold, 3, "the lease to run out")
        assert not await one.hold()
        await two.release()
        assert await r.get(keys.SCHEDULER_LEADER) is None
        await one.release()  # not its lease: nothing happens
        assert await one.hold()
        await two.release()
        assert await r.get(keys.SCHEDULER_LEADER) == one.me.encode()
    finally:
        await r.aclose()


async def _events_in_redis(r: aredis.Redis) -> PoolStore:
    store = await PoolStore.open(r)
    await store.create_pool(PoolCreate.model_validate({"id": "disp", "alerts": QUIET}))
    await store.add_groups("disp", [GroupCreate(id=f"g{i}", url=f"https://chat.example.com/{i}",
                                                capacity=1) for i in range(3)])
    await ApiKeyStore(r).create("read", "k")
    return store


async def test_a_dispatcher_that_dies_before_the_feed_redelivers_and_appends_once(
    redis_url: str,
) -> None:
    r = aredis.Redis.from_url(redis_url)
    try:
        store = await _events_in_redis(r)
        delivered: list[str] = []

        async def dies(batch: Sequence[tuple[EventPublic, str]]) -> None:
            delivered.extend(e.id for e, _ in batch)
            raise RuntimeError("the process died here")

        async def webhook(batch: Sequence[tuple[EventPublic, str]]) -> None:
            delivered.extend(e.id for e, _ in batch)

        expected = await every_event_id(r)
        assert len(expected) == 5  # pool.created, 3 group.created, key.created
        try:
            await Dispatcher(store, [dies]).run_once()
            raise AssertionError("the sink's failure did not stop the pass")
        except RuntimeError:
            pass
        assert await feed_ids(r) == []
        assert await r.hgetall(keys.EVENTS_CURSORS) == {}
        assert await Dispatcher(store, [webhook]).run_once() == 5
        assert sorted(await feed_ids(r)) == sorted(expected)
        # the sinks saw the first source's events twice (the webhooks' idempotency takes
        # those), the feed each once
        assert Counter(delivered) == {i: (2 if i.startswith(SYSTEM) else 1) for i in expected}
        assert await Dispatcher(store, [webhook]).run_once() == 0
    finally:
        await r.aclose()


async def test_two_dispatchers_at_once_append_each_event_once(redis_url: str) -> None:
    r = aredis.Redis.from_url(redis_url)
    try:
        store = await _events_in_redis(r)
        for _ in range(5):
            await store.update_group("disp", "g0", GroupUpdate(capacity=2))
        expected = await every_event_id(r)
        slow_calls = 0

        async def slow(batch: Sequence[tuple[EventPublic, str]]) -> None:
            nonlocal slow_calls
            slow_calls += 1
            await asyncio.sleep(0.05)

        results = await asyncio.gather(*[Dispatcher(store, [slow]).run_once() for _ in range(4)])
        assert sum(results) == len(expected) == 10
        assert sorted(await feed_ids(r)) == sorted(expected)
        assert slow_calls == 8  # each of the 4 saw both sources
    finally:
        await r.aclose()


async def test_the_feed_and_its_cursors_survive_a_restart(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=True)
    async for api in open_api(server.url):
        await api.make_pool("durable", [{"capacity": 2}], alerts=QUIET)
        for _ in range(3):
            await api.scan_group("durable")
        store = await PoolStore.open(api.redis)
        await Dispatcher(store).run_once()
        page = await api.ok("GET", "/events", params={"order": "asc", "limit": 3})
        first = [e["id"] for e in page["items"]]
        total = len(await feed_ids(api.redis))
        assert total == 2 + 2 + 1 + 1  # 2 keys, pool, group, full, exhausted
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)
    async for api in open_api(server.url):
        store = await PoolStore.open(api.redis)
        assert await Dispatcher(store).run_once() == 2  # only the two new keys
        rest = await api.ok("GET", "/events", params={"order": "asc", "limit": 100,
                                                      "after": page["next"]})
        ids = first + [e["id"] for e in rest["items"]]
        assert len(ids) == len(set(ids)) == total + 2
        assert ids == await feed_ids(api.redis)


async def test_the_tick_follows_daylight_saving_time(redis_url: str) -> None:
    """A pool in Europe/Berlin whose stored offset is a season old: the tick stores today's."""
    r = aredis.Redis.from_url(redis_url)
    try:
        store = await PoolStore.open(r)
        await store.create_pool(PoolCreate.model_validate({"id": "berlin",
                                                           "timezone": "Europe/Berlin"}))
        now_offset = zone_offset_s("Europe/Berlin")
        assert int(await r.hget(keys.pool("berlin"), "tzo")) == now_offset
        other = 3600 if now_offset == 7200 else 7200
        await r.hset(keys.pool("berlin"), "tzo", other)
        await Scheduler(store).tick("berlin")
        assert int(await r.hget(keys.pool("berlin"), "tzo")) == now_offset
        assert await Scheduler(store).tick("nope") == (0, 0, 0)
        totals = await Scheduler(store).tick_all()
        assert totals == {"pools": 1, "expired": 0, "warned": 0, "low": 0}
    finally:
        await r.aclose()



async def test_the_tick_takes_a_full_group_with_an_expired_code_out_of_the_capacity(
    redis_url: str,
) -> None:
    """A full group still counts in the pool's capacity (pool.low's percent is of the whole
    pool) until its code expires: nothing scans it then, so the tick takes it out."""
    r = aredis.Redis.from_url(redis_url)
    try:
        store = await PoolStore.open(r)
        await store.create_pool(PoolCreate(id="pool-a"))
        later = datetime.now(UTC) + timedelta(days=1)
        await store.add_groups("pool-a", [
            GroupCreate(id="g1", url="https://t.me/+a", capacity=5, expires_at=later),
            GroupCreate(id="g2", url="https://t.me/+b", capacity=10)])
        await store.set_count("pool-a", "g1", 5)  # full: out of the open index, still usable
        pool = {k.decode(): v.decode() for k, v in (await r.hgetall(keys.pool("pool-a"))).items()}
        assert (pool["room"], pool["cap"]) == ("10", "15")
        full = keys.prefix("pool-a") + "fl"
        assert await r.zrange(full, 0, -1, withscores=True) == [
            (b"g1", float(int(later.timestamp() * 1000)))]
        past = int(time.time() * 1000) - 60_000  # its code expired a minute ago
        await r.hset(keys.group("pool-a", "g1"), "exp", past)
        await r.zadd(full, {"g1": past})
        await Scheduler(store).tick("pool-a")
        assert await r.hmget(keys.pool("pool-a"), ["room", "cap"]) == [b"10", b"10"]
        assert await r.zcard(full) == 0
        await Scheduler(store).tick("pool-a")  # once
        assert await r.hget(keys.pool("pool-a"), "cap") == b"10"
    finally:
        await r.aclose()


@pytest.mark.slow
async def test_two_served_deployments_of_two_workers_each_deliver_once(
    redis_url: str, tmp_path: Path,
) -> None:
    """Real `livecode serve --workers 2` processes, twice, on one Redis: four schedulers and
    dispatchers compete for the lease. 2 x 150 scans at once fill three groups and run the
    pool out; a fourth group's code expires within a day. Every event reaches the feed once."""
    r = aredis.Redis.from_url(redis_url)
    try:
        store = await PoolStore.open(r)
        soon = datetime.now(UTC) + timedelta(hours=5)
        await store.create_pool(PoolCreate.model_validate({"id": "served", "alerts": QUIET}))
        await store.add_groups("served", [
            GroupCreate(id=f"g{i}", url=f"https://chat.example.com/{i}", capacity=40)
            for i in range(1, 4)])
        await store.create_pool(PoolCreate.model_validate({"id": "dated", "alerts": QUIET}))
        await store.add_groups("dated", [GroupCreate(
            id="g1", url="https://chat.example.com/d", capacity=5, expires_at=soon)])
        env = {"LIVECODE_REDIS_URL": redis_url, "LIVECODE_SCHEDULER": "true",
               "LIVECODE_SCHEDULER_INTERVAL_S": "0.5"}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with serve("--workers", "2", env=env, cwd=tmp_path / "a") as one, \
                serve("--workers", "2", env=env, cwd=tmp_path / "b") as two:
            replies = await asyncio.gather(scan_all(one, 150, "/s/served"),
                                           scan_all(two, 150, "/s/served"))
            statuses = Counter(s for batch in replies for s, _ in batch)
            assert statuses == {302: 120, 200: 180}, statuses

            async def caught_up() -> bool:
                streams = Counter(await every_event_id(r))
                return (streams == Counter(await feed_ids(r))
                        and any(i.startswith("dated:") for i in streams)
                        and sum(1 for _, f in await r.xrange(pool_stream("dated"))
                                if f[b"type"] == b"group.expiring") == 1)

            await until(caught_up, 40, "the feed to have every event")
            ids = await feed_ids(r)
            assert len(ids) == len(set(ids))
            types = Counter(EventPublic.model_validate_json(f[b"event"]).type
                            for _, f in await r.xrange(keys.EVENTS_FEED))
            assert types == {"pool.created": 2, "group.created": 4, "group.full": 3,
                             "pool.exhausted": 1, "group.expiring": 1}, types
    finally:
        await r.aclose()


@pytest.mark.parametrize("expiring", [True, False])
async def test_the_ticks_forecast_reads_only_the_open_groups(
    redis_url: str, expiring: bool,
) -> None:
    """The tick forecasts every pool with recent scans, once a minute, in a process that also
    serves scans: it reads the pool's open groups, not its every group (a campaign's pool of
    thousands of codes is mostly full ones; reading them all held the event loop for about a
    second at 100,000). Its figure is the pool view's, which reads every group: with groups
    that expire (the simulation) and without (room / rate)."""
    r = aredis.Redis.from_url(redis_url)
    try:
        store = await PoolStore.open(r)
        await store.create_pool(PoolCreate(id="many", strategy="round_robin"))
        soon = datetime.now(UTC) + timedelta(minutes=5)  # before those groups would fill
        ids = [f"g{i:04}" for i in range(1200)]
        for start in (0, 600):
            await store.add_groups("many", [GroupCreate(
                id=gid, url=f"https://t.me/+{gid}", capacity=50,
                expires_at=soon if expiring and i % 3 == 0 else None)
                for i, gid in enumerate(ids[start:start + 600], start)])
        for gid in ids[:1190]:  # full: out of the open index
            await store.set_count("many", gid, 50)
        minute = int(time.time() // 60)
        await r.hset(keys.prefix("many") + "r", mapping={str(minute - k): 40 for k in range(5)})
        await r.config_resetstat()
        minutes, rate, room = await Scheduler(store)._forecast("many", "round_robin")
        stats = await r.info("commandstats")
        assert "cmdstat_hgetall" not in stats
        assert stats["cmdstat_hmget"]["calls"] == 1 + 10  # the rates, then each open group
        assert room == 10 * 50
        view = await store.get_pool("many", with_groups=True)
        assert view.forecast is not None and view.forecast.room_left == room
        assert minutes is not None and view.forecast.minutes_to_exhaustion is not None
        # the two read the rate a moment apart: the minute's fraction moves it a little
        assert minutes == pytest.approx(view.forecast.minutes_to_exhaustion, rel=0.02, abs=0.1)
        assert rate == pytest.approx(view.forecast.rate_per_min_5m, rel=0.02)
        # room that expires first is lost: the simulation, not room / rate
        assert (minutes < room / rate * 0.95) if expiring else minutes == room / rate
    finally:
        await r.aclose()
