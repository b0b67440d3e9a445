"""The admin REST API (/api/v1), end to end over HTTP: an in-process app on a real Redis, with
real API keys, real QR images, and scans through the same app to prove that every change takes
effect on the very next scan. Every error case also proves that nothing stored changed."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
import redis.asyncio as aredis
import zxingcpp
from asgi_lifespan import LifespanManager
from PIL import Image

from app.main import create_app
from app.qr import MAX_UPLOAD_BYTES, decode_qr_image
from app.settings import Settings
from app.store import keys
from app.store.apikeys import ApiKeyStore
from tests.api_helpers import (
    API,
    BASE,
    PUBLIC_URL,
    Api,
    assert_error,
    blank_image,
    check_indexes,
    group_url,
    keyspace_misses,
    new_visitor,
    pool_keys_in_redis,
    qr_bytes,
    unchanged,
)

WECHAT = "https://weixin.qq.com/g/AbC123"
WHATSAPP = "https://chat.whatsapp.com/AbC"
TELEGRAM = "https://t.me/+AbCdEf"


async def _open_api(redis_url: str, **settings: Any) -> AsyncIterator[Api]:
    # these tests are about the API, not the scan deadline: a CPU-starved run must not turn
    # their scans into 503s (the deadline has its own tests)
    settings.setdefault("deadline_ms", 3000)
    app = create_app(Settings(redis_url=redis_url, public_url=PUBLIC_URL, **settings))
    client = aredis.Redis.from_url(redis_url)
    apikeys = ApiKeyStore(client)
    _, admin = await apikeys.create("admin", "test admin")
    _, read = await apikeys.create("read", "test read")
    try:
        async with LifespanManager(app) as manager:  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                api = Api(http, transport, client, admin, read)
                # A key's first use stamps its last_used (then at most once a minute): use both
                # now, so that the snapshots the tests take stay still.
                for key in ("admin", "read"):
                    assert (await api.call("GET", "/pools", key=key)).status_code == 200
                yield api
    finally:
        await client.aclose()


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    async for a in _open_api(redis_url):
        yield a


def iso(dt: datetime) -> str:
    return dt.isoformat()


def parse_dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# === pools ====================================================================================


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
    async with unchanged(api.redis):
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
    async with unchanged(api.redis):
        page = await api.scan("pool-a", visitor)
        assert page.status_code == 200 and "paused" in page.text
        assert "location" not in page.headers
        assert (await api.scan("pool-a")).status_code == 200
    r = await api.ok("POST", "/pools/pool-a/resume")
    assert r["status"] == "active"
    assert await api.scan_group("pool-a", visitor) == "g1"
    assert (await api.group("pool-a", "g1"))["count"] == 1


# === groups ===================================================================================


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


# === upload ===================================================================================


def upload_files(image: bytes, filename: str = "qr.png", ctype: str = "image/png") -> Any:
    return {"file": (filename, image, ctype)}


async def test_upload_wechat_png_makes_a_page_mode_group_expiring_in_7_days(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    before = datetime.now(UTC)
    r = await api.call("POST", "/pools/pool-a/groups/upload", files=upload_files(qr_bytes(WECHAT)),
                       data={"name": "WeChat 1", "capacity": "150"})
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    g = r.json()
    assert (g["url"], g["mode"], g["name"], g["capacity"]) == (WECHAT, "page", "WeChat 1", 150)
    expires = parse_dt(g["expires_at"])
    week = timedelta(days=7)
    assert before + week - timedelta(seconds=1) <= expires <= after + week + timedelta(seconds=1)
    assert g["expired"] is False
    assert await api.group("pool-a", g["id"]) == g
    # a scan shows the long-pressable page with the WeChat link
    page = await api.scan("pool-a")
    assert page.status_code == 200 and "data:image/png;base64," in page.text
    assert WECHAT in page.text
    assert (await api.group("pool-a", g["id"]))["count"] == 1


async def test_upload_whatsapp_jpeg_makes_a_redirect_group_without_expiry(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    r = await api.call("POST", "/pools/pool-a/groups/upload",
                       files=upload_files(qr_bytes(WHATSAPP, "JPEG"), "qr.jpg", "image/jpeg"),
                       data={"id": "wa-1", "weight": "3", "enabled": "true"})
    assert r.status_code == 201, r.text
    g = r.json()
    assert (g["id"], g["url"], g["weight"], g["enabled"]) == ("wa-1", WHATSAPP, 3, True)
    assert g["expires_at"] is None and g["mode"] in (None, "redirect")
    scan = await api.scan("pool-a")
    assert (scan.status_code, scan.headers["location"]) == (302, WHATSAPP)


async def test_upload_honours_explicit_fields_over_the_wechat_defaults(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    expires = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    r = await api.call("POST", "/pools/pool-a/groups/upload",
                       files=upload_files(qr_bytes(WECHAT, "WEBP"), "qr.webp", "image/webp"),
                       data={"expires_at": iso(expires), "mode": "redirect", "enabled": "false"})
    assert r.status_code == 201, r.text
    g = r.json()
    assert parse_dt(g["expires_at"]) == expires
    assert (g["mode"], g["enabled"], g["url"]) == ("redirect", False, WECHAT)
    r = await api.call("POST", "/pools/pool-a/groups/upload",
                       files=upload_files(qr_bytes(TELEGRAM)), data={"expires_at": iso(expires)})
    assert r.status_code == 201, r.text
    assert parse_dt(r.json()["expires_at"]) == expires and r.json()["mode"] is None


def _multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "XyZb0und") -> bytes:
    out = io.BytesIO()
    for name, value, filename in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disp}\r\n".encode())
        if filename:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def _big_png(size: int) -> bytes:
    """A real QR PNG padded to about `size` bytes with an ancillary chunk."""
    png = qr_bytes(WHATSAPP)
    pad = b"x" * (size - len(png) + 16)
    chunk = struct.pack(">I", len(pad)) + b"tEXt" + pad
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + pad))
    return png[:33] + chunk + png[33:]


UPLOAD_ERRORS: list[Any] = [
    pytest.param({"files": upload_files(blank_image())}, 422, id="no-qr-code"),
    pytest.param({"files": upload_files(b"GIF89a" + b"\0" * 64, "a.gif", "image/gif")}, 422,
                 id="gif"),
    pytest.param({"files": upload_files(qr_bytes("hello, not a url"))}, 422, id="not-a-url"),
    pytest.param({"files": upload_files(qr_bytes("http://chat.example.com/x"))}, 422,
                 id="http-url-in-code"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"capacity": "0"}}, 422,
                 id="capacity-0"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"capacity": "lots"}},
                 422, id="capacity-text"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"colour": "red"}}, 422,
                 id="unknown-field"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"id": "g1"}}, 409,
                 id="duplicate-id"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"mode": "popup"}}, 422,
                 id="bad-mode"),
    pytest.param({"data": {"name": "no file"}, "files": {"other": ("a.txt", b"x", "text/plain")}},
                 422, id="missing-file"),
    pytest.param({"data": {"file": "just text"}}, 422, id="file-as-text-field"),
    pytest.param({"json": {"file": "x"}}, 422, id="json-not-multipart"),
    pytest.param({"content": b"raw", "headers": {"content-type": "image/png"}}, 422,
                 id="raw-image-not-multipart"),
    pytest.param({"content": _multipart([("file", qr_bytes(WHATSAPP), "a.png")]),
                  "headers": {"content-type": "multipart/form-data"}}, 422, id="no-boundary"),
    pytest.param({"content": b"--XyZb0und\r\nbroken", "headers": {
        "content-type": "multipart/form-data; boundary=XyZb0und"}}, 422, id="truncated-form"),
    pytest.param({"files": upload_files(_big_png(MAX_UPLOAD_BYTES + 1))}, 413,
                 id="file-just-over-2mb"),
    pytest.param({"files": upload_files(_big_png(3 * 1024 * 1024))}, 413, id="body-3mb"),
]


@pytest.mark.parametrize(("kwargs", "status"), UPLOAD_ERRORS)
async def test_upload_errors_change_nothing(
    api: Api, kwargs: dict[str, Any], status: int
) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/upload", **kwargs)
        error = assert_error(r, status)
    if status == 413:
        assert error["code"] == "payload_too_large"


async def test_upload_streamed_without_content_length_is_capped(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    body = _multipart([("file", _big_png(3 * 1024 * 1024), "a.png")])

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/upload", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=XyZb0und"})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large")


async def test_upload_a_file_just_under_the_limit_is_accepted(api: Api) -> None:
    await api.make_pool("pool-a", 0)
    image = _big_png(MAX_UPLOAD_BYTES - 64)
    assert len(image) <= MAX_UPLOAD_BYTES
    r = await api.call("POST", "/pools/pool-a/groups/upload", files=upload_files(image))
    assert r.status_code == 201, r.text
    assert r.json()["url"] == WHATSAPP


async def test_upload_to_an_unknown_or_malformed_pool_is_404(api: Api) -> None:
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/Not_A_Pool/groups/upload",
                           files=upload_files(qr_bytes(WHATSAPP)))
        assert_error(r, 404, "not_found")


# === status ===================================================================================


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
    assert pool["stats"]["new"] == 6
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


# === poster QR ================================================================================


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size


async def test_poster_png_decodes_to_the_public_scan_url(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.png", key="read")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert decode_qr_image(r.content) == "https://lc.example/s/pool-a"


async def test_poster_png_options_change_the_image(api: Api) -> None:
    await api.make_pool("pool-a", 1)

    async def png(**params: Any) -> bytes:
        r = await api.call("GET", "/pools/pool-a/qr.png", params=params)
        assert r.status_code == 200, r.text
        assert decode_qr_image(r.content) == "https://lc.example/s/pool-a"
        return r.content

    w3, h3 = _png_size(await png(scale=3, border=0))
    w6, _ = _png_size(await png(scale=6, border=0))
    w6b, _ = _png_size(await png(scale=6, border=5))
    assert w3 == h3 and w6 == 2 * w3
    assert w6b == w6 + 2 * 5 * 6
    default_w, _ = _png_size(await png())
    assert default_w == (w3 // 3 + 2 * 4) * 10
    for level in ("l", "H"):
        codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(await png(error=level))))
        assert [c.text for c in codes] == ["https://lc.example/s/pool-a"]
        if level == "H":
            assert codes[0].ec_level == "H"


async def test_poster_svg_is_an_svg_document(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.svg", params={"scale": 4, "border": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(r.content)
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg")
    png = await api.call("GET", "/pools/pool-a/qr.png", params={"scale": 4, "border": 2})
    width, height = _png_size(png.content)
    assert (root.get("width"), root.get("height")) == (str(width), str(height))
    assert root.get("viewBox") is not None


@pytest.mark.parametrize(
    "params",
    [{"scale": 0}, {"scale": 51}, {"scale": "big"}, {"border": -1}, {"border": 21},
     {"error": "x"}, {"error": "mm"}, {"error": ""}],
)
@pytest.mark.parametrize("fmt", ["png", "svg"])
async def test_poster_bad_options_are_422(api: Api, params: dict[str, Any], fmt: str) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("GET", f"/pools/pool-a/qr.{fmt}", params=params)
        assert_error(r, 422, "invalid_input")


async def test_poster_of_an_unknown_pool_is_404(api: Api) -> None:
    for path in ("/pools/nope-pool/qr.png", "/pools/nope-pool/qr.svg", "/pools/NOPE/qr.png"):
        assert_error(await api.call("GET", path), 404, "not_found")
    assert (await api.call("GET", "/pools/nope-pool/qr.gif")).status_code in (404, 422)


# === changes take effect on the very next scan ================================================


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


# === validation and errors ====================================================================

BAD_URLS = [
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
    pytest.param("http://chat.example.com/g", id="http"),
    pytest.param("//chat.example.com/g", id="scheme-relative"),
    pytest.param("https://a@b.example/g", id="userinfo"),
    pytest.param("https://user:pw@b.example/g", id="userinfo-password"),
    pytest.param("https://chat.example.com/g\r\nSet-Cookie: x=1", id="crlf"),
    pytest.param("https://chat.example.com/a b", id="space"),
    pytest.param(" https://chat.example.com/g", id="leading-space"),
    pytest.param("https://chat.example.com/" + "a" * 2030, id="too-long"),
    pytest.param("https://", id="no-host"),
    pytest.param("https:\\\\evil.example", id="backslash"),
    pytest.param("ftp://chat.example.com/g", id="ftp"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_bad_target_urls_are_rejected_everywhere(api: Api, url: str) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups", json={"id": "g2", "url": url})
        assert_error(r, 422, "invalid_input")
        r = await api.call("PATCH", "/pools/pool-a/groups/g1", json={"url": url})
        assert_error(r, 422, "invalid_input")
        r = await api.call("PATCH", "/pools/pool-a", json={"fallback": {"url": url}})
        assert_error(r, 422, "invalid_input")
        r = await api.call("PATCH", "/pools/pool-a", json={"fallback": {"contact_url": url}})
        assert_error(r, 422, "invalid_input")
        r = await api.call("POST", "/pools", json={"id": "pool-b", "fallback": {"url": url}})
        assert_error(r, 422, "invalid_input")
    ok = "https://chat.example.com/" + "a" * (2048 - len("https://chat.example.com/"))
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"url": ok})


async def test_http_targets_are_allowed_when_configured(redis_url: str) -> None:
    async for api in _open_api(redis_url, allow_http_targets=True):
        await api.make_pool("pool-a", [{"url": "http://chat.example.com/plain"}])
        assert (await api.scan("pool-a")).headers["location"] == "http://chat.example.com/plain"
        r = await api.call("POST", "/pools/pool-a/groups", json={"url": "javascript:alert(1)"})
        assert_error(r, 422)


async def test_missing_or_bad_key_is_401_with_a_challenge(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    cases: list[tuple[str | None, str]] = [
        (None, "Bearer"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer", "Bearer"),
        ("Bearer not-a-key", 'Bearer error="invalid_token"'),
        ("Bearer lc_0000abcd_" + "A" * 43, 'Bearer error="invalid_token"'),
        (f"Bearer {api.admin_key}x", 'Bearer error="invalid_token"'),
        (f"Bearer {api.admin_key[:-1]}", 'Bearer error="invalid_token"'),
    ]
    async with unchanged(api.redis):
        for key, challenge in cases:
            for method, path in [("GET", "/pools"), ("GET", "/pools/pool-a"),
                                 ("DELETE", "/pools/pool-a"), ("GET", "/pools/pool-a/qr.png")]:
                r = await api.call(method, path, key=key)
                assert_error(r, 401, "unauthorized")
                assert r.headers["www-authenticate"] == challenge, (key, method, path)


async def test_a_revoked_key_is_401(api: Api) -> None:
    store = ApiKeyStore(api.redis)
    public, key = await store.create("admin")
    assert (await api.call("GET", "/pools", key=f"Bearer {key}")).status_code == 200
    await store.revoke(public.id)
    assert_error(await api.call("GET", "/pools", key=f"Bearer {key}"), 401, "unauthorized")


async def test_unauthenticated_request_with_an_invalid_body_is_401(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        for key in (None, "Bearer lc_0000abcd_" + "A" * 43, "read"):
            r = await api.call("POST", "/pools/pool-a/groups", key=key, json={"capacity": "x"})
            assert_error(r, 403 if key == "read" else 401)


async def test_unauthenticated_request_with_bad_json_is_401(api: Api) -> None:
    """Authentication comes before anything is said about the body."""
    r = await api.call("POST", "/pools", key=None, content=b"{not json",
                       headers={"content-type": "application/json"})
    assert_error(r, 401, "unauthorized")


MUTATING: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/pools", {"json": {"id": "pool-z"}}),
    ("PATCH", "/pools/pool-a", {"json": {"name": "x"}}),
    ("DELETE", "/pools/pool-a", {}),
    ("POST", "/pools/pool-a/pause", {}),
    ("POST", "/pools/pool-a/resume", {}),
    ("POST", "/pools/pool-a/groups", {"json": {"url": "https://c.example/x"}}),
    ("POST", "/pools/pool-a/groups/upload", {"files": {"file": ("a.png", b"x", "image/png")}}),
    ("PATCH", "/pools/pool-a/groups/g1", {"json": {"capacity": 9}}),
    ("DELETE", "/pools/pool-a/groups/g1", {}),
    ("POST", "/pools/pool-a/groups/reorder", {"json": {"group_ids": ["g2", "g1"]}}),
    ("POST", "/pools/pool-a/groups/g1/reset", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), MUTATING,
                         ids=[f"{m} {p}" for m, p, _ in MUTATING])
async def test_read_key_on_a_mutating_route_is_403(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    await api.make_pool("pool-a", [{"capacity": 1}, {"capacity": 1}])
    await api.scan("pool-a")
    async with unchanged(api.redis):
        r = await api.call(method, path, key="read", **kwargs)
        assert_error(r, 403, "forbidden")
        assert "insufficient_scope" in r.headers["www-authenticate"]
        r = await api.call(method, path, key=None, **kwargs)
        assert_error(r, 401, "unauthorized")


async def test_read_key_can_get_everything(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    await api.scan("pool-a")
    for path in ("/pools", "/pools/pool-a", "/pools/pool-a/groups", "/pools/pool-a/qr.png",
                 "/pools/pool-a/qr.svg"):
        r = await api.call("GET", path, key="read")
        assert r.status_code == 200, (path, r.text)
        assert r.content == (await api.call("GET", path, key="admin")).content, path
    assert (await api.call("GET", "/pools/pool-a", key="read")).json()["groups"][0]["count"] == 1


NOT_FOUND: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/pools/{p}", {}),
    ("PATCH", "/pools/{p}", {"json": {"name": "x"}}),
    ("DELETE", "/pools/{p}", {}),
    ("POST", "/pools/{p}/pause", {}),
    ("POST", "/pools/{p}/resume", {}),
    ("GET", "/pools/{p}/groups", {}),
    ("POST", "/pools/{p}/groups/reorder", {"json": {"group_ids": ["g1"]}}),
    ("PATCH", "/pools/{p}/groups/g1", {"json": {"capacity": 9}}),
    ("DELETE", "/pools/{p}/groups/g1", {}),
    ("POST", "/pools/{p}/groups/g1/reset", {}),
    ("GET", "/pools/{p}/qr.png", {}),
    ("GET", "/pools/{p}/qr.svg", {}),
]
MALFORMED_IDS = ["Pool-A", "po", "p" * 65, "-pool", "pool-", "pool_a", "pool.a", "pool%7Ba%7D",
                 "%20pool-a", "pool-a%20"]


@pytest.mark.parametrize(("method", "path", "kwargs"), NOT_FOUND,
                         ids=[f"{m} {p}" for m, p, _ in NOT_FOUND])
async def test_unknown_and_malformed_pool_ids_are_404(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call(method, path.format(p="no-such-pool"), **kwargs)
        assert_error(r, 404, "not_found")
        for bad in MALFORMED_IDS:
            misses = await keyspace_misses(api.redis)
            r = await api.call(method, path.format(p=bad), **kwargs)
            assert_error(r, 404, "not_found")
            # a malformed id is refused before it reaches any key name
            assert await keyspace_misses(api.redis) == misses, bad


async def test_adding_groups_to_a_malformed_pool_id_is_404(api: Api) -> None:
    async with unchanged(api.redis):
        for bad in MALFORMED_IDS:
            r = await api.call("POST", f"/pools/{bad}/groups",
                               json={"url": "https://c.example/x"})
            assert_error(r, 404, "not_found")


async def test_a_pool_id_with_a_trailing_newline_is_refused_before_redis(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    misses = await keyspace_misses(api.redis)
    assert_error(await api.call("GET", "/pools/pool-a%0A"), 404, "not_found")
    assert await keyspace_misses(api.redis) == misses


async def test_duplicate_pool_or_group_id_is_409(api: Api) -> None:
    await api.make_pool("pool-a", 1, name="Original")
    await api.scan("pool-a")
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools", json={"id": "pool-a", "name": "Copy"})
        assert assert_error(r, 409, "conflict")["details"] == {"pool_id": "pool-a"}
        r = await api.call("POST", "/pools/pool-a/groups",
                           json={"id": "g1", "url": "https://c.example/other", "capacity": 5})
        assert assert_error(r, 409, "conflict")["details"] == {"group_id": "g1"}
    assert (await api.pool("pool-a"))["name"] == "Original"


INVALID_BODIES: list[Any] = [
    pytest.param("POST", "/pools", b"{not json", id="pool-bad-json"),
    pytest.param("POST", "/pools", b"", id="pool-empty-body"),
    pytest.param("POST", "/pools", {"id": 7}, id="pool-id-int"),
    pytest.param("POST", "/pools", {"id": "Bad Id"}, id="pool-id-malformed"),
    pytest.param("POST", "/pools", {"id": "pool-b", "strategy": "random"}, id="bad-strategy"),
    pytest.param("POST", "/pools", {"id": "pool-b", "status": "gone"}, id="bad-status"),
    pytest.param("POST", "/pools", {"id": "pool-b", "mode": "popup"}, id="bad-mode"),
    pytest.param("POST", "/pools", {"id": "pool-b", "owner": "me"}, id="pool-unknown-field"),
    pytest.param("POST", "/pools", {"id": "pool-b", "sticky_ttl_s": 59}, id="ttl-too-short"),
    pytest.param("POST", "/pools", {"id": "pool-b", "fallback": {"x": 1}}, id="fallback-field"),
    pytest.param("POST", "/pools", {"id": "pool-b", "name": "n" * 201}, id="long-name"),
    pytest.param("POST", "/pools", [{"id": "pool-b"}], id="pool-list"),
    pytest.param("PATCH", "/pools/pool-a", {"strategy": "random"}, id="patch-bad-strategy"),
    pytest.param("PATCH", "/pools/pool-a", {"colour": "red"}, id="patch-unknown-field"),
    pytest.param("PATCH", "/pools/pool-a", {"id": "pool-c"}, id="patch-id"),
    pytest.param("PATCH", "/pools/pool-a", b"[1,", id="patch-bad-json"),
    pytest.param("POST", "/pools/pool-a/groups", b"{", id="group-bad-json"),
    pytest.param("POST", "/pools/pool-a/groups", {"url": "https://c.example/x", "capacity": 0},
                 id="capacity-0"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "capacity": 100_001}, id="capacity-100001"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "capacity": "many"}, id="capacity-text"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "capacity": 2.5}, id="capacity-float"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "weight": 0}, id="weight-0"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "enabled": "perhaps"}, id="enabled-text"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "expires_at": "soon"}, id="expires-text"),
    pytest.param("POST", "/pools/pool-a/groups",
                 {"url": "https://c.example/x", "expires_at": 1_800_000_000}, id="expires-number"),
    pytest.param("POST", "/pools", {"id": "pool-b", "valid_from": 1_700_000_000_000},
                 id="valid-from-number"),
    pytest.param("PATCH", "/pools/pool-a", {"valid_until": 2.5e9}, id="patch-valid-until-number"),
    pytest.param("POST", "/pools/pool-a/groups", {"url": 12}, id="url-int"),
    pytest.param("POST", "/pools/pool-a/groups", {"url": "https://c.example/x", "pos": 1},
                 id="group-unknown-field"),
    pytest.param("POST", "/pools/pool-a/groups", "https://c.example/x", id="group-string"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"capacity": 0}, id="patch-capacity-0"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"capacity": 100_001},
                 id="patch-capacity-100001"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"weight": 10_001}, id="patch-weight"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"count": 0}, id="patch-count"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"mode": "popup"}, id="patch-mode"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", b"nope", id="patch-group-bad-json"),
]


@pytest.mark.parametrize(("method", "path", "body"), INVALID_BODIES)
async def test_invalid_bodies_are_422_and_change_nothing(
    api: Api, method: str, path: str, body: Any
) -> None:
    await api.make_pool("pool-a", 1)
    await api.scan("pool-a")
    kwargs: dict[str, Any] = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes) else {"json": body}
    )
    async with unchanged(api.redis):
        r = await api.call(method, path, **kwargs)
        error = assert_error(r, 422, "invalid_input")
    if not isinstance(body, bytes):
        assert error["details"], error  # says what was wrong


async def test_capacity_bounds_are_inclusive(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 1}, {"capacity": 100_000}])
    r = await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"capacity": 100_000})
    assert r["capacity"] == 100_000
    r = await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"capacity": 1})
    assert r["capacity"] == 1


async def test_wrong_method_is_405_in_the_error_shape(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        assert_error(await api.call("PUT", "/pools/pool-a", json={}), 405, "method_not_allowed")
        assert_error(await api.call("DELETE", "/pools"), 405, "method_not_allowed")


# === concurrency ==============================================================================


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


@pytest.mark.parametrize("strategy", ["fill", "round_robin", "weighted", "least_filled"])
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


# === OpenAPI ==================================================================================


async def test_openapi_lists_every_admin_route(api: Api) -> None:
    r = await api.http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    expected = {
        f"{API}/pools": {"get", "post"},
        f"{API}/pools/{{pool_id}}": {"get", "patch", "delete"},
        f"{API}/pools/{{pool_id}}/pause": {"post"},
        f"{API}/pools/{{pool_id}}/resume": {"post"},
        f"{API}/pools/{{pool_id}}/qr.{{fmt}}": {"get"},
        f"{API}/pools/{{pool_id}}/groups": {"get", "post"},
        f"{API}/pools/{{pool_id}}/groups/reorder": {"post"},
        f"{API}/pools/{{pool_id}}/groups/upload": {"post"},
        f"{API}/pools/{{pool_id}}/groups/{{group_id}}": {"patch", "delete"},
        f"{API}/pools/{{pool_id}}/groups/{{group_id}}/reset": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, (path, sorted(paths))
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    upload = paths[f"{API}/pools/{{pool_id}}/groups/upload"]["post"]["requestBody"]
    assert "multipart/form-data" in upload["content"]
    schemes = r.json()["components"]["securitySchemes"]
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
