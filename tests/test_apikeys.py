"""API keys: the store against a real Redis, and the bearer dependencies through a tiny app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import types
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.auth import AdminKey, Forbidden, ReadKey, Unauthorized
from app.embedded import free_port
from app.errors import InvalidInput, LivecodeError, NotFound
from app.store import keys as akeys
from app.store.apikeys import ApiKeyPublic, ApiKeyStore, parse_key

KEY_RE = re.compile(r"lc_([0-9a-f]{8})_([A-Za-z0-9_-]+)")


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(client: aredis.Redis) -> ApiKeyStore:
    return ApiKeyStore(client)


def _str(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


async def dump(client: aredis.Redis) -> list[bytes]:
    """Every key name and every stored value, as bytes."""
    out: list[Any] = []
    async for key in client.scan_iter(count=1000):
        out.append(key)
        kind = _str(await client.type(key))
        if kind == "string":
            out.append(await client.get(key))
        elif kind == "hash":
            for k, v in (await client.hgetall(key)).items():
                out += [k, v]
        elif kind == "set":
            out += list(await client.smembers(key))
        elif kind == "stream":  # the events of key changes
            for _, fields in await client.xrange(key):
                for k, v in fields.items():
                    out += [k, v]
        else:
            raise AssertionError(f"unexpected type {kind} at {key!r}")
    return out


# the store


async def test_create_and_verify(store: ApiKeyStore) -> None:
    public, key = await store.create("admin", name="ci deploy")
    m = KEY_RE.fullmatch(key)
    assert m is not None and m.group(1) == public.id
    assert public.name == "ci deploy" and public.scope == "admin"
    assert public.created_at.tzinfo == UTC and public.last_used_at is None

    found = await store.verify(key)
    assert found is not None
    assert (found.id, found.name, found.scope) == (public.id, "ci deploy", "admin")
    assert found.created_at == public.created_at
    assert found.last_used_at is not None and found.last_used_at.tzinfo == UTC

    read_pub, read_key = await store.create("read")
    read = await store.verify(read_key)
    assert read is not None and read.scope == "read" and read.name == "" and read.id == read_pub.id


async def test_key_format_and_entropy(store: ApiKeyStore) -> None:
    made = [await store.create("read") for _ in range(50)]
    ids, secrets_ = set(), set()
    for public, key in made:
        m = KEY_RE.fullmatch(key)
        assert m is not None
        assert m.group(1) == public.id
        secret = m.group(2)
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert len(raw) * 8 >= 128
        ids.add(public.id)
        secrets_.add(secret)
    assert len(ids) == len(secrets_) == 50
    # the secrets are not one repeated pattern: many distinct characters overall
    assert len(set("".join(secrets_))) > 50


async def test_only_the_hash_is_stored(store: ApiKeyStore, client: aredis.Redis) -> None:
    public, key = await store.create("admin", name="ops")
    await store.verify(key)
    secret = key.split("_", 2)[2]
    assert len(secret) >= 22
    blobs = await dump(client)
    for blob in blobs:
        assert isinstance(blob, bytes)
        assert key.encode() not in blob
        assert secret.encode() not in blob
    stored = await client.hgetall(akeys.apikey(public.id))
    assert stored[b"hash"] == hashlib.sha256(key.encode()).hexdigest().encode()
    assert set(stored) == {b"hash", b"name", b"scope", b"created", b"last_used"}
    assert await client.smembers(akeys.APIKEYS_INDEX) == {public.id.encode()}
    assert "hash" not in public.model_dump() and key not in public.model_dump_json()
    assert set(ApiKeyPublic.model_fields) == {"id", "name", "scope", "created_at", "last_used_at"}


async def test_list_count_revoke(store: ApiKeyStore) -> None:
    clock = Clock()
    store.clock = clock
    made = []
    for i, scope in enumerate(("admin", "read", "read")):
        clock.t += 1
        made.append(await store.create(scope, name=f"k{i}"))  # type: ignore[arg-type]
    assert await store.count() == 3
    listed = await store.list()
    assert [k.id for k in listed] == [p.id for p, _ in made]
    assert [(k.name, k.scope) for k in listed] == [("k0", "admin"), ("k1", "read"), ("k2", "read")]
    assert (await store.get(made[1][0].id)).name == "k1"

    gone, gone_key = made[1]
    await store.revoke(gone.id)
    assert await store.verify(gone_key) is None
    assert [k.id for k in await store.list()] == [made[0][0].id, made[2][0].id]
    assert await store.count() == 2
    with pytest.raises(NotFound):
        await store.get(gone.id)
    for bad in (gone.id, "deadbeef", "", "../*", "lc:{apikeys}:ids", "DEADBEEF", "deadbeef\n"):
        with pytest.raises(NotFound):
            await store.revoke(bad)
    assert await store.verify(made[0][1]) is not None
    assert await store.verify(made[2][1]) is not None


async def test_wrong_secret(store: ApiKeyStore) -> None:
    a, a_key = await store.create("admin")
    _, b_key = await store.create("admin")
    flipped = a_key[:-1] + ("A" if a_key[-1] != "A" else "B")
    assert await store.verify(flipped) is None
    # a's id with b's secret
    assert await store.verify(f"lc_{a.id}_{b_key.split('_', 2)[2]}") is None
    assert await store.verify(a_key.upper()) is None
    assert await store.verify(a_key) is not None


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "lc_",
        "lc__",
        "lc_deadbeef_",
        "lc_deadbeef",
        "Bearer lc_deadbeef_" + "a" * 43,
        "lc_deadbeef_" + "a" * 43,  # well formed, unknown id
        "not a key at all",
        "x" * 100_000,
        "lc_deadbeef_" + "a" * 100_000,
        "lc_deadbeef_" + "é" * 43,
        "lc_déadbeef_" + "a" * 43,
        "lc_٠١٢٣٤٥٦٧_" + "a" * 43,  # non-ASCII digits
        "lc_deadbeef_" + "a" * 43 + "\n",
        " lc_deadbeef_" + "a" * 43,
        "lc_deadbeef_" + "a" * 42 + "\x00",
        "\x00",
        "lc_*_" + "a" * 43,
        "lc_{apikeys}_" + "a" * 43,
    ],
)
async def test_malformed_is_none(store: ApiKeyStore, presented: str) -> None:
    await store.create("admin")
    assert await store.verify(presented) is None


async def test_non_strings_are_none(store: ApiKeyStore) -> None:
    for junk in (None, b"lc_deadbeef_" + b"a" * 43, 42, ["lc_"]):
        assert parse_key(junk) is None
        assert await store.verify(cast(str, junk)) is None


async def test_key_with_this_format_but_other_id_fails(
    store: ApiKeyStore, client: aredis.Redis
) -> None:
    _, key = await store.create("admin")
    key_id = key.split("_", 2)[1]
    other = "0" * 8 if key_id != "0" * 8 else "1" * 8
    assert await store.verify(key.replace(key_id, other, 1)) is None
    assert not await client.exists(akeys.apikey(other))  # no record conjured by verify


async def test_damaged_record_grants_nothing(store: ApiKeyStore, client: aredis.Redis) -> None:
    public, key = await store.create("admin")
    await client.hset(akeys.apikey(public.id), "scope", "root")
    assert await store.verify(key) is None
    await client.hdel(akeys.apikey(public.id), "hash")
    await client.hset(akeys.apikey(public.id), "scope", "admin")
    assert await store.verify(key) is None
    # still listed, so that it can be revoked
    assert [k.id for k in await store.list()] == [public.id]
    await store.revoke(public.id)
    assert await store.count() == 0


async def test_last_used_is_written_at_most_once_a_minute(
    store: ApiKeyStore, client: aredis.Redis
) -> None:
    clock = Clock()
    store.clock = clock
    public, key = await store.create("read")
    rkey = akeys.apikey(public.id)
    assert await client.hget(rkey, "last_used") == b""
    assert (await store.list())[0].last_used_at is None

    first = await store.verify(key)
    assert first is not None and first.last_used_at is not None
    t0 = int(clock.t * 1000)
    assert first.last_used_at.timestamp() == pytest.approx(clock.t)
    assert await client.hget(rkey, "last_used") == str(t0).encode()

    clock.t += 30
    again = await store.verify(key)
    assert again is not None and again.last_used_at == first.last_used_at
    assert await client.hget(rkey, "last_used") == str(t0).encode()

    clock.t += 31
    later = await store.verify(key)
    assert later is not None and later.last_used_at is not None
    assert later.last_used_at.timestamp() == pytest.approx(clock.t)
    assert await client.hget(rkey, "last_used") == str(int(clock.t * 1000)).encode()
    listed = (await store.list())[0]
    assert listed.last_used_at == later.last_used_at


async def test_touch_never_recreates_a_revoked_key(
    store: ApiKeyStore, client: aredis.Redis
) -> None:
    public, _ = await store.create("admin")
    await store.revoke(public.id)
    # what verify does when a revoke lands between its read and its write
    assert await store._touch(keys=[akeys.apikey(public.id)], args=[1, 60_000]) == 0
    assert not await client.exists(akeys.apikey(public.id))


async def test_invalid_scope_and_name(store: ApiKeyStore) -> None:
    with pytest.raises(InvalidInput):
        await store.create("root")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.create("read", name="x" * 101)
    assert await store.count() == 0


async def test_ensure_initial_admin(store: ApiKeyStore) -> None:
    key = await store.ensure_initial_admin()
    assert key is not None
    public = await store.verify(key)
    assert public is not None and public.scope == "admin" and public.name == "initial"
    assert await store.ensure_initial_admin() is None
    assert await store.count() == 1


async def test_no_initial_admin_when_any_key_exists(store: ApiKeyStore) -> None:
    await store.create("read", name="reader")
    assert await store.ensure_initial_admin() is None
    assert [k.name for k in await store.list()] == ["reader"]


async def test_ensure_initial_admin_races(redis_url: str) -> None:
    # 20 "processes": each with its own connection pool
    clients = [aredis.Redis.from_url(redis_url) for _ in range(20)]
    try:
        stores = [ApiKeyStore(c) for c in clients]
        results = await asyncio.gather(*(s.ensure_initial_admin() for s in stores))
        made = [r for r in results if r is not None]
        assert len(made) == 1
        assert await stores[0].count() == 1
        listed = await stores[0].list()
        assert [(k.name, k.scope) for k in listed] == [("initial", "admin")]
        assert await stores[5].verify(made[0]) is not None
    finally:
        for c in clients:
            await c.aclose()


# the dependencies


def tiny_app(store: ApiKeyStore) -> FastAPI:
    app = FastAPI()
    app.state.runtime = types.SimpleNamespace(apikeys=store)

    @app.exception_handler(LivecodeError)
    async def _err(_: Request, exc: LivecodeError) -> JSONResponse:
        return JSONResponse(
            exc.body(), status_code=exc.status, headers=getattr(exc, "headers", None)
        )

    @app.get("/things")
    async def read_things(key: ReadKey) -> dict[str, Any]:
        return {"by": key.id, "scope": key.scope}

    @app.post("/things")
    async def change_things(key: AdminKey) -> dict[str, Any]:
        return {"by": key.id, "scope": key.scope}

    return app


@pytest.fixture
async def http(store: ApiKeyStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=tiny_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_401_without_or_with_a_bad_header(
    http: httpx.AsyncClient, store: ApiKeyStore, method: str
) -> None:
    public, key = await store.create("admin")
    assert_401(await http.request(method, "/things"))
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {key}"},
        {"Authorization": key},
        bearer("junk"),
        bearer(key[:-1]),
        bearer(key + "x"),
        bearer("lc_" + "a" * 8 + "_" + "b" * 43),
    ):
        assert_401(await http.request(method, "/things", headers=headers))
    r = await http.request(method, "/things", headers=bearer("junk"))
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    r = await http.request(method, "/things")
    assert r.headers["www-authenticate"] == "Bearer"

    await store.revoke(public.id)
    assert_401(await http.request(method, "/things", headers=bearer(key)))


async def test_scopes(http: httpx.AsyncClient, store: ApiKeyStore) -> None:
    admin, admin_key = await store.create("admin")
    reader, read_key = await store.create("read")

    r = await http.get("/things", headers=bearer(read_key))
    assert r.status_code == 200 and r.json() == {"by": reader.id, "scope": "read"}
    r = await http.get("/things", headers=bearer(admin_key))
    assert r.status_code == 200 and r.json() == {"by": admin.id, "scope": "admin"}
    r = await http.post("/things", headers=bearer(admin_key))
    assert r.status_code == 200 and r.json() == {"by": admin.id, "scope": "admin"}

    r = await http.post("/things", headers=bearer(read_key))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert "insufficient_scope" in r.headers["www-authenticate"]
    # the scheme name is case-insensitive
    r = await http.get("/things", headers={"Authorization": f"bearer {read_key}"})
    assert r.status_code == 200


async def test_error_classes() -> None:
    assert (Unauthorized.status, Unauthorized.code) == (401, "unauthorized")
    assert (Forbidden.status, Forbidden.code) == (403, "forbidden")
    assert Unauthorized("x").headers == {"WWW-Authenticate": "Bearer"}
    assert issubclass(Unauthorized, LivecodeError) and issubclass(Forbidden, LivecodeError)


async def test_store_down_is_503() -> None:
    dead = aredis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        transport = httpx.ASGITransport(app=tiny_app(ApiKeyStore(dead)))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.get("/things", headers=bearer("lc_deadbeef_" + "a" * 43))
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            r = await c.get("/things", headers=bearer("junk"))  # refused without Redis
            assert r.status_code == 401
    finally:
        await dead.aclose()
