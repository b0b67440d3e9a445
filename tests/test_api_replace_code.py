"""Replacing a group's code: WeChat group codes expire every 7 days and operators put the new
one in its place. The group keeps its id, count and position; a new WeChat code's expiry is
renewed (upload time + 7 days) unless given; a URL another group of the pool has is a 409."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api_helpers import (
    WECHAT,
    Api,
    assert_error,
    blank_image,
    group_url,
    iso,
    parse_dt,
    qr_bytes,
    unchanged,
)

NEW_WECHAT = "https://weixin.qq.com/g/NeWcOdE42"
WEEK = timedelta(days=7)


def upload(image: bytes) -> Any:
    return {"file": ("qr.png", image, "image/png")}


async def scanned(api: Api, pool_id: str, n: int) -> None:
    for _ in range(n):
        assert (await api.scan(pool_id)).status_code in (200, 302)


async def test_upload_replaces_the_code_keeping_id_count_and_position(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 3}, {"capacity": 10}, {"capacity": 10}])
    await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"url": WECHAT})
    await scanned(api, "pool-a", 5)  # g1 full (3), g2 has 2
    old = await api.group("pool-a", "g2")
    assert old["count"] == 2
    before = datetime.now(UTC)
    g = await api.ok("POST", "/pools/pool-a/groups/g2/upload", files=upload(qr_bytes(NEW_WECHAT)))
    after = datetime.now(UTC)
    assert (g["id"], g["url"], g["count"], g["position"]) == ("g2", NEW_WECHAT, 2, old["position"])
    assert g["mode"] == "page" and g["capacity"] == 10
    assert before + WEEK - timedelta(seconds=1) <= parse_dt(g["expires_at"]) <= after + WEEK
    assert [x["id"] for x in await api.ok("GET", "/pools/pool-a/groups")] == ["g1", "g2", "g3"]
    page = await api.scan("pool-a")  # the next scan gets the new code, and counts on
    assert page.status_code == 200 and NEW_WECHAT in page.text and WECHAT not in page.text
    assert (await api.group("pool-a", "g2"))["count"] == 3


async def test_an_expired_wechat_group_comes_back_with_its_new_code(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    past = datetime.now(UTC) - timedelta(days=1)
    await api.ok("PATCH", "/pools/pool-a/groups/g1", json={"url": WECHAT, "expires_at": iso(past)})
    assert (await api.group("pool-a", "g1"))["expired"] is True
    assert (await api.scan("pool-a")).status_code == 200  # the fallback page
    g = await api.ok("POST", "/pools/pool-a/groups/g1/upload", files=upload(qr_bytes(NEW_WECHAT)))
    assert g["expired"] is False
    assert NEW_WECHAT in (await api.scan("pool-a")).text


async def test_an_explicit_expiry_is_kept(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    when = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    g = await api.ok("POST", "/pools/pool-a/groups/g1/upload", files=upload(qr_bytes(NEW_WECHAT)),
                     data={"expires_at": iso(when)})
    assert parse_dt(g["expires_at"]) == when


async def test_patch_with_a_url_keeps_count_and_position(api: Api) -> None:
    await api.make_pool("pool-a", [{"capacity": 2}, {"capacity": 10}])
    await scanned(api, "pool-a", 3)
    g = await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"url": "https://t.me/+renewed"})
    assert (g["count"], g["position"], g["expires_at"], g["mode"]) == (1, 2, None, None)
    g = await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"url": NEW_WECHAT})
    assert (g["count"], g["position"], g["mode"]) == (1, 2, "page")
    assert parse_dt(g["expires_at"]) > datetime.now(UTC) + WEEK - timedelta(minutes=1)
    # the same code again is no renewal: the expiry stays where it was
    again = await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"url": NEW_WECHAT})
    assert again["expires_at"] == g["expires_at"]


async def test_a_url_another_group_has_is_409_and_its_own_is_not(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    theirs = group_url("pool-a", "g1")
    async with unchanged(api.redis):
        error = assert_error(await api.call("PATCH", "/pools/pool-a/groups/g2",
                                            json={"url": theirs}), 409, "conflict")
        assert error["details"] == {"group_id": "g1", "url": theirs}
        r = await api.call("POST", "/pools/pool-a/groups/g2/upload", files=upload(qr_bytes(theirs)))
        assert_error(r, 409, "conflict")
    own = group_url("pool-a", "g2")
    g = await api.ok("PATCH", "/pools/pool-a/groups/g2", json={"url": own, "capacity": 7})
    assert (g["url"], g["capacity"]) == (own, 7)


async def test_replace_refuses_what_it_cannot_use(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        for path, status, code in [
            ("/pools/pool-a/groups/nope/upload", 404, "not_found"),
            ("/pools/no-pool/groups/g1/upload", 404, "not_found"),
        ]:
            r = await api.call("POST", path, files=upload(qr_bytes(NEW_WECHAT)))
            assert_error(r, status, code)
        r = await api.call("POST", "/pools/pool-a/groups/g1/upload", files=upload(blank_image()))
        assert_error(r, 422, "invalid_input")
        r = await api.call("POST", "/pools/pool-a/groups/g1/upload",
                           files=upload(qr_bytes(NEW_WECHAT)), data={"capacity": "5"})
        assert_error(r, 422, "invalid_input")
        r = await api.call("POST", "/pools/pool-a/groups/g1/upload",
                           files=upload(qr_bytes(NEW_WECHAT)), data={"expires_at": "soon"})
        assert_error(r, 422, "invalid_input")
        r = await api.call("POST", "/pools/pool-a/groups/g1/upload",
                           files=upload(qr_bytes(NEW_WECHAT)), key="read")
        assert_error(r, 403, "forbidden")
