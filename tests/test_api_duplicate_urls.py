"""A URL may be in a pool only once: the same group code uploaded twice would make two groups
with one invite link and double that group's room. Adds (one, a list, an upload) of a URL the
pool already has get 409 naming the group that has it, and nothing is written."""

from __future__ import annotations

import asyncio
from typing import Any

from app.errors import Conflict
from app.qr import is_wechat_group_url
from app.schemas import GroupPublic
from app.store.pools import PoolStore
from tests.api_helpers import (
    WECHAT,
    Api,
    assert_error,
    group_url,
    qr_bytes,
    unchanged,
)


def upload(image: bytes) -> Any:
    return {"file": ("qr.png", image, "image/png")}


async def test_adding_a_url_the_pool_has_is_409_naming_the_group(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    taken = group_url("pool-a", "g2")
    async with unchanged(api.redis):
        error = assert_error(await api.call("POST", "/pools/pool-a/groups",
                                            json={"url": taken}), 409, "conflict")
        assert error["details"] == {"group_id": "g2", "url": taken}
        assert "g2" in error["message"]
        # in a list, even behind new ones: nothing of the list is written
        body = [{"id": "new-1", "url": "https://t.me/+new1"}, {"url": taken}]
        error = assert_error(await api.call("POST", "/pools/pool-a/groups", json=body), 409,
                             "conflict")
        assert error["details"] == {"group_id": "g2", "url": taken}


async def test_two_equal_urls_in_one_list_are_409(api: Api) -> None:
    await api.make_pool("pool-a", 0)
    body = [{"id": "a", "url": "https://t.me/+same"}, {"id": "b", "url": "https://t.me/+x"},
            {"id": "c", "url": "https://t.me/+same"}]
    async with unchanged(api.redis):
        error = assert_error(await api.call("POST", "/pools/pool-a/groups", json=body), 409,
                             "conflict")
    assert error["details"]["group_id"] == "a"
    assert error["details"]["url"] == "https://t.me/+same"


async def test_urls_are_compared_as_stored(api: Api) -> None:
    """check_target_url stores an internationalised host in its IDNA form: the Unicode and the
    ASCII spelling of one address are one URL."""
    await api.make_pool("pool-a", 0)
    first = await api.ok("POST", "/pools/pool-a/groups", 201,
                         json={"url": "https://bücher.example/join"})
    assert first["url"] == "https://xn--bcher-kva.example/join"
    async with unchanged(api.redis):
        error = assert_error(await api.call("POST", "/pools/pool-a/groups",
                                            json={"url": "https://xn--bcher-kva.example/join"}),
                             409, "conflict")
    assert error["details"] == {"group_id": first["id"], "url": first["url"]}


async def test_another_pool_may_have_the_same_url(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    await api.make_pool("pool-b", 0)
    await api.ok("POST", "/pools/pool-b/groups", 201, json={"url": group_url("pool-a", "g1")})


async def test_uploading_the_same_code_twice_is_409(api: Api) -> None:
    await api.make_pool("pool-a", 0)
    assert is_wechat_group_url(WECHAT)
    first = await api.ok("POST", "/pools/pool-a/groups/upload", 201, files=upload(qr_bytes(WECHAT)))
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/upload", files=upload(qr_bytes(WECHAT)))
        error = assert_error(r, 409, "conflict")
    assert error["details"] == {"group_id": first["id"], "url": WECHAT}
    assert len(await api.ok("GET", "/pools/pool-a/groups")) == 1


async def test_concurrent_adds_of_one_url_make_at_most_one_group(api: Api) -> None:
    """Twenty requests at once, each adding the same URL behind ten groups of its own (so that
    all of them pass the first check before any writes it): exactly the requests answered 201
    have their groups, and at most one group has the URL."""
    await api.make_pool("pool-a", 0)
    url = "https://t.me/+contested"

    async def add(i: int) -> int:
        body = [{"id": f"own-{i}-{j}", "url": f"https://t.me/+own{i}-{j}"} for j in range(10)]
        body.append({"id": f"c-{i}", "url": url})
        r = await api.call("POST", "/pools/pool-a/groups", json=body)
        assert r.status_code in (201, 409), r.text
        return r.status_code

    statuses = await asyncio.gather(*(add(i) for i in range(20)))
    groups = await api.ok("GET", "/pools/pool-a/groups")
    holders = [g["id"] for g in groups if g["url"] == url]
    won = [i for i, s in enumerate(statuses) if s == 201]
    assert len(won) <= 1 and len(holders) == len(won), (statuses, holders)
    assert sorted(g["id"] for g in groups) == sorted(
        [f"own-{i}-{j}" for i in won for j in range(10)] + [f"c-{i}" for i in won])


class SlowWrites(PoolStore):
    """Every group write lands 50 ms late: every concurrent request passes the first check
    before any of them writes (the race the check after the write is there for)."""

    async def _put(self, pool_id: str, group_id: str, fields: list[str]) -> GroupPublic:
        await asyncio.sleep(0.05)
        return await super()._put(pool_id, group_id, fields)


async def test_concurrent_replaces_with_one_url_leave_at_most_one_group_with_it(api: Api) -> None:
    """Twenty groups given the same new URL at once: the groups whose replace succeeded have it
    (at most one), every other group still has its own URL."""
    await api.make_pool("pool-a", 20)
    store = await SlowWrites.open(api.redis)
    url = "https://t.me/+contested"

    async def replace(i: int) -> bool:
        try:
            await store.replace_code("pool-a", f"g{i}", url)
        except Conflict:
            return False
        return True

    done = await asyncio.gather(*(replace(i) for i in range(1, 21)))
    groups = {g["id"]: g["url"] for g in await api.ok("GET", "/pools/pool-a/groups")}
    won = {f"g{i + 1}" for i, ok in enumerate(done) if ok}
    assert len(won) <= 1, done
    assert {gid for gid, u in groups.items() if u == url} == won
    assert all(u == group_url("pool-a", gid) for gid, u in groups.items() if gid not in won)
