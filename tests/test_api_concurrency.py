"""The admin REST API (/api/v1), end to end over HTTP. Concurrent admin requests (and scans) never
corrupt a pool."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.store import keys
from tests.api_helpers import (
    Api,
    check_indexes,
    iso,
    pool_keys_in_redis,
)
from tests.helpers import STRATEGIES

ADMIN_IN_FLIGHT = 200  # every admin request of the storm at once: the pool waits, never fails


async def _admin_storm(api: Api, rng: random.Random, n: int) -> list[httpx.Response]:
    """n concurrent requests: new-visitor scans and every kind of group edit. At most
    ADMIN_IN_FLIGHT admin requests run at once (scans are not limited)."""
    gids = [f"g{i}" for i in range(1, 6)]
    base = datetime.now(UTC)
    ops: list[Any] = []
    gate = asyncio.Semaphore(ADMIN_IN_FLIGHT)

    async def admin(method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with gate:
            return await api.call(method, path, **kwargs)

    for _ in range(n):
        kind = rng.choices(
            ["scan", "capacity", "enabled", "reset", "weight", "expires", "reorder"],
            weights=[50, 14, 10, 8, 8, 6, 4],
        )[0]
        gid = rng.choice(gids)
        path = f"/pools/pool-a/groups/{gid}"
        if kind == "scan":
            ops.append(api.scan("pool-a"))
        elif kind == "capacity":
            ops.append(admin("PATCH", path, json={"capacity": rng.randint(1, 30)}))
        elif kind == "enabled":
            ops.append(admin("PATCH", path, json={"enabled": rng.random() < 0.6}))
        elif kind == "reset":
            ops.append(admin("POST", path + "/reset"))
        elif kind == "weight":
            ops.append(admin("PATCH", path, json={"weight": rng.randint(1, 10)}))
        elif kind == "expires":
            later = base + timedelta(hours=rng.randint(1, 48))
            ops.append(admin("PATCH", path, json={
                "expires_at": iso(later) if rng.random() < 0.7 else None}))
        else:
            order = gids[:]
            rng.shuffle(order)
            ops.append(admin("POST", "/pools/pool-a/groups/reorder",
                                json={"group_ids": order}))
    return list(await asyncio.gather(*ops))


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_concurrent_admin_edits_never_corrupt_a_pool(api: Api, strategy: str) -> None:
    rng = random.Random(f"storm-{strategy}")
    await api.make_pool("pool-a", [
        {"capacity": 10, "weight": 1},
        {"capacity": 15, "weight": 2},
        {"capacity": 20, "weight": 3, "expires_at": iso(datetime.now(UTC) + timedelta(days=1))},
        {"capacity": 10, "weight": 4},
        {"capacity": 25, "weight": 5},
    ], strategy=strategy)
    for round_ in range(2):
        responses = await _admin_storm(api, rng, 200)
        for r in responses:
            assert r.status_code in (200, 302), (r.status_code, r.text)
        assert sum(1 for r in responses if r.status_code == 200) >= 60
        groups = await check_indexes(api.redis, "pool-a")
        if strategy == "least_filled":
            lf = dict(await api.redis.zrange(keys.prefix("pool-a") + "lf", 0, -1,
                                             withscores=True))
            for member, score in lf.items():
                g = groups[member.decode()]
                assert score == pytest.approx(int(g.get("c", 0)) / int(g["cap"])), (member, g)
        positions = sorted(int(g["pos"]) for g in groups.values())
        assert len(set(positions)) == 5, positions
        # the API agrees with Redis
        pool = await api.pool("pool-a")
        for g in pool["groups"]:
            raw = groups[g["id"]]
            assert (g["count"], g["capacity"], g["weight"], g["enabled"]) == (
                int(raw.get("c", 0)), int(raw["cap"]), int(raw["w"]), raw["en"] == "1"
            )

        # edits stop: a burst of scans fills exactly the room left, and no group goes over
        before = {gid: (int(g.get("c", 0)), int(g["cap"]), g["en"] == "1")
                  for gid, g in groups.items()}
        room = {gid: cap - c if en and c < cap else 0 for gid, (c, cap, en) in before.items()}
        assert pool["total_remaining"] == sum(room.values())
        burst = 160  # more than the most room there can be (5 x 30)
        got = await asyncio.gather(*(api.scan_group("pool-a") for _ in range(burst)))
        after = {gid: int(g.get("c", 0)) for gid, g in (
            await check_indexes(api.redis, "pool-a")).items()}
        for gid, (c, _, _) in before.items():
            assert after[gid] == c + room[gid], (gid, before[gid], after[gid])
            assert got.count(gid) == room[gid], gid
        assert got.count(None) == burst - sum(room.values())
        assert (await api.pool("pool-a"))["next_group"] is None
        if round_ == 0:  # let the second storm start from a pool with room again
            for gid in groups:
                await api.ok("POST", f"/pools/pool-a/groups/{gid}/reset")
                await api.ok("PATCH", f"/pools/pool-a/groups/{gid}", json={"enabled": True})


async def test_200_concurrent_admin_requests_all_succeed(api: Api) -> None:
    await api.make_pool("pool-a", 5)
    ops = [
        api.call("PATCH", f"/pools/pool-a/groups/g{i % 5 + 1}", json={"capacity": 10 + i % 7})
        if i % 2 else api.call("GET", "/pools/pool-a", key="read")
        for i in range(200)
    ]
    results = await asyncio.gather(*ops, return_exceptions=True)
    outcomes = [
        r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in results
    ]
    assert outcomes == [200] * 200, {o: outcomes.count(o) for o in set(outcomes)}


async def test_concurrent_pool_deletes_and_scans_leave_no_key_behind(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 50}, {"capacity": 50}])
    ops: list[Any] = [api.scan("pool-a") for _ in range(60)]
    ops.insert(30, api.call("DELETE", "/pools/pool-a"))
    responses = await asyncio.gather(*ops)
    assert sum(1 for r in responses if r.status_code == 204) == 1
    assert all(r.status_code in (302, 404, 204) for r in responses)
    assert await pool_keys_in_redis(api.redis, "pool-a") == []
