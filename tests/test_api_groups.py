"""The admin REST API (/api/v1), end to end over HTTP. Groups: add (one or a list, all or nothing),
patch, delete, reorder, reset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.store import keys
from tests.api_helpers import (
    Api,
    assert_error,
    check_indexes,
    group_url,
    iso,
    parse_dt,
    unchanged,
)


async def test_add_one_group_returns_an_object_and_a_list_returns_a_list(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    one = await api.ok("POST", "/pools/pool-a/groups", 201,
                       json={"id": "first", "url": "https://chat.example.com/1"})
    assert isinstance(one, dict)
    assert one["id"] == "first" and one["url"] == "https://chat.example.com/1"
    assert (one["capacity"], one["count"], one["remaining"], one["weight"]) == (200, 0, 200, 1)
    assert (one["enabled"], one["mode"], one["expires_at"], one["expired"]) == (
        True, None, None, False
    )
    many = await api.ok("POST", "/pools/pool-a/groups", 201, json=[
        {"id": "second", "url": "https://chat.example.com/2", "capacity": 7, "name": "Two"},
        {"id": "third", "url": "https://chat.example.com/3", "weight": 4, "enabled": False,
         "mode": "page"},
    ])
    assert isinstance(many, list) and [g["id"] for g in many] == ["second", "third"]
    assert (many[0]["capacity"], many[0]["name"]) == (7, "Two")
    assert (many[1]["weight"], many[1]["enabled"], many[1]["mode"]) == (4, False, "page")
    listed = await api.ok("GET", "/pools/pool-a/groups")
    assert [g["id"] for g in listed] == ["first", "second", "third"]
    assert [g["position"] for g in listed] == sorted(g["position"] for g in listed)
    assert len({g["position"] for g in listed}) == 3
    # auto ids for groups without one
    auto = await api.ok("POST", "/pools/pool-a/groups", 201, json=[
        {"url": "https://chat.example.com/4"}, {"url": "https://chat.example.com/5"},
    ])
    assert len({g["id"] for g in auto}) == 2
    assert {g["id"] for g in auto}.isdisjoint({"first", "second", "third"})
    assert len(await api.ok("GET", "/pools/pool-a/groups")) == 5


BAD_BULK = [
    pytest.param([{"id": "n1"}, {"id": "n1"}], 422, id="duplicate-in-list"),
    pytest.param([{"id": "n1"}, {"id": "g1"}], 409, id="existing-id"),
    pytest.param([{"id": "n1"}, {"id": "n2", "url": "http://chat.example.com/x"}], 422,
                 id="http-url"),
    pytest.param([{"id": "n1"}, {"id": "n2", "capacity": 0}], 422, id="capacity-0"),
    pytest.param([{"id": "n1"}, {"id": "n2", "colour": "red"}], 422, id="unknown-field"),
    pytest.param([{"id": "n1"}, {"id": "Bad_Id"}], 422, id="bad-group-id"),
    pytest.param([{"id": "n1"}, {"id": "n2", "url": None}], 422, id="no-url"),
    pytest.param([], 422, id="empty-list"),
]


@pytest.mark.parametrize(("entries", "status"), BAD_BULK)
async def test_bulk_add_is_all_or_nothing(
    api: Api, entries: list[dict[str, Any]], status: int
) -> None:
    await api.make_pool("pool-a", 1)
    body = [{"url": "https://chat.example.com/new", **e} for e in entries]
    async with unchanged(api.redis):
        assert_error(await api.call("POST", "/pools/pool-a/groups", json=body), status)
    assert [g["id"] for g in await api.ok("GET", "/pools/pool-a/groups")] == ["g1"]


async def test_failed_first_add_to_a_pool_writes_nothing(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups",
                           json={"url": "javascript:alert(1)"})
        assert_error(r, 422, "invalid_input")


async def test_adding_groups_to_an_unknown_pool_writes_nothing(api: Api) -> None:
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/nope-pool/groups",
                           json={"url": "https://chat.example.com/x"})
        assert_error(r, 404, "not_found")
    await api.ok("POST", "/pools", 201, json={"id": "nope-pool"})


async def test_auto_group_ids_never_collide_with_chosen_ids(api: Api) -> None:
    await api.make_pool("pool-a", 2)  # groups g1, g2
    one = await api.call("POST", "/pools/pool-a/groups", json={"url": "https://c.example/x"})
    assert one.status_code == 201, one.text
    await api.ok("POST", "/pools", 201, json={"id": "pool-b"})
    both = await api.call("POST", "/pools/pool-b/groups", json=[
        {"id": "g1", "url": "https://c.example/1"}, {"url": "https://c.example/2"},
    ])
    assert both.status_code == 201, both.text


async def test_concurrent_adds_without_ids_all_succeed(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    ops = [api.call("POST", "/pools/pool-a/groups", json={"url": f"https://c.example/{i}"})
           for i in range(10)]
    responses = await asyncio.gather(*ops)
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert len(await api.ok("GET", "/pools/pool-a/groups")) == 10


async def test_concurrent_creates_of_one_id_have_exactly_one_winner(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    pools = await asyncio.gather(*(
        api.call("POST", "/pools", json={"id": "pool-b", "name": str(i)}) for i in range(10)
    ))
    assert sorted(r.status_code for r in pools) == [201] + [409] * 9
    winner = next(r.json()["name"] for r in pools if r.status_code == 201)
    assert (await api.pool("pool-b"))["name"] == winner
    groups = await asyncio.gather(*(
        api.call("POST", "/pools/pool-a/groups", json={"id": "solo", "url": f"https://c.x/{i}"})
        for i in range(10)
    ))
    assert sorted(r.status_code for r in groups) == [201] + [409] * 9
    listed = await api.ok("GET", "/pools/pool-a/groups")
    assert [g["id"] for g in listed] == ["solo"]
    await check_indexes(api.redis, "pool-a")


async def test_non_ascii_urls_are_stored_and_sent_as_ascii(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    g = await api.ok("POST", "/pools/pool-a/groups", 201,
                     json={"url": "https://bücher.example/gruppe?q=ä"})
    assert g["url"] == "https://xn--bcher-kva.example/gruppe?q=%C3%A4"
    assert (await api.scan("pool-a")).headers["location"] == g["url"]


async def test_list_groups_of_an_unknown_pool_is_404(api: Api) -> None:
    assert_error(await api.call("GET", "/pools/no-such-pool/groups"), 404, "not_found")


async def test_patch_group_changes_each_field(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    changes: list[dict[str, Any]] = [
        {"name": "Renamed"},
        {"url": "https://chat.example.com/moved"},
        {"capacity": 42},
        {"expires_at": iso(later)},
        {"weight": 17},
        {"enabled": False},
        {"mode": "page"},
    ]
    for change in changes:
        r = await api.ok("PATCH", "/pools/pool-a/groups/g1", json=change)
        (field, value), = change.items()
        got = await api.group("pool-a", "g1")
        if field == "expires_at":
            assert parse_dt(r[field]) == parse_dt(got[field]) == later
        else:
            assert r[field] == got[field] == value, field
    g1 = await api.group("pool-a", "g1")
    assert (g1["name"], g1["url"], g1["capacity"], g1["weight"]) == (
        "Renamed", "https://chat.example.com/moved", 42, 17
    )
    assert (g1["enabled"], g1["mode"], g1["remaining"]) == (False, "page", 42)
    # null clears the expiry and the group's own mode; other nulls leave the field alone
    r = await api.ok("PATCH", "/pools/pool-a/groups/g1",
                     json={"expires_at": None, "mode": None, "capacity": None})
    assert (r["expires_at"], r["mode"], r["capacity"]) == (None, None, 42)
    g2 = await api.group("pool-a", "g2")  # the other group is untouched
    assert (g2["name"], g2["capacity"], g2["weight"], g2["enabled"], g2["mode"]) == (
        "", 200, 1, True, None
    )


async def test_patch_unknown_group_or_pool_is_404(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("PATCH", "/pools/pool-a/groups/nope", json={"capacity": 5})
        assert assert_error(r, 404, "not_found")["details"] == {"group_id": "nope"}
        r = await api.call("PATCH", "/pools/nope-pool/groups/g1", json={"capacity": 5})
        assert_error(r, 404, "not_found")
        r = await api.call("PATCH", "/pools/pool-a/groups/Bad%7Bx%7D", json={"capacity": 5})
        assert_error(r, 404, "not_found")


async def test_delete_group(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 1}, {"capacity": 1}, {"capacity": 1}])
    r = await api.call("DELETE", "/pools/pool-a/groups/g1")
    assert r.status_code == 204 and r.content == b""
    assert [g["id"] for g in await api.ok("GET", "/pools/pool-a/groups")] == ["g2", "g3"]
    assert await api.redis.exists(keys.group("pool-a", "g1")) == 0
    await check_indexes(api.redis, "pool-a")
    assert await api.scan_group("pool-a") == "g2"
    async with unchanged(api.redis):
        assert_error(await api.call("DELETE", "/pools/pool-a/groups/g1"), 404, "not_found")
        assert_error(await api.call("DELETE", "/pools/nope-pool/groups/g2"), 404, "not_found")
    # the id can be used again, by a new group that starts at 0
    await api.ok("POST", "/pools/pool-a/groups", 201,
                 json={"id": "g1", "url": group_url("pool-a", "g1"), "capacity": 1})
    await check_indexes(api.redis, "pool-a")
    assert await api.scan_group("pool-a") == "g3"
    assert await api.scan_group("pool-a") == "g1"
    assert await api.scan_group("pool-a") is None


async def test_reorder_changes_the_fill_order(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 1}, {"capacity": 1}, {"capacity": 1}])
    r = await api.ok("POST", "/pools/pool-a/groups/reorder", json={"group_ids": ["g3", "g1", "g2"]})
    assert [g["id"] for g in r] == ["g3", "g1", "g2"]
    assert [g["position"] for g in r] == [1, 2, 3]
    assert [g["id"] for g in await api.ok("GET", "/pools/pool-a/groups")] == ["g3", "g1", "g2"]
    await check_indexes(api.redis, "pool-a")
    assert [await api.scan_group("pool-a") for _ in range(4)] == ["g3", "g1", "g2", None]
    # a full group keeps its new place when it becomes eligible again
    await api.ok("POST", "/pools/pool-a/groups/reorder", json={"group_ids": ["g2", "g3", "g1"]})
    for gid in ("g1", "g3"):
        await api.ok("POST", f"/pools/pool-a/groups/{gid}/reset")
    await check_indexes(api.redis, "pool-a")
    assert [await api.scan_group("pool-a") for _ in range(3)] == ["g3", "g1", None]


async def test_reorder_restarts_round_robin_from_the_new_first_group(api: Api) -> None:
    await api.make_pool("pool-a", 3, strategy="round_robin")
    assert [await api.scan_group("pool-a") for _ in range(2)] == ["g1", "g2"]
    await api.ok("POST", "/pools/pool-a/groups/reorder", json={"group_ids": ["g2", "g3", "g1"]})
    got = [await api.scan_group("pool-a") for _ in range(4)]
    assert got == ["g2", "g3", "g1", "g2"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"group_ids": ["g1", "g2"]}, 422, id="missing-one"),
        pytest.param({"group_ids": ["g1", "g2", "g3", "g4"]}, 422, id="unknown-one"),
        pytest.param({"group_ids": ["g1", "g2", "g2"]}, 422, id="twice"),
        pytest.param({"group_ids": ["g1", "g2", "g3", "g3"]}, 422, id="twice-full-length"),
        pytest.param({"group_ids": []}, 422, id="empty"),
        pytest.param({}, 422, id="no-field"),
        pytest.param({"group_ids": "g1,g2,g3"}, 422, id="not-a-list"),
    ],
)
async def test_bad_reorder_is_rejected_and_changes_nothing(
    api: Api, body: dict[str, Any], status: int
) -> None:
    await api.make_pool("pool-a", 3)
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/reorder", json=body)
        assert_error(r, status, "invalid_input")


async def test_reorder_with_an_unknown_field_is_422(api: Api) -> None:
    await api.make_pool("pool-a", 3)
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/reorder",
                           json={"group_ids": ["g3", "g2", "g1"], "dry_run": True})
        assert_error(r, 422, "invalid_input")


async def test_reorder_unknown_pool_is_404(api: Api) -> None:
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/nope-pool/groups/reorder", json={"group_ids": ["g1"]})
        assert_error(r, 404, "not_found")


async def test_reset_puts_the_count_back_to_zero(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 2}, {"capacity": 5}])
    assert [await api.scan_group("pool-a") for _ in range(3)] == ["g1", "g1", "g2"]
    assert (await api.group("pool-a", "g1"))["remaining"] == 0
    r = await api.ok("POST", "/pools/pool-a/groups/g1/reset")
    assert (r["count"], r["remaining"], r["fill_ratio"]) == (0, 2, 0.0)
    await check_indexes(api.redis, "pool-a")
    assert [await api.scan_group("pool-a") for _ in range(3)] == ["g1", "g1", "g2"]
    assert (await api.group("pool-a", "g2"))["count"] == 2
    async with unchanged(api.redis):
        assert_error(await api.call("POST", "/pools/pool-a/groups/g9/reset"), 404, "not_found")
        assert_error(await api.call("POST", "/pools/nope-pool/groups/g1/reset"), 404)
