"""Events (app/allocator/recorders/events.lua, tick.lua, the admin scripts, app/events/): each
one exactly once at the right moment, read through `GET /api/v1/events?pool=` (the pool's own
stream) and through the feed (`GET /api/v1/events`, filled by the dispatcher)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.events.scheduler import Dispatcher, Scheduler
from app.store import keys
from app.store.pools import PoolStore
from app.store.schema import LOW_EVIDENCE
from tests.api_helpers import Api, group_url, parse_dt
from tests.helpers import expire_groups, script_calls

QUIET = {"low_minutes": 1, "low_percent": 0}  # no pool.low: these tests are about the others


def key_id(key: str) -> str:
    return key.split("_")[1]


async def pool_events(api: Api, pool_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every event of the pool, oldest first."""
    return await feed(api, pool=pool_id, **params)


async def feed(api: Api, **params: Any) -> list[dict[str, Any]]:
    """Every event (of the pool given as `pool=`), oldest first, a page at a time."""
    items: list[dict[str, Any]] = []
    after = None
    while True:
        q = {"order": "asc", "limit": 500, **params}
        if after:
            q["after"] = after
        page = await api.ok("GET", "/events", params=q, key="read")
        items += page["items"]
        if not page["items"]:
            return items
        after = page["next"]


def brief(events: list[dict[str, Any]], *skip: str) -> list[tuple[str, str | None]]:
    return [(e["type"], e["group_id"]) for e in events if e["type"] not in skip]


ADMIN = ("pool.created", "pool.updated", "group.created", "group.updated", "group.deleted",
         "pool.paused", "pool.resumed")


async def scans(api: Api, pool_id: str, n: int, *, concurrent: bool = False) -> list[str | None]:
    if concurrent:
        return list(await asyncio.gather(*[api.scan_group(pool_id) for _ in range(n)]))
    return [await api.scan_group(pool_id) for _ in range(n)]


async def store_of(api: Api) -> PoolStore:
    return await PoolStore.open(api.redis)


async def redis_now_ms(api: Api) -> int:
    sec, usec = await api.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def away_from_the_minute_end(api: Api, margin_s: float = 10) -> None:
    """Scans that must fall in one minute (the scan checks the rate once a minute): wait out
    the last seconds of a minute."""
    now = await redis_now_ms(api) / 1000
    left = 60 - now % 60
    if left < margin_s:
        await asyncio.sleep(left + 0.2)


# --- caused by scans ------------------------------------------------------------------------------

async def test_group_full_and_pool_exhausted_once_each(api: Api) -> None:
    await api.make_pool("full", [{"capacity": 2}, {"capacity": 3}], alerts=QUIET)
    got = await scans(api, "full", 1)
    assert brief(await pool_events(api, "full"), *ADMIN) == []
    got += await scans(api, "full", 1)  # g1's last place
    events = await pool_events(api, "full")
    assert brief(events, *ADMIN) == [("group.full", "g1")]
    assert events[-1]["data"] == {"capacity": 2, "count": 2} and events[-1]["actor"] is None
    assert events[-1]["pool_id"] == "full"
    got += await scans(api, "full", 3)  # g2 fills with the third
    got += await scans(api, "full", 4)  # the first fallback, then more
    assert got == ["g1", "g1", "g2", "g2", "g2", None, None, None, None]
    events = await pool_events(api, "full")
    assert brief(events, *ADMIN) == [("group.full", "g1"), ("group.full", "g2"),
                                     ("pool.exhausted", None)]
    assert events[-1]["data"] == {}
    assert await api.redis.hget(keys.pool("full"), "exh") == b"1"
    assert parse_dt(events[-1]["at"]) >= parse_dt(events[-2]["at"])


async def test_group_full_inside_batches_of_concurrent_scans(api: Api) -> None:
    """120 new visitors at once through the app: the scan path gathers them into batch calls.
    Each group fills exactly once, the pool runs out once."""
    await api.make_pool("batch", [{"capacity": 7}, {"capacity": 11}, {"capacity": 5},
                                  {"capacity": 9}], alerts=QUIET)
    before = script_calls(await api.redis.info("commandstats"))
    got = await scans(api, "batch", 120, concurrent=True)
    calls = script_calls(await api.redis.info("commandstats")) - before
    assert calls < 120, calls  # batches happened
    assert {g: got.count(g) for g in ("g1", "g2", "g3", "g4")} == {
        "g1": 7, "g2": 11, "g3": 5, "g4": 9}
    assert got.count(None) == 120 - 32
    events = brief(await pool_events(api, "batch"), *ADMIN)
    assert sorted(events[:4]) == [("group.full", f"g{i}") for i in range(1, 5)]
    assert events[4:] == [("pool.exhausted", None)]
    full = [e for e in await pool_events(api, "batch", type="group.full")]
    assert {e["group_id"]: e["data"] for e in full} == {
        "g1": {"capacity": 7, "count": 7}, "g2": {"capacity": 11, "count": 11},
        "g3": {"capacity": 5, "count": 5}, "g4": {"capacity": 9, "count": 9}}


@pytest.mark.parametrize("how", ["capacity", "add", "enable", "reset"])
async def test_pool_recovered_when_an_operator_makes_room(api: Api, how: str) -> None:
    await api.make_pool("rec", [{"capacity": 1}, {"capacity": 2, "enabled": False}],
                        alerts=QUIET)
    await scans(api, "rec", 3)  # g1 full, then fallbacks
    if how == "capacity":
        await api.ok("PATCH", "/pools/rec/groups/g1", json={"capacity": 4})
        remaining = 3
    elif how == "add":
        await api.ok("POST", "/pools/rec/groups", 201, json={"id": "g9",
                                                              "url": group_url("rec", "g9"),
                                                              "capacity": 5})
        remaining = 5
    elif how == "enable":
        await api.ok("PATCH", "/pools/rec/groups/g2", json={"enabled": True})
        remaining = 2
    else:
        await api.ok("POST", "/pools/rec/groups/g1/reset")
        remaining = 1
    events = await pool_events(api, "rec")
    change = "group.created" if how == "add" else "group.updated"
    assert brief(events, "pool.created", "group.created" if how != "add" else "-") [-4:] == [
        ("group.full", "g1"), ("pool.exhausted", None),
        (change, "g9" if how == "add" else "g2" if how == "enable" else "g1"),
        ("pool.recovered", None)]
    assert events[-1]["data"] == {"remaining": remaining}
    assert events[-1]["actor"] == key_id(api.admin_key) == events[-2]["actor"]
    assert await api.redis.hget(keys.pool("rec"), "exh") is None
    # scans allocate without another pool.recovered; exhausting it again: pool.exhausted again
    await scans(api, "rec", remaining + 2)
    tail = brief(await pool_events(api, "rec"), *ADMIN)
    assert tail.count(("pool.recovered", None)) == 1
    assert tail.count(("pool.exhausted", None)) == 2
    assert tail[-1] == ("pool.exhausted", None)


async def test_a_change_that_gives_no_room_does_not_recover(api: Api) -> None:
    await api.make_pool("norec", [{"capacity": 1}, {"capacity": 2, "enabled": False}],
                        alerts=QUIET)
    await scans(api, "norec", 2)
    await api.ok("PATCH", "/pools/norec/groups/g1", json={"name": "renamed"})
    await api.ok("PATCH", "/pools/norec/groups/g2", json={"capacity": 5})  # still disabled
    await api.ok("PATCH", "/pools/norec", json={"name": "x"})
    assert "pool.recovered" not in [e["type"] for e in await pool_events(api, "norec")]
    assert await api.redis.hget(keys.pool("norec"), "exh") == b"1"


async def test_pool_recovered_by_the_scan_that_allocates_again(api: Api) -> None:
    """A pool whose room is not kept (made before it, not yet migrated): the operator's change
    cannot tell that it gives room, the next scan that allocates sends pool.recovered."""
    await api.make_pool("legacy", [{"capacity": 1}], alerts=QUIET)
    await api.redis.hdel(keys.pool("legacy"), "room", "cap")
    await scans(api, "legacy", 2)
    await api.ok("PATCH", "/pools/legacy/groups/g1", json={"capacity": 3})
    assert brief(await pool_events(api, "legacy"), *ADMIN) == [
        ("group.full", "g1"), ("pool.exhausted", None)]
    assert await scans(api, "legacy", 1) == ["g1"]
    events = await pool_events(api, "legacy")
    assert brief(events, *ADMIN)[-1] == ("pool.recovered", None)
    assert events[-1]["actor"] is None and events[-1]["data"] == {"remaining": None}
    await scans(api, "legacy", 3)
    assert brief(await pool_events(api, "legacy"), *ADMIN) == [
        ("group.full", "g1"), ("pool.exhausted", None), ("pool.recovered", None),
        ("group.full", "g1"), ("pool.exhausted", None)]


async def test_pool_low_by_room_once_per_30_minutes(api: Api) -> None:
    await api.make_pool("lowroom", [{"capacity": 100}],
                        alerts={"low_minutes": 1})  # the rate check out of the way
    await away_from_the_minute_end(api)
    await scans(api, "lowroom", 90)  # room 10 of 100: 10 %, not below
    assert "pool.low" not in [e["type"] for e in await pool_events(api, "lowroom")]
    await scans(api, "lowroom", 1)  # 9 left: below 10 %
    low = await pool_events(api, "lowroom", type="pool.low")
    assert len(low) == 1
    data = low[0]["data"]
    assert {k: data[k] for k in ("reason", "remaining", "capacity", "percent_left")} == {
        "reason": "room", "remaining": 9, "capacity": 100, "percent_left": 9.0}
    assert data["rate_per_min"] > 0 and data["minutes_left"] == pytest.approx(
        9 / data["rate_per_min"], abs=0.06)  # both rounded
    await scans(api, "lowroom", 3)  # 6 left: still low, but within 30 minutes of the last
    assert len(await pool_events(api, "lowroom", type="pool.low")) == 1
    # 29 minutes later (as the pool's last pool.low says): still quiet; 30: again
    now = await redis_now_ms(api)
    await api.redis.hset(keys.pool("lowroom"), "lowat", now - 29 * 60_000)
    await scans(api, "lowroom", 1)
    assert len(await pool_events(api, "lowroom", type="pool.low")) == 1
    await api.redis.hset(keys.pool("lowroom"), "lowat", now - 30 * 60_000 - 1000)
    await scans(api, "lowroom", 1)
    low = await pool_events(api, "lowroom", type="pool.low")
    assert len(low) == 2 and low[1]["data"]["remaining"] == 4


async def test_pool_low_by_room_counts_the_capacity_of_full_groups(api: Api) -> None:
    """10 % of a pool of two groups of 50 is 10 places, whichever group they are in: the
    pool view says so (total_capacity 100, total_remaining 9)."""
    await api.make_pool("lowfill", [{"capacity": 50}, {"capacity": 50}],
                        alerts={"low_minutes": 1})
    await away_from_the_minute_end(api)
    await scans(api, "lowfill", 91)
    view = await api.pool("lowfill")
    assert (view["total_capacity"], view["total_remaining"]) == (100, 9)
    low = await pool_events(api, "lowfill", type="pool.low")
    assert [(e["data"]["remaining"], e["data"]["capacity"]) for e in low] == [(9, 100)]


async def test_pool_low_with_custom_thresholds(api: Api) -> None:
    await api.make_pool("custom", [{"capacity": 10}],
                        alerts={"low_percent": 50, "low_minutes": 1, "low_every_minutes": 5})
    await away_from_the_minute_end(api)
    await scans(api, "custom", 5)  # 5 of 10 left: 50 %, not below
    assert await pool_events(api, "custom", type="pool.low") == []
    await scans(api, "custom", 1)
    [low] = await pool_events(api, "custom", type="pool.low")
    assert low["data"]["reason"] == "room" and low["data"]["remaining"] == 4
    assert low["data"]["percent_left"] == 40.0
    now = await redis_now_ms(api)
    await api.redis.hset(keys.pool("custom"), "lowat", now - 4 * 60_000)
    await scans(api, "custom", 1)
    assert len(await pool_events(api, "custom", type="pool.low")) == 1
    await api.redis.hset(keys.pool("custom"), "lowat", now - 5 * 60_000 - 1000)
    await scans(api, "custom", 1)
    assert [e["data"]["remaining"] for e in
            await pool_events(api, "custom", type="pool.low")] == [4, 2]


async def test_pool_low_by_rate_at_the_first_allocation_of_a_minute(api: Api) -> None:
    """100 allocations in the 4 minutes before this one: the first scan of this minute sees
    (100 + 1) / (4 + f) a minute, 20.2 to 25.25, and 999 places: 40 to 50 minutes, below 60."""
    await api.make_pool("rate", [{"capacity": 1000}])
    await away_from_the_minute_end(api)
    minute = await redis_now_ms(api) // 60000
    await api.redis.hset(keys.prefix("rate") + "r",
                         mapping={str(minute - k): 25 for k in range(1, 5)})
    await scans(api, "rate", 1)
    [low] = await pool_events(api, "rate", type="pool.low")
    data = low["data"]
    assert data["reason"] == "rate" and data["remaining"] == 999 and data["capacity"] == 1000
    assert data["percent_left"] == 99.9
    assert 20.2 <= data["rate_per_min"] <= 25.25
    assert data["minutes_left"] == pytest.approx(999 / data["rate_per_min"], abs=0.1)
    await scans(api, "rate", 20)
    assert len(await pool_events(api, "rate", type="pool.low")) == 1


@pytest.mark.parametrize("low_minutes", [None, 120])
async def test_pool_low_against_the_pools_rate_threshold(api: Api,
                                                         low_minutes: int | None) -> None:
    """40 allocations in the 4 minutes before: (40 + 1) / (4 + f) a minute; f (how far this
    minute is) is at most 50 / 60 here, so 8.48 to 10.25 a minute, and 999 places last 97.5
    to 117.8 minutes: over the default 60 (no pool.low), under a pool's own 120."""
    alerts = {} if low_minutes is None else {"alerts": {"low_minutes": low_minutes}}
    await api.make_pool("slow", [{"capacity": 1000}], **alerts)
    await away_from_the_minute_end(api)
    minute = await redis_now_ms(api) // 60000
    await api.redis.hset(keys.prefix("slow") + "r",
                         mapping={str(minute - k): 10 for k in range(1, 5)})
    await scans(api, "slow", 5)
    low = await pool_events(api, "slow", type="pool.low")
    if low_minutes is None:
        assert low == []
    else:
        assert [(e["data"]["reason"], e["data"]["remaining"]) for e in low] == [("rate", 999)]
        assert 97.5 <= low[0]["data"]["minutes_left"] <= 117.8


async def test_pool_low_by_rate_from_this_minutes_allocations(api: Api) -> None:
    """60 allocations in the current minute, 240 places left: 12 to 15 a minute, 16 to 20
    minutes. The scan checks the rate at the first allocation of each minute (one more read
    per minute, not per scan); the scheduler's tick finds it in between."""
    await api.make_pool("burst", [{"capacity": 300}])
    await away_from_the_minute_end(api, 15)
    await scans(api, "burst", 60)
    assert await pool_events(api, "burst", type="pool.low") == []
    expired, warned, low = await Scheduler(await store_of(api)).tick("burst")
    assert (expired, warned, low) == (0, 0, 1)
    [event] = await pool_events(api, "burst", type="pool.low")
    assert event["data"]["reason"] == "rate" and event["data"]["remaining"] == 240
    assert 12 <= event["data"]["rate_per_min"] <= 15
    assert 16 <= event["data"]["minutes_left"] <= 20
    # throttled for the scans and the tick alike
    assert (await Scheduler(await store_of(api)).tick("burst"))[2] == 0
    await scans(api, "burst", 30)
    assert len(await pool_events(api, "burst", type="pool.low")) == 1


async def test_pool_low_by_rate_waits_for_enough_allocations(api: Api) -> None:
    """One scan of a pool of 100 makes a rate of 0.2 to 0.25 a minute: 99 places in 400 to 500
    minutes, under a pool's threshold of 1,000, yet one scan is not a rate to forecast from. The
    scan and the tick wait for LOW_EVIDENCE allocations in the 5 minutes."""
    await api.make_pool("small", [{"capacity": 100}], alerts={"low_minutes": 1000})
    await away_from_the_minute_end(api)
    await scans(api, "small", 1)
    assert await pool_events(api, "small", type="pool.low") == []
    scheduler = Scheduler(await store_of(api))
    assert (await scheduler.tick("small"))[2] == 0
    await scans(api, "small", LOW_EVIDENCE - 1)  # (the scan checks once a minute: the tick)
    assert (await scheduler.tick("small"))[2] == 1
    [low] = await pool_events(api, "small", type="pool.low")
    assert low["data"]["reason"] == "rate" and low["data"]["remaining"] == 100 - LOW_EVIDENCE


# --- time-based: the scheduler's tick ------------------------------------------------------------

async def test_group_expiring_once_per_code(api: Api) -> None:
    now = datetime.now(UTC)
    await api.make_pool("exp", [
        {"capacity": 5, "expires_at": (now + timedelta(hours=23)).isoformat()},
        {"capacity": 5, "expires_at": (now + timedelta(hours=25)).isoformat()},
        {"capacity": 5},
        {"capacity": 5, "expires_at": (now + timedelta(hours=2)).isoformat(), "enabled": False},
    ], alerts=QUIET)
    scheduler = Scheduler(await store_of(api))
    assert await scheduler.tick("exp") == (0, 1, 0)
    [e] = await pool_events(api, "exp", type="group.expiring")
    assert e["group_id"] == "g1" and e["actor"] is None
    assert e["data"]["expires_at"] == int((now + timedelta(hours=23)).timestamp() * 1000)
    assert e["data"]["hours_left"] == 23.0
    assert await scheduler.tick("exp") == (0, 0, 0)
    # a new code (new expires_at): warned again when it comes within 24 h
    later = now + timedelta(hours=20)
    await api.ok("PATCH", "/pools/exp/groups/g1", json={
        "url": "https://chat.example.com/exp/g1-new", "expires_at": later.isoformat()})
    assert await scheduler.tick("exp") == (0, 1, 0)
    assert await scheduler.tick("exp") == (0, 0, 0)
    warned = await pool_events(api, "exp", type="group.expiring")
    assert [(x["group_id"], x["data"]["expires_at"]) for x in warned] == [
        ("g1", int((now + timedelta(hours=23)).timestamp() * 1000)),
        ("g1", int(later.timestamp() * 1000))]
    # the pool warns 48 h ahead now: g2 is due
    await api.ok("PATCH", "/pools/exp", json={"alerts": {"expiring_hours": 48, **QUIET}})
    assert await scheduler.tick("exp") == (0, 1, 0)
    assert [x["group_id"] for x in await pool_events(api, "exp", type="group.expiring")] == [
        "g1", "g1", "g2"]
    # per threshold: a code warned at 48 h is not warned again at 24 h
    await api.ok("PATCH", "/pools/exp", json={"alerts": {"expiring_hours": 24, **QUIET}})
    assert await scheduler.tick("exp") == (0, 0, 0)


async def test_group_expired_by_a_scan_then_not_by_the_tick(api: Api) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await api.make_pool("purge", [{"capacity": 5, "expires_at": soon}, {"capacity": 5}],
                        alerts=QUIET)
    at = await expire_groups(api.redis, "purge", ["g1"])
    assert await scans(api, "purge", 1) == ["g2"]
    [e] = await pool_events(api, "purge", type="group.expired")
    assert e["group_id"] == "g1" and e["data"] == {"expires_at": at}
    assert await Scheduler(await store_of(api)).tick("purge") == (0, 0, 0)
    await scans(api, "purge", 2)
    assert len(await pool_events(api, "purge", type="group.expired")) == 1
    view = await api.pool("purge")
    assert view["forecast"]["room_left"] == 2 and view["total_remaining"] == 2
    assert int(await api.redis.hget(keys.pool("purge"), "room")) == 2


async def test_group_expired_by_the_tick_then_not_by_a_scan(api: Api) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await api.make_pool("tickexp", [{"capacity": 5, "expires_at": soon}, {"capacity": 5},
                                    {"capacity": 3, "expires_at": soon}], alerts=QUIET)
    at = await expire_groups(api.redis, "tickexp", ["g1", "g3"])
    assert await Scheduler(await store_of(api)).tick("tickexp") == (2, 0, 0)
    events = await pool_events(api, "tickexp", type="group.expired")
    assert sorted((e["group_id"], e["data"]["expires_at"]) for e in events) == [
        ("g1", at), ("g3", at)]
    assert int(await api.redis.hget(keys.pool("tickexp"), "room")) == 5
    assert int(await api.redis.hget(keys.pool("tickexp"), "cap")) == 5
    assert await api.redis.hget(keys.pool("tickexp"), "exn") is None
    assert await scans(api, "tickexp", 1) == ["g2"]
    assert await Scheduler(await store_of(api)).tick("tickexp") == (0, 0, 0)
    assert len(await pool_events(api, "tickexp", type="group.expired")) == 2


async def test_pool_exhausted_when_the_last_code_expires(api: Api) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await api.make_pool("allexp", [{"capacity": 5, "expires_at": soon}], alerts=QUIET)
    await expire_groups(api.redis, "allexp", ["g1"])
    assert await scans(api, "allexp", 2) == [None, None]
    assert brief(await pool_events(api, "allexp"), *ADMIN) == [
        ("group.expired", "g1"), ("pool.exhausted", None)]
    # a new code: recovered, by the operator who renewed it
    later = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    await api.ok("PATCH", "/pools/allexp/groups/g1", json={
        "url": "https://chat.example.com/allexp/new", "expires_at": later})
    events = await pool_events(api, "allexp")
    assert brief(events, "pool.created", "group.created")[-2:] == [
        ("group.updated", "g1"), ("pool.recovered", None)]
    assert events[-1]["data"] == {"remaining": 5}
    assert events[-1]["actor"] == key_id(api.admin_key)


# --- admin changes: who made them ----------------------------------------------------------------

async def test_admin_events_name_the_api_key(api: Api) -> None:
    await api.make_pool("audit", [{"capacity": 5}, {"capacity": 5}])
    await api.ok("PATCH", "/pools/audit", json={"name": "Audited", "strategy": "round_robin"})
    await api.ok("POST", "/pools/audit/pause")
    await api.ok("POST", "/pools/audit/resume")
    await api.ok("PATCH", "/pools/audit/groups/g1", json={"capacity": 9, "name": "one"})
    await api.ok("POST", "/pools/audit/groups/reorder", json={"group_ids": ["g2", "g1"]})
    await api.ok("DELETE", "/pools/audit/groups/g2", 204)
    events = await pool_events(api, "audit")
    me = key_id(api.admin_key)
    assert [(e["type"], e["group_id"], e["actor"]) for e in events] == [
        ("pool.created", None, me), ("group.created", "g1", me), ("group.created", "g2", me),
        ("pool.updated", None, me), ("pool.paused", None, me), ("pool.resumed", None, me),
        ("group.updated", "g1", me), ("pool.updated", None, me), ("group.deleted", "g2", me)]
    assert events[3]["data"] == {"fields": ["name", "strategy"]}
    assert sorted(events[6]["data"]["fields"]) == ["capacity", "name"]
    assert events[7]["data"] == {"fields": ["group_order"]}
    assert all(e["pool_id"] == "audit" for e in events)
    # a read key may read them, and a refused change leaves no event
    r = await api.call("PATCH", "/pools/audit", key="read", json={"name": "nope"})
    assert r.status_code == 403
    assert len(await pool_events(api, "audit")) == len(events)


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVECODE_REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


async def test_admin_events_of_the_cli_name_it(api: Api, redis_url: str) -> None:
    for args in (["pools", "create", "bycli", "--name", "CLI"],
                 ["groups", "add", "bycli", "https://chat.example.com/x", "--id", "g1",
                  "--capacity", "3"],
                 ["pools", "pause", "bycli"], ["groups", "disable", "bycli", "g1"],
                 ["keys", "create", "--scope", "read", "--name", "from-cli"]):
        out = await asyncio.to_thread(cli, redis_url, *args)
        assert out.returncode == 0, (args, out.stderr)
    events = await pool_events(api, "bycli")
    assert [(e["type"], e["actor"]) for e in events] == [
        ("pool.created", "cli"), ("group.created", "cli"), ("pool.paused", "cli"),
        ("group.updated", "cli")]
    made = re.search(r"lc_([0-9a-f]{8})_", out.stdout)
    assert made
    await Dispatcher(await store_of(api)).run_once()
    keyed = await feed(api, type=["key.created", "key.revoked"])
    assert [(e["type"], e["actor"], e["data"]) for e in keyed][-1] == (
        "key.created", "cli", {"key_id": made.group(1), "scope": "read", "name": "from-cli"})
    out = await asyncio.to_thread(cli, redis_url, "keys", "revoke", made.group(1))
    assert out.returncode == 0, out.stderr
    await Dispatcher(await store_of(api)).run_once()
    keyed = await feed(api, type=["key.revoked"])
    assert [(e["type"], e["actor"], e["data"], e["pool_id"]) for e in keyed] == [
        ("key.revoked", "cli", {"key_id": made.group(1)}, None)]


async def test_admin_events_of_the_console_name_the_session_key(api: Api) -> None:
    site = "https://lc.test"  # the session cookie is Secure: the public URL is https
    async with httpx.AsyncClient(transport=api.transport, base_url=site) as http:
        r = await http.post("/console/signin", data={"key": api.admin_key},
                            headers={"Origin": site})
        assert r.status_code == 303, r.text
        token = re.search(r'name="csrf-token" content="([^"]+)"',
                          (await http.get("/console")).text)
        assert token
        csrf = token.group(1)
        post: dict[str, Any] = {"headers": {"Origin": site}}
        r = await http.post("/console/pools", data={"csrf": csrf, "id": "bycon",
                                                    "fallback_kind": "none"}, **post)
        assert r.status_code == 303, r.text
        r = await http.post("/console/pools/bycon/groups", data={
            "csrf": csrf, "url": "https://t.me/+abc", "capacity": "3"}, **post)
        assert r.status_code in (200, 303), r.text
        r = await http.post("/console/pools/bycon/pause", data={"csrf": csrf}, **post)
        assert r.status_code in (200, 303), r.text
        r = await http.post("/console/keys", data={"csrf": csrf, "scope": "read",
                                                   "name": "ck"}, **post)
        assert r.status_code == 303, r.text  # to the page that shows the new key once
        me = key_id(api.admin_key)
        events = await pool_events(api, "bycon")
        assert [(e["type"], e["actor"]) for e in events] == [
            ("pool.created", me), ("group.created", me), ("pool.paused", me)]
        await Dispatcher(await store_of(api)).run_once()
        [created] = [e for e in await feed(api, type="key.created")
                     if e["data"]["name"] == "ck"]
        assert created["actor"] == me
        r = await http.post(f"/console/keys/{created['data']['key_id']}/revoke",
                            data={"csrf": csrf}, **post)
        assert r.status_code == 303, r.text
        await Dispatcher(await store_of(api)).run_once()
        [revoked] = await feed(api, type="key.revoked")
        assert revoked["actor"] == me
        assert revoked["data"] == {"key_id": created["data"]["key_id"]}


# --- a pool deleted ------------------------------------------------------------------------------

async def test_a_deleted_pools_last_events_reach_the_feed_once(api: Api) -> None:
    store = await store_of(api)
    dispatcher = Dispatcher(store)
    await api.make_pool("gone", [{"capacity": 1}], alerts=QUIET)
    await scans(api, "gone", 1)  # group.full
    await dispatcher.run_once()  # the feed has everything so far
    await scans(api, "gone", 1)  # pool.exhausted: not yet dispatched
    await api.ok("PATCH", "/pools/gone", json={"name": "last"})  # nor this
    await api.ok("DELETE", "/pools/gone", 204)
    assert (await api.call("GET", "/events", params={"pool": "gone"})).status_code == 404
    await dispatcher.run_once()
    await dispatcher.run_once()
    events = [e for e in await feed(api) if e["pool_id"] == "gone"]
    assert [(e["type"], e["actor"]) for e in events] == [
        ("pool.created", key_id(api.admin_key)), ("group.created", key_id(api.admin_key)),
        ("group.full", None), ("pool.exhausted", None),
        ("pool.updated", key_id(api.admin_key)), ("pool.deleted", key_id(api.admin_key))]
    assert len({e["id"] for e in events}) == len(events)
    assert events[-1]["pool_name"] == "last"
    assert [k async for k in api.redis.scan_iter(match="*{gone}*")] == []
    assert await api.redis.hget(keys.EVENTS_CURSORS, "gone") is None


async def test_a_pool_deleted_while_the_dispatcher_delivers_its_events(api: Api) -> None:
    """The dispatcher has read the pool's new events and is handing them to the webhooks
    (slow) when the pool is deleted: its events must still reach the feed once, not once
    from the pool's stream and again from the copies the delete moved aside."""
    store = await store_of(api)
    gate, release = asyncio.Event(), asyncio.Event()

    async def slow_sink(batch: Any) -> None:
        if any(e.pool_id == "race" for e, _ in batch):
            gate.set()
            await release.wait()

    dispatcher = Dispatcher(store, [slow_sink])
    await api.make_pool("race", [{"capacity": 1}], alerts=QUIET)
    await scans(api, "race", 2)
    running = asyncio.create_task(dispatcher.run_once())
    await asyncio.wait_for(gate.wait(), 10)
    await api.ok("DELETE", "/pools/race", 204)
    release.set()
    await running
    await Dispatcher(store).run_once()
    events = [e for e in await feed(api) if e["pool_id"] == "race"]
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), [(e["type"], e["id"]) for e in events]
    assert [e["type"] for e in events] == [
        "pool.created", "group.created", "group.full", "pool.exhausted", "pool.deleted"]


async def test_event_times_are_the_servers(api: Api) -> None:
    before = datetime.fromtimestamp(await redis_now_ms(api) / 1000, UTC)
    await api.make_pool("clock", [{"capacity": 1}], alerts=QUIET)
    await scans(api, "clock", 1)
    after = datetime.fromtimestamp(await redis_now_ms(api) / 1000, UTC)
    for e in await pool_events(api, "clock"):
        assert before - timedelta(milliseconds=1) <= parse_dt(e["at"]) <= after, e

