"""The admin REST API (/api/v1), end to end over HTTP. Pools: create, get, list, patch, delete,
pause and resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.store import keys
from tests.api_helpers import (
    Api,
    assert_error,
    group_url,
    iso,
    new_visitor,
    parse_dt,
    pool_keys_in_redis,
    unchanged,
)


async def test_create_pool_returns_201_and_get_returns_it(api: Api) -> None:
    body = {
        "id": "spring-fair",
        "name": "Spring fair",
        "strategy": "round_robin",
        "mode": "page",
        "sticky_ttl_s": 3600,
        "fallback": {"message": "All full", "contact_url": "https://example.com/contact"},
    }
    r = await api.call("POST", "/pools", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    for field in ("id", "name", "strategy", "mode", "sticky_ttl_s"):
        assert created[field] == body[field], field
    assert created["status"] == "active"
    assert created["fallback"] == {
        "url": None, "message": "All full", "contact_url": "https://example.com/contact"
    }
    assert created["created_at"] is not None
    got = await api.pool("spring-fair")
    assert {k: got[k] for k, v in created.items() if v is not None} == {
        k: v for k, v in created.items() if v is not None
    }
    assert got["groups"] == [] and got["total_capacity"] == 0 and got["next_group"] is None


async def test_create_pool_defaults(api: Api) -> None:
    created = await api.ok("POST", "/pools", 201, json={"id": "plain"})
    assert (created["strategy"], created["status"], created["mode"]) == (
        "fill", "active", "redirect"
    )
    assert created["sticky_ttl_s"] == 7 * 24 * 3600


async def test_list_pools_paginates_with_total(api: Api) -> None:
    ids = [f"pool-{i:02d}" for i in range(1, 6)]
    for pid in ids:
        await api.ok("POST", "/pools", 201, json={"id": pid, "name": pid.upper()})
    page = await api.ok("GET", "/pools", params={"limit": 2, "offset": 0})
    assert [p["id"] for p in page["items"]] == ids[:2]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 0)
    page = await api.ok("GET", "/pools", params={"limit": 2, "offset": 2})
    assert [p["id"] for p in page["items"]] == ids[2:4]
    assert page["items"][0]["name"] == "POOL-03"
    page = await api.ok("GET", "/pools", params={"limit": 2, "offset": 4})
    assert [p["id"] for p in page["items"]] == ids[4:]
    page = await api.ok("GET", "/pools", params={"offset": 10})
    assert page["items"] == [] and page["total"] == 5
    page = await api.ok("GET", "/pools")
    assert [p["id"] for p in page["items"]] == ids and page["limit"] == 50
    await api.ok("DELETE", "/pools/pool-02", 204)
    page = await api.ok("GET", "/pools")
    assert [p["id"] for p in page["items"]] == [ids[0], *ids[2:]] and page["total"] == 4


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "ten"}]
)
async def test_list_pools_bad_paging_is_422(api: Api, params: dict[str, Any]) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        assert_error(await api.call("GET", "/pools", params=params), 422, "invalid_input")


async def test_patch_pool_changes_only_the_given_fields(api: Api) -> None:
    await api.make_pool("pool-a", 2, name="Before", sticky_ttl_s=600)
    r = await api.ok("PATCH", "/pools/pool-a", json={
        "name": "After", "strategy": "least_filled",
        "fallback": {"url": "https://example.com/full"},
    })
    assert (r["name"], r["strategy"], r["sticky_ttl_s"]) == ("After", "least_filled", 600)
    assert r["fallback"]["url"] == "https://example.com/full"
    got = await api.pool("pool-a")
    assert (got["name"], got["strategy"], got["mode"]) == ("After", "least_filled", "redirect")
    assert len(got["groups"]) == 2
    start = datetime.now(UTC) + timedelta(days=1)
    r = await api.ok("PATCH", "/pools/pool-a", json={"valid_from": iso(start)})
    assert abs(parse_dt(r["valid_from"]) - start) < timedelta(milliseconds=2)
    # a pool not open yet shows a page and allocates nothing; clearing valid_from reopens it
    async with unchanged(api.redis, but_page_views=True):
        closed = await api.scan("pool-a")
        assert closed.status_code == 200 and "not open yet" in closed.text
    r = await api.ok("PATCH", "/pools/pool-a", json={"valid_from": None})
    assert r["valid_from"] is None
    assert await api.scan_group("pool-a") == "g1"
    # the fallback applies when every group is full
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"enabled": False})
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"enabled": False})
    full = await api.scan("pool-a")
    assert (full.status_code, full.headers["location"]) == (302, "https://example.com/full")


async def test_patch_pool_with_a_schedule_ending_before_it_starts_is_422(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    now = datetime.now(UTC)
    await api.ok("PATCH", "/pools/pool-a", json={"valid_until": iso(now + timedelta(days=1))})
    async with unchanged(api.redis):
        r = await api.call("PATCH", "/pools/pool-a", json={"valid_from": iso(now + timedelta(2))})
        assert_error(r, 422, "invalid_input")
        r = await api.call("POST", "/pools", json={
            "id": "pool-b", "valid_from": iso(now), "valid_until": iso(now),
        })
        assert_error(r, 422, "invalid_input")


async def test_delete_pool_removes_every_key_including_sticky_visitors(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 3}, {"capacity": 3}])
    await api.make_pool("pool-ab", [{"capacity": 5}])  # a pool whose id extends the other's
    visitors = [new_visitor() for _ in range(4)]
    for v in visitors:
        assert await api.scan_group("pool-a", v) is not None
        assert await api.scan_group("pool-ab", v) == "g1"
    assert await api.scan_group("pool-a", "Y" * 22) is not None  # 5 of the 6 places
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"expires_at": iso(
        datetime.now(UTC) + timedelta(days=1))})
    stickies = [k async for k in api.redis.scan_iter(match=keys.sticky_pattern("pool-a"))]
    assert len(stickies) == 5
    assert {keys.prefix("pool-a") + s for s in ("ex", "st", "av", "fw", "fwg")} <= {
        k.decode() for k in await pool_keys_in_redis(api.redis, "pool-a")
    }
    other_before = {
        k: await api.redis.dump(k) for k in await pool_keys_in_redis(api.redis, "pool-ab")
    }

    r = await api.call("DELETE", "/pools/pool-a")
    assert r.status_code == 204 and r.content == b""

    assert await pool_keys_in_redis(api.redis, "pool-a") == []
    assert await api.redis.zscore(keys.POOLS_INDEX, "pool-a") is None
    other_after = {
        k: await api.redis.dump(k) for k in await pool_keys_in_redis(api.redis, "pool-ab")
    }
    assert other_after == other_before
    assert_error(await api.call("GET", "/pools/pool-a"), 404, "not_found")
    async with unchanged(api.redis):
        assert (await api.scan("pool-a", visitors[0])).status_code == 404
        assert_error(await api.call("DELETE", "/pools/pool-a"), 404, "not_found")
        assert_error(await api.call("GET", "/pools/pool-a/groups"), 404, "not_found")
    assert [p["id"] for p in (await api.ok("GET", "/pools"))["items"]] == ["pool-ab"]
    # the id is free again, and the new pool starts empty
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    assert (await api.pool("pool-a"))["groups"] == []
    created = await api.ok("POST", "/pools/pool-a/groups", 201,
                           json={"id": "g1", "url": group_url("pool-a", "g1"), "capacity": 1})
    assert created["count"] == 0
    # the old visitor is a new visitor of the new pool
    assert await api.scan_group("pool-a", visitors[0]) == "g1"


async def test_pause_shows_the_paused_page_and_resume_allocates_again(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    r = await api.ok("POST", "/pools/pool-a/pause")
    assert r["status"] == "paused"
    assert (await api.pool("pool-a"))["status"] == "paused"
    visitor = new_visitor()
    async with unchanged(api.redis, but_page_views=True):
        page = await api.scan("pool-a", visitor)
        assert page.status_code == 200 and "paused" in page.text
        assert "location" not in page.headers
        assert (await api.scan("pool-a")).status_code == 200
    r = await api.ok("POST", "/pools/pool-a/resume")
    assert r["status"] == "active"
    assert await api.scan_group("pool-a", visitor) == "g1"
    assert (await api.group("pool-a", "g1"))["count"] == 1
