"""Statistics per pool, group and channel (app/allocator/recorders/stats.lua, app/stats/store.py)
against a real Redis and the app: exact hourly and daily figures across the day boundary of the
pool's timezone, PV and UV, channels and their cap, TTLs, hash tags, CSV, the CLI, export and
import.

Redis's clock cannot be moved, so the tests choose the zone from the current time: an
`Etc/GMT±N` zone in which the local day began at the start of the current UTC hour. The earlier
hours' history is written as the recorder writes it (same keys, fields and TTLs); the current
hour's comes from real scans through the app."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as aredis
from redis.cluster import key_slot

from app.store import backup, keys
from app.store.pools import PoolStore
from app.store.schema import DEFAULT_STATS_TTL_S
from tests.api_helpers import BASE, MOBILE_UA, Api, assert_error, open_api, parse_dt

OUTCOMES = ("new", "sticky", "fallback", "paused", "limited")


def vid(name: str) -> str:
    """A fixed, well-formed visitor id (the lc_vid cookie): distinct names, distinct ids."""
    return (name + "_" * 22)[:22]


async def scan(api: Api, pool_id: str, visitor: str | None = None,
               channel: str | None = None) -> httpx.Response:
    headers = {"user-agent": MOBILE_UA}
    if visitor is not None:
        headers["cookie"] = f"lc_vid={visitor}"
    url = f"{BASE}/s/{pool_id}" + (f"?ch={channel}" if channel else "")
    response = await api.transport.handle_async_request(httpx.Request("GET", url,
                                                                      headers=headers))
    await response.aread()
    assert response.status_code in (200, 302, 429), (response.status_code, response.text)
    return response


async def redis_now(r: aredis.Redis) -> float:
    sec, usec = await r.time()
    return sec + usec / 1e6


async def away_from_the_hour_end(r: aredis.Redis, margin_s: float = 60) -> float:
    """Now (Redis's clock), at least `margin_s` before the current hour ends: waits out the
    last minute of an hour, so that a test's scans all fall in one hour."""
    now = await redis_now(r)
    left = 3600 - now % 3600
    if left < margin_s:
        await asyncio.sleep(left + 0.5)
        now = await redis_now(r)
    return now


def zone_starting_a_day_now(now: float) -> tuple[str, int]:
    """An Etc/GMT±N zone in which the current UTC hour is the first hour of a local day, and
    its offset in hours (Etc/GMT-5 is UTC+5)."""
    hour = int(now // 3600) % 24
    n = -hour if hour <= 12 else 24 - hour
    return ("Etc/GMT" if n == 0 else f"Etc/GMT{-n:+d}"), n


@dataclass
class History:
    """What the recorder would have written in earlier hours: {hour start: {field: n}}, the
    day's visitors and each channel's, and the channels it knows with their last day."""

    hours: dict[int, dict[str, int]]
    visitors: dict[str, list[str]]  # suffix after 'u:' -> visitor ids
    channels: dict[str, int]
    offset_s: int = 0  # the zone's


async def write_history(r: aredis.Redis, pool_id: str, h: History,
                        ttl: int = DEFAULT_STATS_TTL_S) -> None:
    """As the recorder would have: each hour's bucket got its expiry (stats_ttl + 1 h) at the
    first scan of its hour, here its start; a day's visitors (stats_ttl + 1 day) at the first
    scan of each hour, the last time here at its end (the offset is whole hours)."""
    p = keys.prefix(pool_id)
    for start, fields in h.hours.items():
        for f, n in fields.items():
            await r.hincrby(p + f"h:{start}", f, n)
        await r.expireat(p + f"h:{start}", start + ttl + 3600)
    for name, ids in h.visitors.items():
        await r.pfadd(p + f"u:{name}", *ids)
        await r.expireat(p + f"u:{name}", (int(name.split(":")[0]) + 1) * 86400 - h.offset_s
                         - 3600 + ttl + 86400)
    if h.channels:
        await r.hset(p + "chs", mapping=h.channels)


def point(**counts: int) -> dict[str, int]:
    out = {o: counts.get(o, 0) for o in OUTCOMES}
    out["scans"] = sum(out.values())
    return out


def figures(p: dict[str, Any]) -> dict[str, int]:
    return {k: p[k] for k in ("scans", *OUTCOMES)}


async def stats(api: Api, pool_id: str, key: str = "read", **params: Any) -> dict[str, Any]:
    r = await api.call("GET", f"/pools/{pool_id}/stats", key=key, params=params)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_hourly_and_daily_figures_across_the_local_day_boundary(api: Api) -> None:
    now = await away_from_the_hour_end(api.redis)
    zone, n = zone_starting_a_day_now(now)
    c = int(now // 3600) * 3600  # the current hour: local midnight of day D
    day = (c + n * 3600) // 86400
    assert (c + n * 3600) % 86400 == 0
    await api.make_pool("tzpool", [{"capacity": 4}, {"capacity": 1, "enabled": False}],
                        timezone=zone)
    hist = [vid(f"h{i}") for i in range(10)]
    await write_history(api.redis, "tzpool", History(
        offset_s=n * 3600, hours={
            c - 3 * 3600: {"g:g1:new": 4, "g:g1:sticky": 1, "c:poster:new": 2,
                           "c:poster:sticky": 1},
            c - 2 * 3600: {"g:g1:new": 3, "g:g2:new": 2, "paused": 1, "limited": 2,
                           "c:poster:new": 1, "c:flyer:new": 2, "c:flyer:paused": 1},
            c - 3600: {"g:g2:new": 5, "g:g2:sticky": 2, "fallback": 3, "c:flyer:fallback": 1},
            c - 30 * 3600: {"g:g1:new": 7},  # day D-2: outside the ranges asked below
        },
        visitors={str(day - 1): hist, f"{day - 1}:poster": hist[1:3],
                  f"{day - 1}:flyer": hist[3:6], str(day - 2): [vid("old")]},
        channels={"poster": day - 1, "flyer": day - 1},
    ))
    # the current hour (day D), through the app
    v1, v2, v3, v4, shared = vid("v1"), vid("v2"), vid("v3"), vid("v4"), hist[0]
    await scan(api, "tzpool", v1)  # new, g1
    await scan(api, "tzpool", v1)  # sticky: a page view, not a new visitor
    await scan(api, "tzpool", v2, "poster")  # new, g1
    await scan(api, "tzpool", v3, "flyer")  # new, g1
    await scan(api, "tzpool", shared)  # new, g1 (a visitor of yesterday too): g1 is full
    await scan(api, "tzpool", v4, "flyer")  # fallback
    await api.ok("POST", "/pools/tzpool/pause")
    await scan(api, "tzpool", v1)  # paused
    await api.ok("POST", "/pools/tzpool/resume")
    assert int((await redis_now(api.redis)) // 3600) * 3600 == c, "the hour turned"

    def at(ts: int) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat()

    hourly = await stats(api, "tzpool", step="hour", **{"from": at(c - 3 * 3600),
                                                        "to": at(c + 3600)})
    assert hourly["timezone"] == zone and hourly["step"] == "hour"
    assert parse_dt(hourly["start"]) == datetime.fromtimestamp(c - 3 * 3600, UTC)
    assert parse_dt(hourly["end"]) == datetime.fromtimestamp(c + 3600, UTC)
    [pool] = hourly["series"]
    assert pool["kind"] == "pool" and pool["key"] is None
    assert [parse_dt(p["start"]).timestamp() for p in pool["points"]] == [
        c - 3 * 3600, c - 2 * 3600, c - 3600, c]
    # local times: the last point is midnight of the zone
    assert pool["points"][-1]["start"].endswith(f"T00:00:00{n:+03d}:00")
    expected_hours = [point(new=4, sticky=1), point(new=5, paused=1, limited=2),
                      point(new=5, sticky=2, fallback=3),
                      point(new=4, sticky=1, fallback=1, paused=1)]
    assert [figures(p) for p in pool["points"]] == expected_hours
    assert [p["visitors"] for p in pool["points"]] == [None] * 4  # per day only
    assert figures(pool["total"]) == point(new=18, sticky=4, fallback=4, paused=2, limited=2)

    daily = await stats(api, "tzpool", step="day", **{"from": at(c - 86400), "to": at(c + 3600)})
    [pool] = daily["series"]
    starts = [parse_dt(p["start"]) for p in pool["points"]]
    assert [s.timestamp() for s in starts] == [c - 86400, c]
    assert all(p["start"].endswith(f"T00:00:00{n:+03d}:00") for p in pool["points"])
    assert [figures(p) for p in pool["points"]] == [
        point(new=14, sticky=3, fallback=3, paused=1, limited=2),
        point(new=4, sticky=1, fallback=1, paused=1)]
    # UV: 10 yesterday; today v1, v2, v3, v4 and the returning one: 5; both days: 14
    assert [p["visitors"] for p in pool["points"]] == [10, 5]
    assert pool["total"]["visitors"] == 14
    assert figures(pool["total"]) == point(new=18, sticky=4, fallback=4, paused=2, limited=2)

    by_group = await stats(api, "tzpool", step="hour", by="group",
                           **{"from": at(c - 3 * 3600), "to": at(c + 3600)})
    assert [(s["kind"], s["key"]) for s in by_group["series"]] == [
        ("pool", None), ("group", "g1"), ("group", "g2")]
    g1, g2 = by_group["series"][1:]
    assert [figures(p) for p in g1["points"]] == [
        point(new=4, sticky=1), point(new=3), point(), point(new=4, sticky=1)]
    assert [figures(p) for p in g2["points"]] == [
        point(), point(new=2), point(new=5, sticky=2), point()]

    by_channel = await stats(api, "tzpool", step="day", by="channel",
                             **{"from": at(c - 86400), "to": at(c + 3600)})
    series = {s["key"]: s for s in by_channel["series"][1:]}
    assert list(series) == ["flyer", "poster"]
    assert [figures(p) for p in series["poster"]["points"]] == [
        point(new=3, sticky=1), point(new=1)]
    assert [p["visitors"] for p in series["poster"]["points"]] == [2, 1]
    assert series["poster"]["total"]["visitors"] == 3
    assert [figures(p) for p in series["flyer"]["points"]] == [
        point(new=2, paused=1, fallback=1), point(new=1, fallback=1)]
    assert [p["visitors"] for p in series["flyer"]["points"]] == [3, 2]
    assert series["flyer"]["total"]["visitors"] == 5

    # CSV: the same figures, row by row, by format=csv and by Accept
    r = await api.call("GET", "/pools/tzpool/stats", key="read", params={
        "step": "day", "by": "channel", "from": at(c - 86400), "to": at(c + 3600),
        "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="tzpool-day-channel.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    local = [pool["points"][0]["start"], pool["points"][1]["start"]]
    assert rows == [
        ["series", "key", "start", "scans", "new", "sticky", "fallback", "paused", "limited",
         "visitors"],
        ["pool", "", local[0], "23", "14", "3", "3", "1", "2", "10"],
        ["pool", "", local[1], "7", "4", "1", "1", "1", "0", "5"],
        ["channel", "flyer", local[0], "4", "2", "0", "1", "1", "0", "3"],
        ["channel", "flyer", local[1], "2", "1", "0", "1", "0", "0", "2"],
        ["channel", "poster", local[0], "4", "3", "1", "0", "0", "0", "2"],
        ["channel", "poster", local[1], "1", "1", "0", "0", "0", "0", "1"],
    ], rows
    r2 = await api.call("GET", "/pools/tzpool/stats", key="read", headers={
        "accept": "text/csv"}, params={"step": "day", "by": "channel", "from": at(c - 86400),
                                       "to": at(c + 3600)})
    assert r2.status_code == 200 and r2.text == r.text

    # the pool view: today's point and the totals since the pool was made
    view = await api.pool("tzpool")
    assert figures(view["today"]) == point(new=4, sticky=1, fallback=1, paused=1)
    assert view["today"]["visitors"] == 5
    assert parse_dt(view["today"]["start"]).timestamp() == c
    totals = view["totals"]
    assert {k: totals[k] for k in ("scans", *OUTCOMES)} == point(
        new=4, sticky=1, fallback=1, paused=1)  # the history above wrote no totals
    assert totals["by_channel"] == {"poster": 1, "flyer": 1}

    # TTLs: each hour's bucket stats_ttl + 1 h, each day's visitors stats_ttl + 1 day
    p = keys.prefix("tzpool")
    ttl = int(await api.redis.hget(keys.pool("tzpool"), "sttl"))
    assert ttl == DEFAULT_STATS_TTL_S == 35 * 86400
    hour_ttl = await api.redis.ttl(p + f"h:{c}")
    assert ttl + 3600 - 30 <= hour_ttl <= ttl + 3600, hour_ttl
    for name in (f"u:{day}", f"u:{day}:poster", f"u:{day}:flyer"):
        left = await api.redis.ttl(p + name)
        assert ttl + 86400 - 30 <= left <= ttl + 86400, (name, left)
    chs = {k.decode(): int(v) for k, v in (await api.redis.hgetall(p + "chs")).items()}
    assert chs == {"poster": day, "flyer": day}


async def test_the_cli_shows_the_same_figures(api: Api, redis_url: str) -> None:
    now = await away_from_the_hour_end(api.redis)
    zone, n = zone_starting_a_day_now(now)
    c = int(now // 3600) * 3600
    day = (c + n * 3600) // 86400
    await api.make_pool("clipool", [{"capacity": 10}], timezone=zone)
    await write_history(api.redis, "clipool", History(
        offset_s=n * 3600, hours={c - 3600: {"g:g1:new": 2, "fallback": 1}},
        visitors={str(day - 1): [vid("a"), vid("b")]}, channels={}))
    await scan(api, "clipool", vid("c"))
    frm = datetime.fromtimestamp(c - 86400, UTC).isoformat()
    to = datetime.fromtimestamp(c + 3600, UTC).isoformat()
    env = {**os.environ, "LIVECODE_REDIS_URL": redis_url}
    out = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "app.cli", "stats", "clipool", "--step", "day", "--from", frm,
        "--to", to, "--csv"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    r = await api.call("GET", "/pools/clipool/stats", key="read", params={
        "step": "day", "from": frm, "to": to, "format": "csv"})
    assert out.stdout == r.text
    rows = list(csv.reader(io.StringIO(out.stdout)))[1:]
    assert [row[3:] for row in rows] == [["3", "2", "0", "1", "0", "0", "2"],
                                         ["1", "1", "0", "0", "0", "0", "1"]]
    out = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "app.cli", "stats", "clipool", "--step", "day", "--from", frm,
        "--to", to, "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == await stats(api, "clipool", step="day",
                                                 **{"from": frm, "to": to})


@pytest.mark.parametrize("zone,offset", [("Asia/Kolkata", 19800), ("Asia/Kathmandu", 20700),
                                         ("America/St_Johns", None)])
async def test_hour_buckets_start_at_the_local_hour(api: Api, zone: str,
                                                    offset: int | None) -> None:
    """Kolkata is UTC+5:30: its hours start at :30 UTC; Kathmandu (UTC+5:45) at :15 UTC;
    St. John's (UTC-3:30, or -2:30 in summer) at :30 UTC."""
    if offset is None:
        off = datetime.now(UTC).astimezone(ZoneInfo(zone)).utcoffset()
        assert off is not None
        offset = int(off.total_seconds())
    await api.make_pool("zoned", [{"capacity": 10}], timezone=zone)
    await scan(api, "zoned", vid("k1"))
    now = int(await redis_now(api.redis))
    found = [k.decode() async for k in api.redis.scan_iter(match=keys.prefix("zoned") + "h:*")]
    assert len(found) == 1, found
    start = int(found[0].rsplit(":", 1)[1])
    assert (start + offset) % 3600 == 0, (start, offset)  # local :00
    assert start <= now < start + 3600
    day = (now + offset) // 86400
    assert await api.redis.exists(keys.prefix("zoned") + f"u:{day}")
    data = await stats(api, "zoned", step="hour")
    hit = [p for p in data["series"][0]["points"] if p["scans"]]
    assert len(hit) == 1 and hit[0]["new"] == 1
    assert parse_dt(hit[0]["start"]).timestamp() == start
    local = parse_dt(hit[0]["start"])
    assert local.minute == 0 and local.second == 0, hit[0]["start"]
    # every point of the series starts at a local hour
    assert all(parse_dt(p["start"]).minute == 0 for p in data["series"][0]["points"])
    daily = await stats(api, "zoned", step="day")
    assert daily["series"][0]["points"][-1]["new"] == 1
    assert daily["series"][0]["points"][-1]["visitors"] == 1


async def test_page_views_and_unique_visitors(api: Api) -> None:
    await api.make_pool("pvuv", [{"capacity": 1}, {"capacity": 5}])
    a, b = vid("a"), vid("b")
    await scan(api, "pvuv", a)  # new, g1 (full)
    await scan(api, "pvuv", a)  # sticky to g1 even though it is full
    await scan(api, "pvuv", b, "ch1")  # new, g2
    await scan(api, "pvuv", b, "ch1")  # sticky, g2
    view = await api.pool("pvuv")
    assert figures(view["today"]) == point(new=2, sticky=2)
    assert view["today"]["visitors"] == 2
    assert view["totals"]["by_channel"] == {"ch1": 1}  # new allocations per channel
    assert {g["id"]: g["count"] for g in view["groups"]} == {"g1": 1, "g2": 1}
    data = await stats(api, "pvuv", step="day", by="channel")
    [pool, ch1] = data["series"]
    assert figures(pool["total"]) == point(new=2, sticky=2) and pool["total"]["visitors"] == 2
    assert figures(ch1["total"]) == point(new=1, sticky=1) and ch1["total"]["visitors"] == 1
    grouped = await stats(api, "pvuv", step="hour", by="group")
    totals = {s["key"]: figures(s["total"]) for s in grouped["series"]}
    assert totals == {None: point(new=2, sticky=2), "g1": point(new=1, sticky=1),
                      "g2": point(new=1, sticky=1)}
    names = {s["key"]: s["name"] for s in grouped["series"]}
    assert names == {None: None, "g1": "", "g2": ""}


async def test_channels_past_64_count_as_other(api: Api) -> None:
    await api.make_pool("manych", [{"capacity": 1000}])
    for i in range(66):
        await scan(api, "manych", vid(f"c{i}"), f"ch-{i:02d}")
    await scan(api, "manych", vid("again"), "ch-00")  # a known channel keeps its name
    await scan(api, "manych", vid("late"), "ch-99")  # a new one after the cap: ~other
    p = keys.prefix("manych")
    chs = sorted(k.decode() for k in await api.redis.hkeys(p + "chs"))
    assert chs == sorted([f"ch-{i:02d}" for i in range(64)] + ["~other"])
    totals = (await api.pool("manych"))["totals"]
    assert totals["new"] == 68
    assert totals["by_channel"] == {**{f"ch-{i:02d}": 1 for i in range(1, 64)}, "ch-00": 2,
                                    "~other": 3}
    data = await stats(api, "manych", step="day", by="channel")
    series = {s["key"]: s["total"] for s in data["series"][1:]}
    assert len(series) == 65
    assert figures(series["~other"]) == point(new=3)
    assert series["~other"]["visitors"] == 3
    assert figures(series["ch-00"]) == point(new=2) and series["ch-00"]["visitors"] == 2
    # memory per pool-hour is bounded: 64 names and ~other, whatever the channels scanned
    fields = [f.decode() for f in await api.redis.hkeys(
        next(iter([k async for k in api.redis.scan_iter(match=p + "h:*")])))]
    assert len({f.split(":")[1] for f in fields if f.startswith("c:")}) == 65
    visitor_keys = [k async for k in api.redis.scan_iter(match=p + "u:*")]
    assert len(visitor_keys) == 1 + 65


async def test_statistics_keep_the_configured_time(redis_url: str) -> None:
    async for api in open_api(redis_url, stats_retention_days=2):
        await api.make_pool("short", [{"capacity": 10}])
        await scan(api, "short", vid("x"), "ch")
        p = keys.prefix("short")
        assert int(await api.redis.hget(keys.pool("short"), "sttl")) == 2 * 86400
        [hour] = [k async for k in api.redis.scan_iter(match=p + "h:*")]
        assert 2 * 86400 + 3600 - 30 <= await api.redis.ttl(hour) <= 2 * 86400 + 3600
        for k in [k async for k in api.redis.scan_iter(match=p + "u:*")]:
            assert 3 * 86400 - 30 <= await api.redis.ttl(k) <= 3 * 86400, k
        # nothing the recorder made lives for ever, but the totals and the channel list
        forever = []
        for k in [k async for k in api.redis.scan_iter(match=p + "*")]:
            if await api.redis.ttl(k) == -1:
                forever.append(k.decode()[len(p):])
        assert sorted(forever) == sorted(["pool", "st", "chs", "r", "ev", "av", "lf", "fw",
                                          "fwg", "g:g1"]), forever
        # asking for more than is kept is a clear 422
        r = await api.call("GET", "/pools/short/stats", params={
            "from": "2020-01-01T00:00:00Z", "to": "2020-01-10T00:00:00Z"})
        assert_error(r, 422, "invalid_input")


async def test_every_key_is_under_the_pools_hash_tag(api: Api) -> None:
    await api.make_pool("tagged", [{"capacity": 2}, {"capacity": 2, "expires_at": (
        datetime.now(UTC) + timedelta(hours=3)).isoformat()}])
    for i in range(5):
        await scan(api, "tagged", vid(f"t{i}"), "poster" if i % 2 else None)
    await scan(api, "tagged", vid("t0"))
    await api.ok("PATCH", "/pools/tagged", json={"name": "renamed"})
    slot = key_slot(keys.pool("tagged").encode())
    mine = [k.decode() async for k in api.redis.scan_iter(match="*tagged*")]
    assert len(mine) > 10
    for k in mine:
        assert k.startswith("lc:{tagged}:"), k
        assert key_slot(k.encode()) == slot, k


async def test_the_api_refuses_bad_queries(api: Api) -> None:
    await api.make_pool("badq", [{"capacity": 1}])
    assert_error(await api.call("GET", "/pools/nope/stats"), 404)
    assert_error(await api.call("GET", "/pools/badq/stats", params={"step": "week"}), 422)
    assert_error(await api.call("GET", "/pools/badq/stats", params={"by": "visitor"}), 422)
    assert_error(await api.call("GET", "/pools/badq/stats", params={"from": "yesterday"}), 422)
    assert_error(await api.call("GET", "/pools/badq/stats", params={
        "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}), 422)
    assert_error(await api.call("GET", "/pools/badq/stats", key=None), 401)
    assert (await api.call("GET", "/pools/badq/stats", key="read")).status_code == 200


async def test_export_and_import_carry_the_buckets(api: Api, redis_url: str,
                                                   make_redis: Any) -> None:
    now = await away_from_the_hour_end(api.redis)
    zone, n = zone_starting_a_day_now(now)
    c = int(now // 3600) * 3600
    day = (c + n * 3600) // 86400
    await api.make_pool("moved", [{"capacity": 10}, {"capacity": 10}], timezone=zone)
    await write_history(api.redis, "moved", History(
        offset_s=n * 3600,
        hours={c - 3600: {"g:g1:new": 2, "g:g2:sticky": 1, "fallback": 1, "c:a:new": 1}},
        visitors={str(day - 1): [vid("p"), vid("q")], f"{day - 1}:a": [vid("p")]},
        channels={"a": day - 1}))
    await scan(api, "moved", vid("r"), "a")
    await scan(api, "moved", vid("r"))
    frm = datetime.fromtimestamp(c - 86400, UTC).isoformat()
    to = datetime.fromtimestamp(c + 3600, UTC).isoformat()
    queries = [dict(step=s, by=b, **{"from": frm, "to": to})
               for s in ("hour", "day") for b in ("group", "channel")]
    before = [await stats(api, "moved", **q) for q in queries]
    doc = await backup.export_all(await PoolStore.open(api.redis))
    other = make_redis(appendonly=False)
    async for api2 in open_api(other.url):
        plan = backup.parse_export(json.loads(json.dumps(doc)))
        await backup.apply_import(await PoolStore.open(api2.redis), plan, replace=False)
        after = [await stats(api2, "moved", **q) for q in queries]
        assert after == before
        p = keys.prefix("moved")
        ttl = await api2.redis.ttl(p + f"h:{c - 3600}")
        assert abs(ttl - (await api.redis.ttl(p + f"h:{c - 3600}"))) <= 5, ttl
        assert await api2.redis.pfcount(p + f"u:{day}", p + f"u:{day - 1}") == 3


async def test_limited_and_outside_the_schedule(redis_url: str) -> None:
    """A client over the per-client limit counts as 'limited'; a scan before valid_from or
    after valid_until as 'paused'."""
    async for api in open_api(redis_url, scan_rate_limit_per_min=2):
        await api.make_pool("limits", [{"capacity": 50}])
        for i in range(5):  # one client address (the test transport's): 2 allowed a minute
            await scan(api, "limits", vid(f"l{i}"), "door")
        await scan(api, "limits", vid("l0"), "door")  # a returning visitor is not limited
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        await api.make_pool("notyet", [{"capacity": 5}], valid_from=later)
        await scan(api, "notyet", vid("n"))
        earlier = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        await api.make_pool("over", [{"capacity": 5}], valid_from=earlier,
                            valid_until=(datetime.now(UTC) - timedelta(days=1)).isoformat())
        await scan(api, "over", vid("o"))
        view = await api.pool("limits")
        assert figures(view["today"]) == point(new=2, sticky=1, limited=3)
        assert view["today"]["visitors"] == 5  # limited visitors came too
        data = await stats(api, "limits", step="day", by="channel")
        assert figures(data["series"][1]["total"]) == point(new=2, sticky=1, limited=3)
        for pool_id in ("notyet", "over"):
            assert figures((await api.pool(pool_id))["today"]) == point(paused=1)


async def test_import_replace_keeps_the_statistics(api: Api) -> None:
    """`livecode import --replace` deletes the pool and makes it again from the export: its
    statistics come back with it (they once read zero afterwards)."""
    await api.make_pool("again", [{"capacity": 10}])
    for name in ("x", "y", "z"):
        await scan(api, "again", vid(name), "poster")
    before = await api.pool("again")
    doc = await backup.export_all(await PoolStore.open(api.redis))
    plan = backup.parse_export(json.loads(json.dumps(doc)))
    await backup.apply_import(await PoolStore.open(api.redis), plan, replace=True)
    after = await api.pool("again")
    assert after["totals"] == before["totals"]
    assert after["totals"]["by_channel"] == {"poster": 3} and after["totals"]["new"] == 3
    assert after["today"] == before["today"] and after["today"]["visitors"] == 3
    assert after["groups"][0]["count"] == 3
