"""WAIT mode of the scan path's client: a script's reply counts only once a replica has it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.embedded import RedisProcess
from app.store.fastredis import PipelinedRedis, RedisUnavailable, Script
from tests.helpers import start_primary_and_replica

INCR = Script.from_source("return redis.call('INCR', KEYS[1])")


async def test_wait_mode_acknowledges_only_replicated_scripts(
    make_redis: Callable[..., RedisProcess],
) -> None:
    primary, replica = start_primary_and_replica(make_redis)
    client = PipelinedRedis.from_url(primary.url, wait_replicas=1, wait_ms=100)
    try:
        replies = await asyncio.gather(
            *(client.evalsha(INCR, ["n"], [], timeout=1.0) for _ in range(200))
        )
        assert sorted(replies) == list(range(1, 201))
        with replica.client() as r:
            assert int(r.get("n") or 0) == 200  # every acknowledged write is on the replica
        writes = client.write_count
        assert writes < 200  # one WAIT per written batch, not one round trip per script

        replica.pause()  # the replica stops acknowledging
        started = time.perf_counter()
        results = await asyncio.gather(
            *(client.evalsha(INCR, ["n"], [], timeout=0.25) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, RedisUnavailable) for r in results), results
        assert time.perf_counter() - started < 0.25 + 0.2
        replica.resume()
        assert await client.evalsha(INCR, ["n"], [], timeout=1.0) == 221  # the 20 did run
    finally:
        replica.resume()
        await client.close()


async def test_wait_mode_without_a_replica_never_acknowledges(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=False)
    client = PipelinedRedis.from_url(server.url, wait_replicas=1, wait_ms=20)
    try:
        results = await asyncio.gather(
            *(client.evalsha(INCR, ["n"], [], timeout=0.5) for _ in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, RedisUnavailable) and "replica" in str(r) for r in results)
    finally:
        await client.close()


async def test_wait_mode_survives_script_flush(make_redis: Callable[..., RedisProcess]) -> None:
    primary, _ = start_primary_and_replica(make_redis)
    client = PipelinedRedis.from_url(primary.url, wait_replicas=1, wait_ms=100)
    try:
        assert await client.evalsha(INCR, ["n"], [], timeout=1.0) == 1
        with primary.client() as r:
            r.script_flush()
        assert await client.evalsha(INCR, ["n"], [], timeout=1.0) == 2
    finally:
        await client.close()


async def test_wait_mode_failing_calls_leave_no_unretrieved_exception(
    make_redis: Callable[..., RedisProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the script's reply fails first (here a timeout), the WAIT's failure, which no
    caller then awaits, must not be left for asyncio to log as 'Future exception was never
    retrieved' (the flag it logs from is Future._log_traceback)."""
    server = make_redis(appendonly=False)
    client = PipelinedRedis.from_url(server.url, wait_replicas=1, wait_ms=50)
    waits: list[asyncio.Future[Any]] = []
    assert client.wait_mode is not None
    send_waited = client.wait_mode._send

    def recording(c: PipelinedRedis, packed: bytes,
                  timeout: float) -> tuple[Any, asyncio.Future[Any]]:
        fut, wait_fut = send_waited(c, packed, timeout)
        waits.append(wait_fut)
        return fut, wait_fut

    monkeypatch.setattr(client.wait_mode, "_send", recording)
    try:
        assert await client.execute("PING", timeout=1.0) == b"PONG"
        server.pause()
        results = await asyncio.gather(
            *(client.evalsha(INCR, ["n"], [], timeout=0.2) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, RedisUnavailable) and "timeout" in str(r) for r in results)
        await asyncio.sleep(0)
        assert waits and all(w.done() for w in waits)
        # the flag asyncio logs from; w.exception() here would clear it, so it is read first
        assert [w._log_traceback for w in waits] == [False] * len(waits)  # type: ignore[attr-defined]
        assert all(isinstance(w.exception(), RedisUnavailable) for w in waits)
    finally:
        server.resume()
        await client.close()
