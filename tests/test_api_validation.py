"""The admin REST API (/api/v1), end to end over HTTP. Validation and errors: bad URLs, keys,
scopes, ids and bodies get the one error shape and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from app.store.apikeys import ApiKeyStore
from tests.api_helpers import (
    Api,
    assert_error,
    keyspace_misses,
    open_api,
    unchanged,
)

BAD_URLS = [
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
    pytest.param("http://chat.example.com/g", id="http"),
    pytest.param("//chat.example.com/g", id="scheme-relative"),
    pytest.param("https://a@b.example/g", id="userinfo"),
    pytest.param("https://user:pw@b.example/g", id="userinfo-password"),
    pytest.param("https://@b.example/g", id="empty-userinfo"),
    pytest.param("https://:pw@b.example/g", id="userinfo-password-only"),
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
    async for api in open_api(redis_url, allow_http_targets=True):
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


def without_forecast(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: without_forecast(v) for k, v in doc.items()
                if k not in ("forecast", "minutes_to_full")}
    if isinstance(doc, list):
        return [without_forecast(v) for v in doc]
    return doc


async def test_read_key_can_get_everything(api: Api) -> None:
    await api.make_pool("pool-a", 2)
    await api.scan("pool-a")
    for path in ("/pools", "/pools/pool-a", "/pools/pool-a/groups", "/pools/pool-a/qr.png",
                 "/pools/pool-a/qr.svg"):
        r = await api.call("GET", path, key="read")
        assert r.status_code == 200, (path, r.text)
        admin = await api.call("GET", path, key="admin")
        if r.headers["content-type"].startswith("application/json"):
            # the forecast moves with the clock between the two reads
            assert without_forecast(r.json()) == without_forecast(admin.json()), path
        else:
            assert r.content == admin.content, path
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
    # JSON booleans are not numbers, nor numbers booleans (pydantic alone takes both)
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"capacity": True}, id="patch-capacity-true"),
    pytest.param("POST", "/pools/pool-a/groups", {"url": "https://c.example/x", "weight": True},
                 id="weight-true"),
    pytest.param("PATCH", "/pools/pool-a/groups/g1", {"enabled": 0}, id="patch-enabled-0"),
    pytest.param("POST", "/pools/pool-a/groups", {"url": "https://c.example/x", "enabled": 1},
                 id="enabled-1"),
    pytest.param("PATCH", "/pools/pool-a", {"alerts": {"low_percent": True}},
                 id="patch-alerts-true"),
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
