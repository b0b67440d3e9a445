"""Schemathesis against the service's own OpenAPI schema, in-process (ASGI), on a real Redis.

Every operation of `/openapi.json` is fuzzed (schemathesis' examples, coverage and fuzzing phases,
positive and negative data) with an admin key, a read-only key, no key and a bad key. Checks:
never a 5xx; a 2xx conforms to the schema (status, content type, body); every 4xx has the one error
shape `{"error": {"code", "message", "details"}}`, and is one of the statuses the README promises.

Every error response is documented with the `ErrorBody` schema, so schemathesis' conformance
checks run on 4xx answers too, and `_check_error_answer` also checks the status is one the README
promises and the shape is exact.

The server errors this suite found (naive or out-of-range datetimes, a huge `offset`, an
undecodable body before the key check, undocumented error responses) are fixed, and each stays
pinned by a test at the bottom of this file.

The schema is read from an app that is never started (the OpenAPI document needs no Redis); the
requests go through `AppSwitch` to the app of the running test, started in the fixture on
schemathesis' own event loop thread (its ASGI transport runs every request there).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, HookContext
from schemathesis.checks import (
    allow_header_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from app.main import create_app
from app.settings import Settings
from app.store import keys
from app.store.apikeys import ApiKeyStore
from tests.helpers import STRATEGIES, open_core, seed

API = "/api/v1"
SEED_POOL = "seed-pool"
SEED_GROUPS = ("g1", "g2", "g3")
# What the README promises for the admin API: 401, 403, 404, 409, 413, 422; plus FastAPI's own
# 405 for a method a path does not have.
ERROR_STATUSES = frozenset({401, 403, 404, 405, 409, 413, 422})
MAX_EXAMPLES = 25
BAD_KEYS = ("lc_00000000_" + "A" * 43, "not-a-key", "lc_", "Bearer")


class AppSwitch:
    """The ASGI app schemathesis talks to: forwards HTTP to the running test's app. Its own
    lifespan is a no-op; the test app's lifespan is started by the fixture."""

    def __init__(self, target: Any) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.target(scope, receive, send)


# Serves /openapi.json without Redis (never started: no lifespan, no store).
_SCHEMA_ONLY_APP = create_app(Settings(redis_url="redis://127.0.0.1:9/0"))
SWITCH = AppSwitch(_SCHEMA_ONLY_APP)
schema = schemathesis.openapi.from_asgi("/openapi.json", SWITCH)
# The key is set by each test (admin, none, bad, read), not generated: a generated negative case
# that drops `Authorization` would be re-authenticated by the admin run and then be blamed for
# being accepted. Unknown query parameters are ignored by design (like most APIs), so schemathesis
# must not count them as invalid input that had to be rejected.
schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)


# --- hooks: real objects, valid bodies, and the carve-outs ---------------------------------------

VALID_URLS = (
    "https://chat.whatsapp.com/AbC",
    "https://t.me/+XyZ",
    "https://discord.gg/abc",
    "https://bücher.example/ä?x=1#f",
)


def _with_real_ids(params: dict[str, Any], gid: str) -> dict[str, Any]:
    out = dict(params)
    if "pool_id" in out:
        out["pool_id"] = SEED_POOL
    if "group_id" in out:
        out["group_id"] = gid
    return out


@schema.hook
def before_generate_path_parameters(
    context: HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Half the time, the path names the seeded pool and one of its groups."""
    real = st.tuples(strategy, st.sampled_from(SEED_GROUPS)).map(
        lambda t: _with_real_ids(t[0], t[1]) if isinstance(t[0], dict) else t[0]
    )
    return st.one_of(strategy, real)


_group_body = st.fixed_dictionaries(
    {"url": st.sampled_from(VALID_URLS)},
    optional={
        "id": st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
        "name": st.text(max_size=20),
        "capacity": st.integers(1, 100_000),
        "weight": st.integers(1, 10_000),
        "enabled": st.booleans(),
        "mode": st.sampled_from(["redirect", "page"]),
        "expires_at": st.sampled_from(["2020-01-01T00:00:00Z", "2099-01-01T00:00:00+08:00"]),
    },
)
_pool_body = st.fixed_dictionaries(
    {"id": st.from_regex(r"[a-z0-9][a-z0-9-]{1,10}[a-z0-9]", fullmatch=True)},
    optional={
        "strategy": st.sampled_from(STRATEGIES),
        "fallback": st.fixed_dictionaries({}, optional={"url": st.sampled_from(VALID_URLS)}),
    },
)


@schema.hook
def before_generate_body(
    context: HookContext, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Mix in bodies the service accepts: the schema cannot say that a group URL must be an
    https URL, so random strings almost never get past validation."""
    op = context.operation
    if op is None:
        return strategy
    path, method = op.path, op.method.lower()
    if method == "post" and path == API + "/pools":
        return st.one_of(strategy, _pool_body)
    if method == "post" and path == API + "/pools/{pool_id}/groups":
        return st.one_of(strategy, _group_body, st.lists(_group_body, min_size=1, max_size=3))
    if method == "patch" and path == API + "/pools/{pool_id}/groups/{group_id}":
        return st.one_of(strategy, _group_body.map(lambda b: {k: v for k, v in b.items()
                                                              if k != "id"}))
    if method == "post" and path == API + "/pools/{pool_id}/groups/reorder":
        return st.one_of(strategy, st.permutations(SEED_GROUPS).map(
            lambda ids: {"group_ids": list(ids)}))
    return strategy


# --- the app under test ---------------------------------------------------------------------------


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class Live:
    """The running app of one test, with its keys and a client that reaches it in-process."""

    http: asgi.ASGIClient
    redis: redis.Redis
    admin_key: str
    read_key: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def reseed(self) -> None:
        """Put the seeded pool and its groups back if a fuzzed DELETE removed them (fuzzed
        PATCH/pause/reset only change them, which is fine)."""
        p = keys.pool(SEED_POOL)
        if self.redis.hget(p, "status") is None:
            self.http.delete(f"{API}/pools/{SEED_POOL}", headers=self.admin())  # a leftover key
            r = self.http.post(f"{API}/pools", json={"id": SEED_POOL}, headers=self.admin())
            assert r.status_code == 201, r.text
        have = {_text(g) for g in self.redis.hvals(keys.slots(SEED_POOL))}
        missing = [g for g in SEED_GROUPS if g not in have]
        if missing:
            body = [{"id": g, "url": f"https://chat.example.com/{g}"} for g in missing]
            r = self.http.post(f"{API}/pools/{SEED_POOL}/groups", json=body, headers=self.admin())
            assert r.status_code == 201, r.text


async def _prepare(url: str) -> tuple[str, str]:
    async with open_core(url) as core:
        await seed(core.store, SEED_POOL, [{"capacity": 3} for _ in SEED_GROUPS])
        await seed(core.store, "other-pool", [{"capacity": 1}], strategy="weighted")
        apikeys = ApiKeyStore(core.redis)
        _, admin = await apikeys.create("admin", "schemathesis")
        _, read = await apikeys.create("read", "schemathesis")
    return admin, read


@pytest.fixture
def live(redis_url: str) -> Iterator[Live]:
    admin, read = asyncio.run(_prepare(redis_url))
    app = create_app(Settings(redis_url=redis_url))
    with asgi.get_client(cast(Any, app)) as http, redis.Redis.from_url(redis_url) as sync:
        SWITCH.target = app
        try:
            yield Live(http, sync, admin, read)
        finally:
            SWITCH.target = _SCHEMA_ONLY_APP
            asgi.shutdown_lifespans()


# --- checks --------------------------------------------------------------------------------------

# Never run (the reasons are findings about the schema, reported, not bugs of the service):
#  - positive_data_acceptance: the schema cannot say what the service rightly refuses with a 422
#    although it is schema-valid: a group URL that is not an https URL passing
#    `app.urls.check_target_url`, a reorder list naming a group twice or a group the pool does not
#    have, an upload that is not an image of a QR code.
#  - allow_header_conformance: it compares a 405's `Allow` with the schema's methods for the
#    path template, but templates overlap: a group may be called `reorder`, so PATCH and DELETE
#    on .../groups/reorder reach /groups/{group_id} and `Allow` rightly lists them with POST.
#    test_allow_header_lists_every_method checks the header instead.
ALWAYS_EXCLUDED = [positive_data_acceptance, allow_header_conformance]


def _header(response: Any, name: str) -> str:
    """schemathesis' Response: lowercase names, a list of values each."""
    values = response.headers.get(name) or [""]
    return str(values[0])


def _check_error_answer(response: Any, statuses: frozenset[int] = ERROR_STATUSES) -> None:
    """A 4xx: a promised status, JSON, exactly {"error": {"code", "message", "details"}}."""
    status = response.status_code
    assert status in statuses, (status, response.text)
    assert _header(response, "content-type").startswith("application/json"), response.headers
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    if status == 401:
        assert _header(response, "www-authenticate").startswith("Bearer"), response.headers


def _validate(case: Case[Any], response: Any, headers: dict[str, str]) -> None:
    """No 5xx; a 4xx has the error shape; schemathesis' checks, the conformance ones included
    (every error response is documented)."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        _check_error_answer(response)
    case.validate_response(response, excluded_checks=ALWAYS_EXCLUDED, headers=headers)


def _without_auth(case: Case[Any]) -> None:
    case.headers = CaseInsensitiveDict(
        {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"})


# What a request to /api/ without a valid key may get: 401, or before the key is looked at, 405
# (a method the path does not have: routing comes first) and 413 (a body over the limit, refused
# unread). Never a 400/422 about the body (test_unparsable_body_without_a_key_is_a_401).
UNAUTHORIZED = frozenset({401, 405, 413})


def _is_api(case: Case[Any]) -> bool:
    return bool(case.operation.path.startswith(API + "/"))


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # one app (and one Redis) per operation, shared by its examples: intended
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_AUTH = settings(FUZZ, max_examples=8)


@schema.parametrize()
@FUZZ
def test_admin_key(case: Case[Any], live: Live) -> None:
    live.reseed()
    headers = live.admin()
    _validate(case, case.call(headers=headers), headers)


@schema.parametrize()
@FUZZ_AUTH
def test_read_key(case: Case[Any], live: Live) -> None:
    """A read key reads like an admin key and may change nothing: 403 on every change."""
    live.reseed()
    headers = {"Authorization": f"Bearer {live.read_key}"}
    response = case.call(headers=headers)
    if _is_api(case) and case.method.upper() not in ("GET", "HEAD"):
        # 405 and 413: as in UNAUTHORIZED
        _check_error_answer(response, frozenset({403, 405, 413}))
        if response.status_code == 403:
            assert "insufficient_scope" in _header(response, "www-authenticate")
    _validate(case, response, headers)


@schema.parametrize()
@FUZZ_AUTH
def test_no_key(case: Case[Any], live: Live) -> None:
    _without_auth(case)
    response = case.call()
    if _is_api(case):
        _check_error_answer(response, UNAUTHORIZED)
        if response.status_code == 401:
            assert _header(response, "www-authenticate") == "Bearer", response.headers
    _validate(case, response, {})


@schema.parametrize()
@FUZZ_AUTH
def test_bad_key(case: Case[Any], live: Live) -> None:
    _without_auth(case)
    # a different bad key for different cases, the same one for the same case (replays, shrinking)
    pick = zlib.crc32(repr((case.method, case.path_parameters, case.query)).encode())
    headers = {"Authorization": f"Bearer {BAD_KEYS[pick % len(BAD_KEYS)]}"}
    response = case.call(headers=headers)
    if _is_api(case):
        _check_error_answer(response, UNAUTHORIZED)
        if response.status_code == 401:
            assert 'error="invalid_token"' in _header(response, "www-authenticate")
    _validate(case, response, headers)


def test_the_schema_is_the_one_the_app_serves(live: Live) -> None:
    """The fuzzed schema is the app's own /openapi.json, as served by the running app."""
    served = live.http.get("/openapi.json").json()
    assert served == _SCHEMA_ONLY_APP.fastapi.openapi()
    assert len(list(schema.get_all_operations())) == sum(
        len(ops) for ops in served["paths"].values()
    )


# --- what this suite found: regression tests (and one strict xfail) ------------------------------


def _status(send: Callable[[], Any]) -> int:
    """The status the app answered with; an exception out of the app is what a server sends as
    a 500 (in-process, FastAPI re-raises it after sending the 500)."""
    try:
        return int(send().status_code)
    except Exception:
        return 500


def test_openapi_documents_the_error_responses() -> None:
    """Found: no operation documented 401/403/404, and the 422 was documented as FastAPI's
    HTTPValidationError ({"detail": [...]}), which the service never sends."""
    raw = _SCHEMA_ONLY_APP.fastapi.openapi()
    missing: list[str] = []
    for path, ops in raw["paths"].items():
        if not path.startswith(API + "/"):
            continue
        for method, op in ops.items():
            need = {"401", "422"}
            if method != "get":
                need.add("403")
            if "{pool_id}" in path:
                need.add("404")
            label = f"{method.upper()} {path}"
            missing += [f"{label}: {c}" for c in sorted(need - set(op["responses"]))]
            body = op["responses"].get("422", {}).get("content", {}).get("application/json", {})
            ref = str(body.get("schema", {}).get("$ref", ""))
            if ref.endswith("/HTTPValidationError"):
                missing.append(f"{label}: 422 documented as HTTPValidationError")
    assert missing == []


def test_real_error_answers_conform_to_the_schema(live: Live) -> None:
    """Found: a real 401 and a real 422 failed schemathesis' status_code_conformance and
    response_schema_conformance."""
    listing = schema[API + "/pools"]["GET"].Case()
    response = listing.call()
    assert response.status_code == 401
    listing.validate_response(response, checks=[status_code_conformance])
    create = schema[API + "/pools"]["POST"].Case(body={"id": "NOT VALID"})
    response = create.call(headers=live.admin())
    assert response.status_code == 422
    create.validate_response(response, checks=[response_schema_conformance])


def test_huge_list_offset_is_a_client_error(live: Live) -> None:
    """Found: GET /pools?offset=2**63 made Redis refuse the ZRANGE bounds: a 500, then a 503."""
    for offset in (2**63 - 1, 2**63, 10**30):
        status = _status(lambda o=offset: live.http.get(  # type: ignore[misc]
            f"{API}/pools", params={"offset": o}, headers=live.admin()))
        assert status == 422, (offset, status)


def test_naive_datetime_in_a_pool_schedule_is_not_a_server_error(live: Live) -> None:
    """Found: comparing a naive with an aware datetime (PoolCreate._schedule on POST,
    PoolStore.update_pool on PATCH) raised TypeError: a 500."""
    create = {"id": "naive", "valid_from": "2030-01-01T00:00:00",
              "valid_until": "2031-01-01T00:00:00Z"}
    status = _status(lambda: live.http.post(f"{API}/pools", json=create, headers=live.admin()))
    assert status < 500, status
    r = live.http.post(f"{API}/pools", json={"id": "aware", "valid_until": "2031-01-01T00:00:00Z"},
                       headers=live.admin())
    assert r.status_code == 201, r.text
    patch = {"valid_from": "2030-01-01T00:00:00"}
    status = _status(lambda: live.http.patch(f"{API}/pools/aware", json=patch,
                                             headers=live.admin()))
    assert status < 500, status


def test_out_of_range_datetimes_are_refused_and_break_nothing(live: Live) -> None:
    """Found: a datetime whose UTC year leaves 1..9999 was stored, then every read of it failed
    in from_ms ('year 0 is out of range'): GET /pools, /pools/{id}, /groups were 500 for good."""
    admin = live.admin()
    body = {"id": "year-zero", "valid_from": "0001-01-01T00:00:00+01:00"}
    status = _status(lambda: live.http.post(f"{API}/pools", json=body, headers=admin))
    assert status == 422, status
    group = {"id": "late", "url": "https://t.me/+late", "expires_at": "9999-12-31T23:59:59-01:00"}
    status = _status(lambda: live.http.post(f"{API}/pools/{SEED_POOL}/groups", json=group,
                                            headers=admin))
    assert status == 422, status
    for path in ("/pools", f"/pools/{SEED_POOL}", f"/pools/{SEED_POOL}/groups"):
        status = _status(lambda p=path: live.http.get(API + p, headers=admin))  # type: ignore[misc]
        assert status == 200, (path, status)


def test_allow_header_lists_every_method(live: Live) -> None:
    r = live.http.options(f"{API}/pools/{SEED_POOL}", headers=live.admin())
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers.get("allow", "").split(",")}
    assert allowed == {"GET", "PATCH", "DELETE"}, r.headers
    r = live.http.put(f"{API}/pools/{SEED_POOL}/groups", headers=live.admin())
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST", r.headers
    # a group may be called "reorder": PATCH and DELETE reach it, so they are listed too
    r = live.http.get(f"{API}/pools/{SEED_POOL}/groups/reorder", headers=live.admin())
    assert r.status_code == 405
    assert r.headers["allow"] == "POST, PATCH, DELETE", r.headers


def test_unparsable_body_without_a_key_is_a_401(live: Live) -> None:
    """Found: a JSON body that is not UTF-8 got FastAPI's 400 before the key was looked at."""
    r = live.http.post(f"{API}/pools/{SEED_POOL}/groups", data=b'"\xc3"',
                       headers={"content-type": "application/json"})
    assert r.status_code == 401, (r.status_code, r.text)
