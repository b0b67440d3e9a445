"""The admin REST API (/api/v1), end to end over HTTP. Every change to a group takes effect on the
very next scan."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.api_helpers import (
    Api,
    check_indexes,
    iso,
    new_visitor,
)


async def test_raising_capacity_of_a_full_group_makes_it_eligible_again(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 1}, {"capacity": 10}])
    assert await api.scan_group("pool-a") == "g1"
    assert await api.scan_group("pool-a") == "g2"
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 2})
    await check_indexes(api.redis, "pool-a")
    assert await api.scan_group("pool-a") == "g1"
    assert await api.scan_group("pool-a") == "g2"


async def test_lowering_capacity_below_the_count_marks_the_group_full(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 5}, {"capacity": 10}])
    assert [await api.scan_group("pool-a") for _ in range(3)] == ["g1"] * 3
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 2})
    await check_indexes(api.redis, "pool-a")
    assert await api.scan_group("pool-a") == "g2"
    assert (await api.group("pool-a", "g1"))["count"] == 3
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 3})  # exactly full
    assert await api.scan_group("pool-a") == "g2"
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 4})
    assert await api.scan_group("pool-a") == "g1"


async def test_disabling_skips_a_group_and_enabling_brings_it_back(api: Api) -> None:
    await api.make_pool("pool-a", 3)
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"enabled": False})
    assert await api.scan_group("pool-a") == "g2"
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"enabled": False})
    assert await api.scan_group("pool-a") == "g3"
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"enabled": True})
    assert await api.scan_group("pool-a") == "g1"
    await check_indexes(api.redis, "pool-a")


async def test_a_sticky_visitor_of_a_disabled_group_gets_a_new_one(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    visitor = new_visitor()
    assert await api.scan_group("pool-a", visitor) == "g1"
    assert await api.scan_group("pool-a", visitor) == "g1"
    assert (await api.group("pool-a", "g1"))["count"] == 1
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"enabled": False})
    assert await api.scan_group("pool-a", visitor) == "g2"


async def test_expiry_url_and_mode_changes_apply_to_the_next_scan(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    past = iso(datetime.now(UTC) - timedelta(seconds=1))
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"expires_at": past})
    assert (await api.group("pool-a", "g1"))["expired"] is True
    assert await api.scan_group("pool-a") == "g2"
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"expires_at": None})
    assert await api.scan_group("pool-a") == "g1"
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"url": "https://elsewhere.example/x"})
    r = await api.scan("pool-a")
    assert r.headers["location"] == "https://elsewhere.example/x"
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"mode": "page"})
    r = await api.scan("pool-a")
    assert r.status_code == 200 and "https://elsewhere.example/x" in r.text
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"mode": None})
    r = await api.scan("pool-a")
    assert (r.status_code, r.headers["location"]) == (302, "https://elsewhere.example/x")
    await api.ok("PATCH", "/pools/pool-a", json={"strategy": "round_robin"})
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 4})  # 4 scans: now full
    assert [await api.scan_group("pool-a") for _ in range(2)] == ["g2", "g2"]
    assert (await api.group("pool-a", "g1"))["count"] == 4
    await check_indexes(api.redis, "pool-a")


async def test_weight_change_shifts_a_weighted_pool(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 100_000, "weight": 1},
                                   {"capacity": 100_000, "weight": 9}], strategy="weighted")

    async def tally(n: int) -> dict[str | None, int]:
        got = await asyncio.gather(*(api.scan_group("pool-a") for _ in range(n)))
        return {gid: got.count(gid) for gid in ("g1", "g2", None)}

    first = await tally(200)  # g2 expected ~180
    assert first[None] == 0 and first["g2"] > 140, first
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"weight": 9})
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"weight": 1})
    await check_indexes(api.redis, "pool-a")
    second = await tally(200)  # g1 expected ~180
    assert second[None] == 0 and second["g1"] > 140, second
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"enabled": False})
    third = await tally(20)
    assert third["g1"] == 20, third
