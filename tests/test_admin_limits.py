"""One admin request cannot stall the service: a list of groups has a documented cap (1,000 per
request), a list past it is refused whole and at once, the pool is checked before any group is,
and scans stay fast while the largest allowed request runs (a real `livecode serve`)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.store.apikeys import ApiKeyStore
from tests.api_helpers import Api, assert_error, unchanged
from tests.helpers import open_core, seed
from tests.loadgen import _exchange
from tests.test_serve import serve

CAP = 1000  # README: "at most 1,000 groups per request"


def groups(n: int, prefix: str = "g", **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "url": f"https://chat.example.com/{prefix}{i}",
             "capacity": 5, **extra} for i in range(n)]


async def test_the_largest_allowed_list_is_added_in_order(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    created = await api.ok("POST", "/pools/pool-a/groups", 201, json=groups(CAP))
    assert [g["id"] for g in created] == [f"g{i}" for i in range(CAP)]
    assert [g["position"] for g in created] == list(range(1, CAP + 1))
    listed = await api.ok("GET", "/pools/pool-a/groups")
    assert [g["id"] for g in listed] == [f"g{i}" for i in range(CAP)]


@pytest.mark.parametrize("n", [CAP + 1, 40_000])
async def test_a_list_past_the_cap_is_refused_whole(api: Api, n: int) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    body = json.dumps(groups(n))
    async with unchanged(api.redis):
        t0 = time.perf_counter()
        r = await api.call("POST", "/pools/pool-a/groups", content=body,
                           headers={"content-type": "application/json"})
        elapsed = time.perf_counter() - t0
        error = assert_error(r, 422, "invalid_input")
    assert f"at most {CAP} groups" in json.dumps(error), error
    assert elapsed < 1.0, elapsed


async def test_the_pool_is_checked_before_any_group(api: Api) -> None:
    """A missing pool is a 404 however bad the groups are: nothing of the list is looked at."""
    body = groups(CAP)
    body[-1]["url"] = "javascript:alert(1)"
    async with unchanged(api.redis):
        t0 = time.perf_counter()
        r = await api.call("POST", "/pools/no-such-pool/groups", json=body)
        assert_error(r, 404, "not_found")
        assert time.perf_counter() - t0 < 1.0


async def test_a_list_failing_late_writes_nothing(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    body = groups(CAP)
    body[-1]["url"] = "javascript:alert(1)"
    async with unchanged(api.redis):
        assert_error(await api.call("POST", "/pools/pool-a/groups", json=body), 422,
                     "invalid_input")
    body = groups(CAP)
    body[-1]["id"] = "g0"  # the same id twice
    async with unchanged(api.redis):
        assert_error(await api.call("POST", "/pools/pool-a/groups", json=body), 422,
                     "invalid_input")


@pytest.mark.slow
async def test_scans_stay_fast_while_the_largest_allowed_request_runs(
    redis_url: str, tmp_path: Path
) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store, groups=[{"capacity": 100_000}])
        _, key = await ApiKeyStore(core.redis).create("admin", "bulk")
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    requests: list[tuple[str, bytes, int]] = [
        ("/api/v1/pools", json.dumps({"id": f"bulk-{i}"}).encode(), 201) for i in range(3)
    ]
    requests += [(f"/api/v1/pools/bulk-{i}/groups", json.dumps(groups(CAP, f"b{i}-")).encode(),
                  201) for i in range(3)]
    requests.append(("/api/v1/pools/no-such-pool/groups", json.dumps(groups(CAP)).encode(), 404))
    requests.append(("/api/v1/pools/bulk-0/groups", json.dumps(groups(40_000)).encode(), 422))

    with serve(env={"LIVECODE_REDIS_URL": redis_url}, cwd=tmp_path) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        scan = f"GET /s/pool-a HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        samples: list[tuple[float, float]] = []  # (start, latency) of each scan
        stop, warm = asyncio.Event(), asyncio.Event()

        async def scanner() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                reply = await _exchange(reader, writer, scan)
                samples.append((t0, time.perf_counter() - t0))
                assert reply.status == 302, reply
                if len(samples) == 50:
                    warm.set()

        task = asyncio.create_task(scanner())
        await asyncio.wait_for(warm.wait(), 30)
        windows: list[tuple[float, float, int]] = []  # (start, end, groups in the body)
        with httpx.Client(base_url=base, timeout=60) as admin:
            for path, body, status in requests:
                t0 = time.perf_counter()
                # in a thread: the admin client's work must not delay the scanner's loop
                r = await asyncio.to_thread(admin.post, path, content=body, headers=auth)
                windows.append((t0, time.perf_counter(), body.count(b'"url"')))
                assert r.status_code == status, (path, r.status_code, r.text[:300])
        stop.set()
        await task
        writer.close()

    def during(sizes: set[int]) -> list[float]:
        return sorted(lat for t0, lat in samples
                      if any(a <= t0 <= b and n in sizes for a, b, n in windows))

    largest = during({CAP})  # the largest allowed requests: every scan under 50 ms
    assert len(largest) >= 100, len(largest)
    assert largest[-1] < 0.050, largest[-10:]
    every = during({n for _, _, n in windows})  # with the refused ones: p99 under 50 ms
    assert every[int(len(every) * 0.99)] < 0.050, every[-10:]
