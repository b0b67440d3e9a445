"""The admin REST API (/api/v1), end to end over HTTP. Pool status: counts, remaining, totals and
the next group a new scan gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_helpers import (
    Api,
    iso,
    parse_dt,
)


async def test_pool_status_reports_counts_remaining_and_totals(api: Api) -> None:
    now = datetime.now(UTC)
    soon = (now + timedelta(hours=5)).replace(microsecond=0)
    past = (now - timedelta(hours=1)).replace(microsecond=0)
    await api.make_pool("pool-a", [
        {"capacity": 3},
        {"capacity": 2},
        {"capacity": 5, "enabled": False},
        {"capacity": 4, "expires_at": iso(past)},
        {"capacity": 10, "expires_at": iso(soon)},
    ])
    got = [await api.scan_group("pool-a") for _ in range(6)]
    assert got == ["g1", "g1", "g1", "g2", "g2", "g5"]
    pool = await api.pool("pool-a")
    by_id = {g["id"]: g for g in pool["groups"]}
    expect = {  # id: (count, capacity, remaining, fill_ratio, expired)
        "g1": (3, 3, 0, 1.0, False),
        "g2": (2, 2, 0, 1.0, False),
        "g3": (0, 5, 5, 0.0, False),
        "g4": (0, 4, 4, 0.0, True),
        "g5": (1, 10, 9, 0.1, False),
    }
    for gid, (count, cap, remaining, ratio, expired) in expect.items():
        g = by_id[gid]
        assert (g["count"], g["capacity"], g["remaining"], g["expired"]) == (
            count, cap, remaining, expired
        ), gid
        assert g["fill_ratio"] == pytest.approx(ratio), gid
    assert parse_dt(by_id["g4"]["expires_at"]) == past
    assert parse_dt(by_id["g5"]["expires_at"]) == soon
    assert by_id["g1"]["expires_at"] is None
    # disabled and expired groups count for nothing
    assert pool["total_capacity"] == 3 + 2 + 10
    assert pool["total_remaining"] == 9
    assert pool["next_group"] == "g5"
    assert pool["totals"]["new"] == 6
    # a count above a lowered capacity: no room, ratio above 1
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 2})
    g1 = await api.group("pool-a", "g1")
    assert (g1["count"], g1["remaining"], g1["fill_ratio"]) == (3, 0, 1.5)


@pytest.mark.parametrize("strategy", ["fill", "round_robin", "least_filled"])
async def test_next_group_is_what_the_next_new_scan_gets(api: Api, strategy: str) -> None:
    await api.make_pool("pool-a", [
        {"capacity": 2}, {"capacity": 3}, {"capacity": 4, "enabled": False}, {"capacity": 1},
        {"capacity": 3, "expires_at": iso(datetime.now(UTC) - timedelta(minutes=1))},
        {"capacity": 2},
    ], strategy=strategy)
    seen: list[str] = []
    for i in range(12):
        if i == 4:  # a change mid-way: the disabled group comes in
            await api.ok("PATCH", "/pools/pool-a/groups/g3", json={"enabled": True})
        expected = (await api.pool("pool-a"))["next_group"]
        got = await api.scan_group("pool-a")
        assert got == expected, (i, seen)
        if got is None:
            break
        seen.append(got)
    assert len(seen) == 2 + 3 + 4 + 1 + 2
    assert (await api.pool("pool-a"))["next_group"] is None
    assert await api.scan_group("pool-a") is None
    assert (await api.pool("pool-a"))["total_remaining"] == 0
    if strategy == "fill":
        assert seen[:4] == ["g1", "g1", "g2", "g2"]
    if strategy == "round_robin":
        assert seen[:4] == ["g1", "g2", "g4", "g6"]


async def test_next_group_of_a_weighted_pool_is_a_group_with_room(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 1}, {"capacity": 1, "weight": 5}],
                        strategy="weighted")
    assert (await api.pool("pool-a"))["next_group"] in ("g1", "g2")
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"enabled": False})
    assert (await api.pool("pool-a"))["next_group"] == "g1"
    await api.scan("pool-a")
    assert (await api.pool("pool-a"))["next_group"] is None
