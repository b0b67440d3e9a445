"""Helpers for the admin REST API tests (tests/test_api_*.py): an in-process app with API keys
(`open_api`; the `api` fixture in conftest.py), scans through the same app without a cookie jar,
error-shape checks, QR images, and the allocator's index invariants read straight from Redis."""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import redis.asyncio as aredis
import segno
from asgi_lifespan import LifespanManager
from PIL import Image

from app.main import create_app
from app.settings import Settings
from app.store import keys
from app.store.apikeys import ApiKeyStore
from tests.helpers import allocation_snapshot, snapshot

API = "/api/v1"
PUBLIC_URL = "https://lc.example"
BASE = "http://lc.test"
MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
WECHAT = "https://weixin.qq.com/g/AbC123"
WHATSAPP = "https://chat.whatsapp.com/AbC"
TELEGRAM = "https://t.me/+AbCdEf"


def group_url(pool_id: str, gid: str) -> str:
    return f"https://chat.example.com/{pool_id}/{gid}"


def new_visitor() -> str:
    """A well-formed visitor id (22 base64url characters), as the lc_vid cookie holds."""
    return secrets.token_urlsafe(16)[:22]


@dataclass
class Api:
    http: httpx.AsyncClient
    transport: httpx.ASGITransport
    redis: aredis.Redis
    admin_key: str
    read_key: str

    def auth(self, key: str | None) -> dict[str, str]:
        """key: 'admin', 'read', None (no header) or a literal Authorization value."""
        if key is None:
            return {}
        if key == "admin":
            return {"authorization": f"Bearer {self.admin_key}"}
        if key == "read":
            return {"authorization": f"Bearer {self.read_key}"}
        return {"authorization": key}

    async def call(
        self, method: str, path: str, *, key: str | None = "admin", **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.auth(key), **kwargs.pop("headers", {})}
        return await self.http.request(method, API + path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = await self.call(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    async def pool(self, pool_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.ok("GET", f"/pools/{pool_id}")
        return data

    async def group(self, pool_id: str, gid: str) -> dict[str, Any]:
        groups = (await self.pool(pool_id))["groups"]
        found = [g for g in groups if g["id"] == gid]
        assert len(found) == 1, groups
        return dict(found[0])

    async def make_pool(
        self, pool_id: str, groups: list[dict[str, Any]] | int = 3, **pool: Any
    ) -> list[dict[str, Any]]:
        """A pool with groups g1..gn (url group_url(pool_id, gid)), made through the API."""
        await self.ok("POST", "/pools", 201, json={"id": pool_id, **pool})
        specs = [{} for _ in range(groups)] if isinstance(groups, int) else groups
        body = [
            {"id": f"g{i + 1}", "url": group_url(pool_id, f"g{i + 1}"), **spec}
            for i, spec in enumerate(specs)
        ]
        if not body:
            return []
        created: list[dict[str, Any]] = await self.ok(
            "POST", f"/pools/{pool_id}/groups", 201, json=body
        )
        return created

    async def scan(
        self, pool_id: str, visitor: str | None = None, *, user_agent: str = MOBILE_UA
    ) -> httpx.Response:
        """GET /s/{pool_id} through the same app, with no cookie jar: a new visitor unless
        `visitor` is given (then sent as the lc_vid cookie)."""
        headers = {"user-agent": user_agent}
        if visitor is not None:
            headers["cookie"] = f"lc_vid={visitor}"
        request = httpx.Request("GET", f"{BASE}/s/{pool_id}", headers=headers)
        response = await self.transport.handle_async_request(request)
        await response.aread()
        return response

    async def scan_group(self, pool_id: str, visitor: str | None = None) -> str | None:
        """The group a scan was sent to (redirect pools), or None for any other answer."""
        r = await self.scan(pool_id, visitor)
        assert r.status_code in (200, 302), (r.status_code, r.text)
        prefix = group_url(pool_id, "")
        location = r.headers.get("location", "")
        if r.status_code == 302 and location.startswith(prefix):
            return location[len(prefix) :]
        return None


async def open_api(redis_url: str, **settings: Any) -> AsyncIterator[Api]:
    """The app on `redis_url` with an admin and a read key (async generator: one Api)."""
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


def iso(dt: datetime) -> str:
    return dt.isoformat()


def parse_dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@asynccontextmanager
async def unchanged(client: aredis.Redis, *, but_page_views: bool = False) -> AsyncIterator[None]:
    """Every key and value is the same after the block as before it; `but_page_views`: but
    what scans record (a scan of a closed pool still counts as a page view)."""
    take = allocation_snapshot if but_page_views else snapshot
    before = await take(client)
    yield
    after = await take(client)
    assert after == before, {
        k: (before.get(k), after.get(k)) for k in set(before) | set(after)
        if before.get(k) != after.get(k)
    }


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message", "details"}} with the right status."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


async def pool_keys_in_redis(client: aredis.Redis, pool_id: str) -> list[bytes]:
    """Every key carrying the pool's hash tag."""
    return [k async for k in client.scan_iter(match=f"*{{{pool_id}}}*", count=1000)]


async def keyspace_misses(client: aredis.Redis) -> int:
    return int((await client.info("stats"))["keyspace_misses"])


# --- QR images -------------------------------------------------------------------------------


def qr_image(data: str, scale: int = 6) -> Image.Image:
    out = io.BytesIO()
    segno.make_qr(data).save(out, kind="png", scale=scale, border=4)
    out.seek(0)
    return Image.open(out).convert("RGB")


def encode_image(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def qr_bytes(data: str, fmt: str = "PNG") -> bytes:
    return encode_image(qr_image(data), fmt)


def blank_image(fmt: str = "PNG") -> bytes:
    return encode_image(Image.new("RGB", (200, 200), "white"), fmt)


# --- allocator invariants ----------------------------------------------------------------------


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def check_indexes(client: aredis.Redis, pool_id: str) -> dict[str, dict[str, str]]:
    """The pool's indexes agree with its groups, read straight from Redis:
    indexed (in `av`) <=> enabled, count < capacity and not expired; `lf` has the same members
    as `av`; `ex` holds exactly the indexed groups that expire, and the pool's `exn` is its
    earliest score (absent when `ex` is empty); `av` scores are positions;
    every Fenwick node of `fw` is the sum of its slots' weights (indexed groups only) and `fwt`
    is the sum of the weights of the indexed groups; the pool's `room` and `cap` are the places
    left in and the capacity of the indexed groups. Returns every group's hash."""
    p = keys.prefix(pool_id)
    sec, usec = await client.time()
    now_ms = sec * 1000 + usec // 1000
    gids = [_str(g) for g in await client.hvals(keys.slots(pool_id))]
    av = {_str(m): s for m, s in await client.zrange(p + "av", 0, -1, withscores=True)}
    lf = {_str(m): s for m, s in await client.zrange(p + "lf", 0, -1, withscores=True)}
    ex = {_str(m): s for m, s in await client.zrange(p + "ex", 0, -1, withscores=True)}
    pool = {_str(k): _str(v) for k, v in (await client.hgetall(keys.pool(pool_id))).items()}
    fw = {int(k): int(v) for k, v in (await client.hgetall(p + "fw")).items()}
    fwg = {int(k): _str(v) for k, v in (await client.hgetall(p + "fwg")).items()}
    fwn = int(pool.get("fwn", 0))
    groups: dict[str, dict[str, str]] = {}
    slot_weight: dict[int, int] = {}
    for gid in gids:
        g = {_str(k): _str(v) for k, v in (await client.hgetall(keys.group(pool_id, gid))).items()}
        groups[gid] = g
        count, cap = int(g.get("c", 0)), int(g["cap"])
        exp = int(g["exp"]) if g.get("exp") else None
        eligible = g["en"] == "1" and count < cap and (exp is None or exp > now_ms)
        assert (gid in av) == eligible, (gid, g, sorted(av))
        if eligible:
            assert av[gid] == int(g["pos"]), (gid, av[gid], g)
        assert (gid in ex) == (eligible and exp is not None), (gid, g, ex)
        slot = int(g["fi"])
        assert fwg.get(slot) == gid, (gid, slot, fwg)
        slot_weight[slot] = int(g["w"]) if eligible else 0
    assert set(lf) == set(av), (sorted(lf), sorted(av))
    exn = float(pool["exn"]) if "exn" in pool else None
    assert exn == (min(ex.values()) if ex else None), (pool.get("exn"), ex)
    assert set(av) <= set(gids)
    assert int(pool.get("fwt", 0)) == sum(slot_weight.values()), (pool.get("fwt"), slot_weight)
    # the pool's room is that of its indexed groups, its capacity that of its usable ones (open
    # or full, in `fl` while their code lasts)
    indexed = [groups[gid] for gid in av]
    assert int(pool["room"]) == sum(int(g["cap"]) - int(g.get("c", 0)) for g in indexed), pool
    fl = {_str(m) for m in await client.zrange(p + "fl", 0, -1)}
    usable = {gid for gid, g in groups.items() if g["en"] == "1"
              and (not g.get("exp") or int(g["exp"]) > now_ms)}
    assert fl == usable - set(av), (fl, usable, sorted(av))
    assert int(pool["cap"]) == sum(int(groups[gid]["cap"]) for gid in usable), pool
    for i in range(1, fwn + 1):
        low = i - (i & -i)
        expected = sum(slot_weight.get(j, 0) for j in range(low + 1, i + 1))
        assert fw.get(i, 0) == expected, (i, fw, slot_weight)
    return groups
