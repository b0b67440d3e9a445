"""`GET /api/v1/events` (cursors both ways, type filters, errors, auth) and `livecode events list
| tail` against a real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aredis

from app.events.scheduler import Dispatcher
from app.store.pools import PoolStore
from tests.api_helpers import Api, assert_error

QUIET = {"low_minutes": 1, "low_percent": 0}


async def nine_events(api: Api) -> list[tuple[str, str | None]]:
    """pool.created, 3 group.created, 2 pool.updated, group.updated, pool.paused,
    group.deleted: oldest first."""
    await api.make_pool("evp", 3, alerts=QUIET)
    await api.ok("PATCH", "/pools/evp", json={"name": "one"})
    await api.ok("PATCH", "/pools/evp/groups/g2", json={"capacity": 7})
    await api.ok("PATCH", "/pools/evp", json={"name": "two"})
    await api.ok("POST", "/pools/evp/pause")
    await api.ok("DELETE", "/pools/evp/groups/g3", 204)
    return [("pool.created", None), ("group.created", "g1"), ("group.created", "g2"),
            ("group.created", "g3"), ("pool.updated", None), ("group.updated", "g2"),
            ("pool.updated", None), ("pool.paused", None), ("group.deleted", "g3")]


async def pages(api: Api, key: str = "read", **params: Any) -> list[dict[str, Any]]:
    """Every page until `next` is null (desc) or a page is empty (asc)."""
    out = []
    after = None
    for _ in range(100):
        q = {**params, **({"after": after} if after else {})}
        page = await api.ok("GET", "/events", params=q, key=key)
        out.append(page)
        if page["next"] is None or (params.get("order") == "asc" and not page["items"]):
            return out
        after = page["next"]
    raise AssertionError("no end")


def kinds(items: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["type"], e["group_id"]) for e in items]


async def test_newest_first_page_by_page_to_the_end(api: Api) -> None:
    expected = await nine_events(api)
    got = await pages(api, pool="evp", limit=4)
    assert [len(p["items"]) for p in got] == [4, 4, 1]
    items = [e for p in got for e in p["items"]]
    assert kinds(items) == expected[::-1]
    assert len({e["id"] for e in items}) == 9
    assert [e["at"] for e in items] == sorted((e["at"] for e in items), reverse=True)
    # a limit that divides the count: the last full page still says there may be more
    got = await pages(api, pool="evp", limit=3)
    assert [len(p["items"]) for p in got] == [3, 3, 3, 0]
    assert kinds([e for p in got for e in p["items"]]) == expected[::-1]


async def test_oldest_first_and_following(api: Api) -> None:
    expected = await nine_events(api)
    got = await pages(api, pool="evp", order="asc", limit=4)
    assert [len(p["items"]) for p in got] == [4, 4, 1, 0]
    assert kinds([e for p in got for e in p["items"]]) == expected
    # following: the last cursor stays valid and gives what comes next, and only that
    cursor = got[-1]["next"]
    assert cursor == got[-2]["next"]
    await api.ok("POST", "/pools/evp/resume")
    page = await api.ok("GET", "/events", params={"pool": "evp", "order": "asc",
                                                  "after": cursor})
    assert kinds(page["items"]) == [("pool.resumed", None)]
    page = await api.ok("GET", "/events", params={"pool": "evp", "order": "asc",
                                                  "after": page["next"]})
    assert page["items"] == []


async def test_type_filters(api: Api) -> None:
    expected = await nine_events(api)
    wanted = ("group.created", "pool.updated")
    got = await pages(api, pool="evp", limit=2, type=list(wanted))
    items = [e for p in got for e in p["items"]]
    assert kinds(items) == [k for k in expected[::-1] if k[0] in wanted]
    assert [len(p["items"]) for p in got] == [2, 2, 1]
    got = await pages(api, pool="evp", limit=2, type=list(wanted), order="asc")
    assert kinds([e for p in got for e in p["items"]]) == [k for k in expected
                                                          if k[0] in wanted]
    page = await api.ok("GET", "/events", params={"pool": "evp", "type": "group.full"})
    assert page == {"items": [], "next": None}
    # a filter that matches nothing, oldest first: the cursor still moves to the end
    page = await api.ok("GET", "/events", params={"pool": "evp", "type": "group.full",
                                                  "order": "asc"})
    assert page["items"] == [] and page["next"] is not None
    await api.ok("PATCH", "/pools/evp/groups/g1", json={"capacity": 1})
    await api.ok("POST", "/pools/evp/resume")
    await api.scan("evp")  # g1 fills
    page = await api.ok("GET", "/events", params={"pool": "evp", "type": "group.full",
                                                  "order": "asc", "after": page["next"]})
    assert kinds(page["items"]) == [("group.full", "g1")]


async def test_the_feed_pages_across_pools(api: Api) -> None:
    await nine_events(api)
    await api.make_pool("evq", 1, alerts=QUIET)
    await Dispatcher(await PoolStore.open(api.redis)).run_once()
    got = await pages(api, limit=5)
    items = [e for p in got for e in p["items"]]
    assert [e["pool_id"] for e in items].count("evp") == 9
    assert [e["pool_id"] for e in items].count("evq") == 2
    assert [e["type"] for e in items].count("key.created") == 2  # the fixture's keys
    assert len(items) == 13 and len({e["id"] for e in items}) == 13
    asc = [e for p in await pages(api, limit=5, order="asc") for e in p["items"]]
    assert asc == items[::-1]
    only = [e for p in await pages(api, limit=5, type=["pool.created", "key.created"])
            for e in p["items"]]
    assert [e["type"] for e in only] == ["pool.created", "pool.created", "key.created",
                                         "key.created"]
    assert all(e["pool_name"] == "two" for e in items if e["pool_id"] == "evp")


async def test_bad_queries(api: Api) -> None:
    await nine_events(api)
    assert_error(await api.call("GET", "/events", params={"pool": "nope"}), 404)
    assert_error(await api.call("GET", "/events", params={"pool": "NO SUCH"}), 404)
    for bad in ("zzz", base64.urlsafe_b64encode(b"12-x").decode(), "!!", "a" * 201):
        assert_error(await api.call("GET", "/events", params={"pool": "evp", "after": bad}),
                     422)
    assert_error(await api.call("GET", "/events", params={"type": "group.nope"}), 422)
    assert_error(await api.call("GET", "/events", params={
        "type": ["group.full", "nope"]}), 422)
    assert_error(await api.call("GET", "/events", params={"order": "up"}), 422)
    for limit in (0, 501):
        assert_error(await api.call("GET", "/events", params={"limit": limit}), 422)


async def test_who_may_read_events(api: Api) -> None:
    await nine_events(api)
    assert (await api.call("GET", "/events", key="read", params={"pool": "evp"})
            ).status_code == 200
    assert (await api.call("GET", "/events", key="admin", params={"pool": "evp"})
            ).status_code == 200
    assert_error(await api.call("GET", "/events", key=None), 401)
    assert_error(await api.call("GET", "/events", key="Bearer lc_00000000_nope"), 401)


# --- the CLI ---------------------------------------------------------------------------------

def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVECODE_REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


async def test_cli_events_list(api: Api, redis_url: str) -> None:
    expected = await nine_events(api)
    out = await asyncio.to_thread(cli, redis_url, "events", "list", "--pool", "evp", "--json",
                                  "--limit", "4")
    assert out.returncode == 0, out.stderr
    page = json.loads(out.stdout)
    assert kinds(page["items"]) == expected[::-1][:4]
    assert page == await api.ok("GET", "/events", params={"pool": "evp", "limit": 4})
    out = await asyncio.to_thread(cli, redis_url, "events", "list", "--pool", "evp",
                                  "--oldest-first", "--type", "group.created")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    assert [line.split()[1:3] for line in lines] == [
        ["group.created", f"evp/g{i}"] for i in (1, 2, 3)]
    assert all(f"by {api.admin_key.split('_')[1]}" in line for line in lines)
    out = await asyncio.to_thread(cli, redis_url, "events", "list", "--pool", "nope")
    assert out.returncode == 1 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "nope" in out.stderr


async def _client_ids(r: aredis.Redis) -> set[int]:
    return {int(c["id"]) for c in await r.client_list()}


async def _polling(r: aredis.Redis, before: set[int]) -> bool:
    """A client that was not there `before` (the tail's) is reading a stream oldest first: it
    has its starting cursor. (The service's own connections may have read a stream too.)"""
    return any(c["cmd"] == "xrange" and int(c["id"]) not in before
               for c in await r.client_list())


@pytest.mark.parametrize("where", ["pool", "feed"])
async def test_cli_events_tail_follows_from_now_on(api: Api, redis_url: str,
                                                   where: str) -> None:
    await nine_events(api)
    store = await PoolStore.open(api.redis)
    if where == "feed":
        await Dispatcher(store).run_once()
    args = ["events", "tail", "--count", "2", "--timeout", "60"]
    if where == "pool":
        args += ["--pool", "evp"]
    env = {**os.environ, "LIVECODE_REDIS_URL": redis_url}
    before = await _client_ids(api.redis)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not await _polling(api.redis, before):
            assert time.monotonic() < deadline and proc.returncode is None, "tail did not start"
            await asyncio.sleep(0.05)
        await api.ok("POST", "/pools/evp/resume")
        await api.ok("PATCH", "/pools/evp/groups/g1", json={"name": "x"})
        await api.ok("PATCH", "/pools/evp", json={"name": "three"})  # a third: not shown
        if where == "feed":
            await Dispatcher(store).run_once()
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr
    lines = stdout.decode().splitlines()
    assert [line.split()[1:3] for line in lines] == [["pool.resumed", "evp"],
                                                     ["group.updated", "evp/g1"]]
