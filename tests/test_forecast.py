"""The exhaustion forecast (app/stats/forecast.py `simulate`) against hand-computed cases for each
strategy, and the pool view's `forecast` through the API from a known rate history."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from app.stats.forecast import HORIZON_MIN, OpenGroup, Result, simulate
from app.store import keys
from tests.api_helpers import Api, parse_dt
from tests.helpers import expire_groups


def g(gid: str, remaining: int, expires: float | None = None, *, weight: int = 1,
      capacity: int | None = None, position: int = 0) -> OpenGroup:
    return OpenGroup(gid, remaining, expires, weight=weight,
                     capacity=capacity if capacity is not None else remaining,
                     position=position)


def close(result: Result, minutes: float | None, lost: int,
          full: dict[str, float | None]) -> None:
    if minutes is None:
        assert result.minutes_to_exhaustion is None, result
    else:
        assert result.minutes_to_exhaustion == pytest.approx(minutes, abs=1e-9), result
    assert result.room_expiring == lost, result
    assert set(result.minutes_to_full) == set(full), result
    for gid, at in full.items():
        got = result.minutes_to_full[gid]
        assert (got is None) == (at is None), (gid, result)
        if at is not None:
            assert got == pytest.approx(at, abs=1e-9), (gid, result)


# --- fill: the whole rate to the first open group in the operator's order ----------------------

def test_fill_in_order_of_position_not_of_the_list() -> None:
    # B is listed first but comes second: A (10) fills at 10 / 2 = 5, then B (20) at 5 + 10
    r = simulate("fill", [g("b", 20, position=2), g("a", 10, position=1)], 2.0)
    close(r, 15, 0, {"a": 5, "b": 15})


def test_fill_the_active_group_expires_before_it_fills() -> None:
    # A would fill at 5 but its code expires at 3 with 10 - 3 * 2 = 4 places left (lost);
    # B then gets the whole rate: 20 / 2 = 10 more minutes
    r = simulate("fill", [g("a", 10, 3.0, position=1), g("b", 20, position=2)], 2.0)
    close(r, 13, 4, {"a": None, "b": 13})


def test_fill_a_waiting_group_expires_with_all_its_room() -> None:
    # B never got a scan (A was ahead of it) when its code expires at 4: all 20 are lost
    r = simulate("fill", [g("a", 10, position=1), g("b", 20, 4.0, position=2),
                          g("c", 6, position=3)], 2.0)
    close(r, 5 + 3, 20, {"a": 5, "b": None, "c": 8})


def test_fill_rate_zero() -> None:
    # nothing fills; a pool whose every code expires is out of room at the last expiry
    close(simulate("fill", [g("a", 5, 10.0, position=1), g("b", 7, 30.0, position=2)], 0.0),
          30, 12, {"a": None, "b": None})
    # one that never expires never runs out
    close(simulate("fill", [g("a", 5, position=1)], 0.0), None, 0, {"a": None})


# --- round_robin: equal shares -------------------------------------------------------------------

def test_round_robin_equal_shares() -> None:
    # 1 a minute each: A (10) fills at 10, B then has 10 left at 2 a minute: 15
    close(simulate("round_robin", [g("a", 10), g("b", 20)], 2.0), 15, 0, {"a": 10, "b": 15})


def test_round_robin_with_an_expiring_group() -> None:
    # until A expires at 4 each gets 4; A loses 10 - 4 = 6; B has 16 left at 2: 4 + 8
    close(simulate("round_robin", [g("a", 10, 4.0), g("b", 20)], 2.0), 12, 6,
          {"a": None, "b": 12})


def test_round_robin_three_groups() -> None:
    # 3 a minute, 1 each: A (3) at 3; then 1.5 each: B (6 - 3 = 3 left) at 5; C (12 - 3 - 3 =
    # 6 left) at 3 a minute: 7
    close(simulate("round_robin", [g("a", 3), g("b", 6), g("c", 12)], 3.0), 7, 0,
          {"a": 3, "b": 5, "c": 7})


# --- weighted: by weight -------------------------------------------------------------------------

def test_weighted_by_weight() -> None:
    # 3 a minute, A weight 1 gets 1, B weight 2 gets 2: B (30) full at 15, A has 15 left at 3:
    # 5 more
    close(simulate("weighted", [g("a", 30, weight=1), g("b", 30, weight=2)], 3.0), 20, 0,
          {"a": 20, "b": 15})


def test_weighted_with_an_expiring_heavy_group() -> None:
    # B (weight 3) gets 3 of 4 a minute; its code expires at 2 with 20 - 6 = 14 left (lost);
    # A got 2 and has 8 left at 4 a minute: 2 more
    close(simulate("weighted", [g("a", 10, weight=1), g("b", 20, 2.0, weight=3)], 4.0), 4, 14,
          {"a": 4, "b": None})


# --- least_filled: by capacity -------------------------------------------------------------------

def test_least_filled_by_capacity() -> None:
    # capacities 100 and 50 share 3 a minute as 2 and 1: A (50 left) full at 25, B then has 25
    # left at 3 a minute
    r = simulate("least_filled", [g("a", 50, capacity=100), g("b", 50, capacity=50)], 3.0)
    close(r, 25 + 25 / 3, 0, {"a": 25, "b": 25 + 25 / 3})


def test_least_filled_with_expiry() -> None:
    # equal capacities, 2 a minute: 1 each; B expires at 5 with 10 - 5 = 5 lost; A has 15 left
    # at 2 a minute: 7.5 more
    r = simulate("least_filled", [g("a", 20, capacity=40), g("b", 10, 5.0, capacity=40)], 2.0)
    close(r, 12.5, 5, {"a": 12.5, "b": None})


# --- edges ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["fill", "round_robin", "weighted", "least_filled"])
def test_no_groups_is_exhausted_now(strategy: str) -> None:
    close(simulate(strategy, [], 5.0), 0, 0, {})


@pytest.mark.parametrize("strategy", ["fill", "round_robin", "weighted", "least_filled"])
def test_full_and_expired_groups_do_not_count(strategy: str) -> None:
    r = simulate(strategy, [g("full", 0), g("gone", 10, -1.0), g("a", 6)], 2.0)
    close(r, 3, 0, {"full": None, "gone": None, "a": 3})


@pytest.mark.parametrize("strategy", ["fill", "round_robin", "weighted", "least_filled"])
def test_every_group_expires_before_any_scan(strategy: str) -> None:
    close(simulate(strategy, [g("a", 10, 1.0), g("b", 10, 2.0)], 0.0), 2, 20,
          {"a": None, "b": None})


@pytest.mark.parametrize("strategy", ["fill", "round_robin", "weighted", "least_filled"])
def test_beyond_a_year_is_never(strategy: str) -> None:
    rate = 10 / (HORIZON_MIN * 2)  # 10 places would take two years
    close(simulate(strategy, [g("a", 10)], rate), None, 0, {"a": None})


# --- the pool view's forecast through the API --------------------------------------------------

def _minute_fraction() -> tuple[int, float]:
    now = time.time()
    return int(now // 60), (now % 60) / 60


async def test_the_pool_view_forecast(api: Api) -> None:
    """40 allocations in the 4 minutes before this one (10 each) and 30 more from 10 to 14
    minutes ago: rate_5m = 40 / (4 + f), rate_15m = 70 / (14 + f) where f is how far the current
    minute is. Groups: g1 (fill order 1) 40 left, never expires; g2 30 left, expires in 2
    minutes: at ~8-10 a minute g1 takes everything first, so g2's 30 are lost; g3 disabled;
    g4 expired. Exhaustion: g1 fills at 40 / rate5 and nothing is left."""
    soon = datetime.now(UTC) + timedelta(minutes=2)
    await api.make_pool("fcast", [
        {"capacity": 40}, {"capacity": 30, "expires_at": soon.isoformat()},
        {"capacity": 50, "enabled": False},
        {"capacity": 10, "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
    ])
    # g4's code expired a minute ago (its expiry as the wall clock will have passed it)
    await expire_groups(api.redis, "fcast", ["g4"])
    for _ in range(100):  # the whole request within one minute, else again
        minute, f_before = _minute_fraction()
        if f_before > 0.9:
            await asyncio.sleep((1 - f_before) * 60 + 0.05)
            continue
        rate_key = keys.prefix("fcast") + "r"
        await api.redis.delete(rate_key)
        await api.redis.hset(rate_key, mapping={
            **{str(minute - k): 10 for k in range(1, 5)},
            **{str(minute - k): 6 for k in range(10, 15)}, str(minute - 20): 99})
        view = await api.pool("fcast")
        minute_after, f_after = _minute_fraction()
        if minute_after == minute:
            break
    fc = view["forecast"]
    lo5, hi5 = 40 / (4 + f_after), 40 / (4 + f_before)
    lo15, hi15 = 70 / (14 + f_after), 70 / (14 + f_before)
    assert round(lo5, 2) <= fc["rate_per_min_5m"] <= round(hi5, 2), fc
    assert round(lo15, 2) <= fc["rate_per_min_15m"] <= round(hi15, 2), fc
    assert fc["room_left"] == 40 + 30
    assert fc["room_expiring"] == 30
    assert round(40 / hi5, 1) <= fc["minutes_to_exhaustion"] <= round(40 / lo5, 1), fc
    at = parse_dt(fc["exhausts_at"])
    expected = datetime.now(UTC) + timedelta(minutes=fc["minutes_to_exhaustion"])
    assert abs((at - expected).total_seconds()) < 5, (at, expected)
    assert fc["next_expiry_group"] == "g2"
    assert abs((parse_dt(fc["next_expiry"]) - soon).total_seconds()) < 0.001
    by_group = {x["group_id"]: x for x in fc["groups"]}
    assert set(by_group) == {"g1", "g2"}  # the open groups only
    assert by_group["g2"]["minutes_to_full"] is None
    assert by_group["g1"]["minutes_to_full"] == fc["minutes_to_exhaustion"]
    groups = {x["id"]: x for x in view["groups"]}
    assert groups["g1"]["minutes_to_full"] == fc["minutes_to_exhaustion"]
    assert [groups[x]["minutes_to_full"] for x in ("g2", "g3", "g4")] == [None, None, None]
    assert view["total_remaining"] == 70 and view["total_capacity"] == 70


async def test_a_paused_pool_or_one_without_scans_has_no_rate(api: Api) -> None:
    await api.make_pool("quiet", [{"capacity": 5}])
    fc = (await api.pool("quiet"))["forecast"]
    assert fc["rate_per_min_5m"] == 0 and fc["rate_per_min_15m"] == 0
    assert fc["minutes_to_exhaustion"] is None and fc["exhausts_at"] is None
    assert fc["room_left"] == 5 and fc["room_expiring"] == 0
    assert fc["next_expiry"] is None and fc["next_expiry_group"] is None
    minute, _ = _minute_fraction()
    await api.redis.hset(keys.prefix("quiet") + "r", str(minute - 1), 50)
    assert (await api.pool("quiet"))["forecast"]["minutes_to_exhaustion"] is not None
    await api.ok("POST", "/pools/quiet/pause")
    fc = (await api.pool("quiet"))["forecast"]
    assert fc["minutes_to_exhaustion"] is None  # paused: nothing is taken


async def test_a_pool_without_groups_is_exhausted_now(api: Api) -> None:
    await api.make_pool("empty", [])
    fc = (await api.pool("empty"))["forecast"]
    assert fc["room_left"] == 0 and fc["minutes_to_exhaustion"] == 0 and fc["groups"] == []


async def test_pools_show_has_the_forecast(api: Api, redis_url: str) -> None:
    soon = datetime.now(UTC) + timedelta(hours=2)
    await api.make_pool("shown", [{"capacity": 8}, {"capacity": 4,
                                                    "expires_at": soon.isoformat()}])
    env = {**os.environ, "LIVECODE_REDIS_URL": redis_url}
    out = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "app.cli", "pools", "show", "shown"], capture_output=True,
        text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    fc = shown["forecast"]
    # the CLI leaves out what is null (no scans lately: no time to exhaustion); without scans
    # g2's 4 places expire before they are taken
    assert (fc["room_left"], fc["room_expiring"]) == (12, 4)
    assert "minutes_to_exhaustion" not in fc and "exhausts_at" not in fc
    assert fc["next_expiry_group"] == "g2"
    assert [g["group_id"] for g in fc["groups"]] == ["g1", "g2"]
    api_fc = (await api.pool("shown"))["forecast"]
    assert fc == {k: v for k, v in api_fc.items() if v is not None and k != "groups"} | {
        "groups": [{k: v for k, v in g.items() if v is not None} for g in api_fc["groups"]]}
