"""The hot-path client against real redis-servers: pipelining, NOSCRIPT, timeouts, outages."""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
import uvloop

from app.embedded import RedisProcess, free_port
from app.store import fastredis
from app.store.fastredis import (
    PipelinedRedis,
    RedisReplyError,
    RedisUnavailable,
    Script,
)

INCR_PLUS = Script.from_source(
    "return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])"
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[PipelinedRedis]:
    c = PipelinedRedis.from_url(redis_url)
    yield c
    await c.close()


def is_connected(c: PipelinedRedis) -> bool:
    return c.connected  # a call, so that mypy does not narrow the property across awaits


async def wait_until_works(c: PipelinedRedis, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            assert await c.execute("PING", timeout=0.5) == b"PONG"
            return
        except RedisUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.03)


# ---------------------------------------------------------------- scenarios (run on both loops:
# the default loop through pytest-asyncio below, uvloop through asyncio.Runner at the end)


async def pipelining_scenario(url: str, sync: redis.Redis) -> None:
    """5,000 concurrent tasks, each SETs its own key, GETs it back and INCRs a shared counter."""
    c = PipelinedRedis.from_url(url)
    n = 5000

    async def one(i: int) -> tuple[bytes, int]:
        assert await c.execute("SET", f"k:{i}", f"v:{i}", timeout=10) == b"OK"
        got = await c.execute("GET", f"k:{i}", timeout=10)
        return got, await c.execute("INCR", "counter", timeout=10)

    try:
        results = await asyncio.gather(*(one(i) for i in range(n)))
        assert [got for got, _ in results] == [f"v:{i}".encode() for i in range(n)]
        assert sorted(count for _, count in results) == list(range(1, n + 1))
        assert sync.get("counter") == str(n).encode()
        assert c.write_count <= 3 * n / 2, c.write_count  # coalesced: several commands a write

        # Commands issued in one loop turn leave in batches of _FLUSH_AT, the rest at its end.
        before = c.write_count
        echoes = await asyncio.gather(*(c.execute("ECHO", i, timeout=5) for i in range(302)))
        assert echoes == [str(i).encode() for i in range(302)]
        assert c.write_count == before + math.ceil(302 / fastredis.FLUSH_AT)
    finally:
        await c.close()


async def noscript_scenario(url: str, sync: redis.Redis) -> None:
    c = PipelinedRedis.from_url(url)
    try:
        assert await c.evalsha(INCR_PLUS, ["n"], [10], timeout=2) == 11
        sync.script_flush()
        assert await c.evalsha(INCR_PLUS, ["n"], [10], timeout=2) == 12
        assert sync.script_exists(INCR_PLUS.sha.decode()) == [True]  # EVAL cached it again
        sync.script_flush()
        results = await asyncio.gather(
            *(c.evalsha(INCR_PLUS, [b"m"], [b"0"], timeout=5) for _ in range(500))
        )
        assert sorted(results) == list(range(1, 501))  # every call ran exactly once
        assert sync.get("m") == b"500"
    finally:
        await c.close()


async def pause_scenario(server: RedisProcess) -> None:
    """Timeouts against a frozen server, then realignment after it resumes."""
    c = PipelinedRedis.from_url(server.url, stall_timeout=60)
    try:
        assert await c.execute("SET", "n", 0, timeout=2) == b"OK"
        server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(RedisUnavailable, match="timeout"):
                await c.execute("INCR", "n", timeout=0.3)
            elapsed = time.monotonic() - t0
            assert 0.28 <= elapsed < 0.6, elapsed
            t0 = time.monotonic()
            outcomes = await asyncio.gather(
                *(c.execute("ECHO", f"lost{i}", timeout=0.2) for i in range(50)),
                return_exceptions=True,
            )
            assert all(isinstance(o, RedisUnavailable) for o in outcomes)
            assert time.monotonic() - t0 < 0.5
            assert is_connected(c)  # stall_timeout not reached: the connection is kept
        finally:
            server.resume()
        # The 51 stale replies arrive first and must be discarded, not handed to new calls.
        echoes = await asyncio.gather(*(c.execute("ECHO", f"v{i}", timeout=2) for i in range(200)))
        assert echoes == [f"v{i}".encode() for i in range(200)]
        # The timed-out INCR did run once the server woke up: a timeout is an unknown outcome.
        assert await c.execute("GET", "n", timeout=2) == b"1"
    finally:
        await c.close()


async def kill_scenario(server: RedisProcess) -> None:
    """Server killed: fast failures, then the same client object recovers after a restart."""
    c = PipelinedRedis.from_url(server.url)
    try:
        assert await c.evalsha(INCR_PLUS, ["n"], [0], timeout=2) == 1
        server.pause()
        in_flight = [asyncio.ensure_future(c.execute("ECHO", i, timeout=5)) for i in range(20)]
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        server.kill()  # SIGKILL also ends a stopped process
        outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(o, RedisUnavailable) for o in outcomes), outcomes
        assert time.monotonic() - t0 < 1.0
        assert not is_connected(c)

        for _ in range(3):  # refused, then "failed recently": each well before the timeout
            t0 = time.monotonic()
            with pytest.raises(RedisUnavailable, match="connect failed"):
                await c.execute("PING", timeout=3)
            assert time.monotonic() - t0 < 0.5

        server.start()  # same port, empty data, empty script cache
        await wait_until_works(c)
        assert await c.evalsha(INCR_PLUS, ["n"], [0], timeout=2) == 1  # NOSCRIPT -> EVAL
        assert is_connected(c)
    finally:
        await c.close()


# ---------------------------------------------------------------- default loop (pytest-asyncio)


async def test_basic_commands(client: PipelinedRedis) -> None:
    assert not is_connected(client)
    assert await client.execute("PING", timeout=1) == b"PONG"
    assert is_connected(client)
    assert await client.execute("SET", "k", b"\x00\xffbin", timeout=1) == b"OK"
    assert await client.execute(b"GET", b"k", timeout=1) == b"\x00\xffbin"
    assert await client.execute("GET", "missing", timeout=1) is None
    assert await client.execute("INCR", "c", timeout=1) == 1
    assert await client.execute("INCRBY", "c", 41, timeout=1) == 42
    assert await client.execute("INCRBYFLOAT", "f", 1.5, timeout=1) == b"1.5"
    assert await client.execute("RPUSH", "l", "a", "b", timeout=1) == 2
    assert await client.execute("LRANGE", "l", 0, -1, timeout=1) == [b"a", b"b"]
    assert await client.execute("SET", "s", "é", timeout=1) == b"OK"
    assert await client.execute("GET", "s", timeout=1) == "é".encode()

    with pytest.raises(RedisReplyError, match="not an integer"):
        await client.execute("INCR", "k", timeout=1)
    with pytest.raises(RedisReplyError, match=r"(?i)unknown command"):
        await client.execute("NOSUCHCOMMAND", timeout=1)
    # Errors inside one pipeline batch do not disturb their neighbours.
    out = await asyncio.gather(
        client.execute("INCR", "c", timeout=1),
        client.execute("INCR", "k", timeout=1),
        client.execute("GET", "k", timeout=1),
        return_exceptions=True,
    )
    assert out[0] == 43 and isinstance(out[1], RedisReplyError) and out[2] == b"\x00\xffbin"
    assert await client.execute("GET", "c", timeout=1) == b"43"
    # A bad argument type is refused before anything is queued: the connection stays aligned.
    with pytest.raises(TypeError):
        await client.execute("SET", "k", None, timeout=1)  # type: ignore[arg-type]
    assert await client.execute("ECHO", "still aligned", timeout=1) == b"still aligned"


async def test_pipelining_5000_tasks(redis_url: str, sync_redis: redis.Redis) -> None:
    await pipelining_scenario(redis_url, sync_redis)


async def test_concurrent_callers_share_one_connect(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    before = sync_redis.info("stats")["total_connections_received"]
    out = await asyncio.gather(*(client.execute("ECHO", i, timeout=2) for i in range(100)))
    assert out == [str(i).encode() for i in range(100)]
    assert sync_redis.info("stats")["total_connections_received"] - before == 1


async def test_random_timeouts_and_cancellations_keep_replies_aligned(
    client: PipelinedRedis,
) -> None:
    rng = random.Random(7)
    mismatches: list[tuple[bytes, Any]] = []
    counts = {"ok": 0, "timeout": 0, "cancelled": 0}

    async def one(i: int) -> None:
        value = f"{i}:{'x' * rng.randrange(0, 3000)}".encode()  # varied sizes: split reads
        reply = await client.execute("ECHO", value, timeout=rng.choice([0.0005, 0.003, 0.05, 5]))
        if reply != value:
            mismatches.append((value, reply))

    async def run(i: int) -> None:
        task = asyncio.ensure_future(one(i))
        if rng.random() < 0.2:
            await asyncio.sleep(rng.choice([0, 0.0005, 0.002]))
            task.cancel()
        try:
            await task
            counts["ok"] += 1
        except RedisUnavailable:
            counts["timeout"] += 1
        except asyncio.CancelledError:
            counts["cancelled"] += 1

    for _ in range(4):
        await asyncio.gather(*(run(i) for i in range(1500)))
    assert not mismatches
    assert counts["ok"] > 1000 and counts["cancelled"] > 0, counts
    # After the storm the connection is still aligned.
    out = await asyncio.gather(*(client.execute("ECHO", f"z{i}", timeout=5) for i in range(100)))
    assert out == [f"z{i}".encode() for i in range(100)]


async def test_evalsha_reloads_after_script_flush(redis_url: str, sync_redis: redis.Redis) -> None:
    await noscript_scenario(redis_url, sync_redis)


async def test_script_errors_are_not_retried(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    assert INCR_PLUS.sha.decode() == sync_redis.script_load(INCR_PLUS.body)
    sync_redis.set("str", "abc")
    with pytest.raises(RedisReplyError, match="not an integer"):
        await client.evalsha(INCR_PLUS, ["str"], [1], timeout=1)
    bad = Script.from_source("return redis.call('INCR', KEYS[1]) + ")  # does not compile
    with pytest.raises(RedisReplyError, match=r"(?i)compil|error"):
        await client.evalsha(bad, ["x"], [], timeout=1)
    calls = Script.from_source("redis.call('INCR', 'calls'); return redis.call('INCR', 'str')")
    with pytest.raises(RedisReplyError):
        await client.evalsha(calls, [], [], timeout=1)
    assert sync_redis.get("calls") == b"1"  # NOSCRIPT -> EVAL ran once; the error is not retried


async def test_close_fails_pending_and_later_calls(client: PipelinedRedis) -> None:
    blocked = asyncio.ensure_future(client.execute("BLPOP", "nothing", 5, timeout=10))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await client.close()
    with pytest.raises(RedisUnavailable):
        await blocked
    assert time.monotonic() - t0 < 0.5
    assert not is_connected(client)
    with pytest.raises(RedisUnavailable, match="closed"):
        await client.execute("PING", timeout=1)


async def test_connect_refused_fails_fast_then_retries() -> None:
    c = PipelinedRedis(port=free_port(), connect_timeout=1)
    try:
        t0 = time.monotonic()
        with pytest.raises(RedisUnavailable, match="connect failed: ConnectionRefused"):
            await c.execute("PING", timeout=2)
        with pytest.raises(RedisUnavailable, match="connect failed recently"):
            await c.execute("PING", timeout=2)
        assert time.monotonic() - t0 < 0.1
        await asyncio.sleep(0.12)
        with pytest.raises(RedisUnavailable, match="connect failed: ConnectionRefused"):
            await c.execute("PING", timeout=2)
    finally:
        await c.close()


@pytest.mark.slow
async def test_timeout_on_paused_server_then_realigned(
    make_redis: Callable[..., RedisProcess],
) -> None:
    await pause_scenario(make_redis(appendonly=False))


@pytest.mark.slow
async def test_cancelled_callers_keep_alignment(make_redis: Callable[..., RedisProcess]) -> None:
    server = make_redis(appendonly=False)
    c = PipelinedRedis.from_url(server.url)
    try:
        await c.execute("PING", timeout=1)
        server.pause()
        tasks = [asyncio.ensure_future(c.execute("ECHO", i, timeout=5)) for i in range(40)]
        await asyncio.sleep(0.05)  # all written, none answered
        for t in tasks[::2]:
            t.cancel()
        server.resume()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for i, outcome in enumerate(done):
            if i % 2:
                assert outcome == str(i).encode()
            else:
                assert isinstance(outcome, asyncio.CancelledError)
        assert await c.execute("ECHO", "after", timeout=1) == b"after"
    finally:
        await c.close()


@pytest.mark.slow
async def test_stalled_server_connection_is_aborted_and_replaced(
    make_redis: Callable[..., RedisProcess],
) -> None:
    server = make_redis(appendonly=False)
    c = PipelinedRedis.from_url(server.url, stall_timeout=0.3)
    try:
        await c.execute("PING", timeout=1)
        server.pause()
        with pytest.raises(RedisUnavailable, match="timeout"):
            await c.execute("PING", timeout=0.2)
        assert is_connected(c)  # 0.2 s without a reply is not a stall yet
        with pytest.raises(RedisUnavailable, match="timeout"):
            await c.execute("PING", timeout=0.2)
        assert not is_connected(c)  # oldest reply outstanding > 0.3 s: aborted
        server.resume()
        assert await c.execute("ECHO", "fresh", timeout=1) == b"fresh"
        assert is_connected(c)
    finally:
        server.resume()
        await c.close()


@pytest.mark.slow
async def test_overload_rejects_without_writing(make_redis: Callable[..., RedisProcess]) -> None:
    server = make_redis(appendonly=False)
    c = PipelinedRedis.from_url(server.url, max_inflight=10, stall_timeout=60)
    try:
        await c.execute("PING", timeout=1)
        server.pause()
        accepted = [asyncio.ensure_future(c.execute("ECHO", i, timeout=3)) for i in range(10)]
        await asyncio.sleep(0.02)
        writes = c.write_count
        t0 = time.monotonic()
        for _ in range(5):
            with pytest.raises(RedisUnavailable, match="overloaded"):
                await c.execute("ECHO", "extra", timeout=3)
        assert time.monotonic() - t0 < 0.05
        assert c.write_count == writes
        server.resume()
        assert await asyncio.gather(*accepted) == [str(i).encode() for i in range(10)]
        assert await c.execute("ECHO", "room again", timeout=1) == b"room again"
    finally:
        server.resume()
        await c.close()


@pytest.mark.slow
async def test_killed_server_then_restart(make_redis: Callable[..., RedisProcess]) -> None:
    await kill_scenario(make_redis(appendonly=False))


# ---------------------------------------------------------------- gathered EVALSHA

# INCRs KEYS[1] once per item. More than one: a list of {tag, count}, one per item, in order.
# One (the single form): a list of one string, "tag:count", which the client must not unwrap.
GATHER = Script.from_source("""
if ARGV[1] == 'one' then
  return {ARGV[2] .. ':' .. redis.call('INCR', KEYS[1])}
end
local out = {}
for i = 2, #ARGV do
  out[#out + 1] = {ARGV[i], redis.call('INCR', KEYS[1])}
end
return out
""")


def gather_pack(key: Any, items: list[Any]) -> bytes:
    mode = b"one" if len(items) == 1 else b"many"
    packed: bytes = hiredis.pack_command((b"EVALSHA", GATHER.sha, 1, key, mode, *items))
    return packed


def recording_pack(log: list[tuple[Any, list[Any]]]) -> fastredis.Packer:
    def pack(key: Any, items: list[Any]) -> bytes:
        log.append((key, list(items)))
        return gather_pack(key, items)

    return pack


def gathered(c: PipelinedRedis, key: str, tags: list[str], pack: fastredis.Packer = gather_pack,
             timeout: float = 2) -> list[asyncio.Future[Any]]:
    """Queue one gathered call per tag, all in the current loop turn."""
    return [c.evalsha_gathered(GATHER, pack, key, tag, timeout) for tag in tags]


def many(tags: list[str], first: int = 1) -> list[list[Any]]:
    """The replies of gathered calls: each its own tag and the count its INCR made."""
    return [[t.encode(), n] for n, t in enumerate(tags, start=first)]


def script_calls(sync: redis.Redis) -> tuple[int, int]:
    """(EVALSHA, EVAL) calls since the last CONFIG RESETSTAT."""
    stats = sync.info("commandstats")
    return tuple(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


async def in_task(fn: Callable[[], Any]) -> Any:
    return fn()


async def test_gathered_calls_share_evalshas(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    sync_redis.script_load(GATHER.body)
    await client.execute("PING", timeout=1)
    sync_redis.config_resetstat()
    log: list[tuple[Any, list[Any]]] = []
    tags = [f"t{i}" for i in range(40)]
    writes = client.write_count
    replies = await asyncio.gather(*gathered(client, "g", tags, recording_pack(log)))
    assert replies == many(tags)  # every caller got its own element, in order
    calls = math.ceil(40 / fastredis.FLUSH_AT)
    step = fastredis.FLUSH_AT  # a write, and so a seal, every _FLUSH_AT calls
    assert [items for _, items in log] == [tags[i : i + step] for i in range(0, 40, step)]
    assert client.write_count - writes == calls == len(log)
    assert script_calls(sync_redis) == (calls, 0)
    assert sync_redis.get("g") == b"40"


async def test_gathered_calls_never_merge_keys(
    client: PipelinedRedis, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "flush_at", 16)  # writes of 16: every key twice or more
    sync_redis.script_load(GATHER.body)
    await client.execute("PING", timeout=1)
    sync_redis.config_resetstat()
    log: list[tuple[Any, list[Any]]] = []
    pack = recording_pack(log)
    keys = ["a", "b", "c"]
    tags = {k: [f"{k}{i}" for i in range(10)] for k in keys}
    calls = [(k, tags[k][i]) for i in range(10) for k in keys]  # a0 b0 c0 a1 b1 c1 ...
    futs: dict[str, list[asyncio.Future[Any]]] = {k: [] for k in keys}
    for k, tag in calls:
        futs[k] += gathered(client, k, [tag], pack)
    for k in keys:
        assert await asyncio.gather(*futs[k]) == many(tags[k])
        assert sync_redis.get(k) == b"10"
    # Each write (every _FLUSH_AT calls) holds one EVALSHA per key, with that key's items only.
    expected: list[tuple[Any, list[Any]]] = []
    for start in range(0, len(calls), fastredis.FLUSH_AT):
        chunk = calls[start : start + fastredis.FLUSH_AT]
        order = dict.fromkeys(k for k, _ in chunk)  # sealed in order of first call
        expected += [(k, [t for kk, t in chunk if kk == k]) for k in order]
    assert log == expected
    assert script_calls(sync_redis) == (len(expected), 0)


async def test_gathered_single_call_gets_its_plain_reply(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    log: list[tuple[Any, list[Any]]] = []
    pack = recording_pack(log)
    assert await client.evalsha_gathered(GATHER, pack, "s", "solo", 1) == [b"solo:1"]
    # One call alone next to a gathering of three: the single form, its reply as is.
    [alone] = gathered(client, "s", ["again"], pack)
    trio = gathered(client, "t", ["x", "y", "z"], pack)
    assert await alone == [b"again:2"]
    assert await asyncio.gather(*trio) == many(["x", "y", "z"])
    assert log == [("s", ["solo"]), ("s", ["again"]), ("t", ["x", "y", "z"])]
    assert sync_redis.mget("s", "t") == [b"2", b"3"]


async def test_gathered_calls_keep_order_with_other_commands(
    client: PipelinedRedis, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "flush_at", 16)  # the 8 calls below fit in one write
    sync_redis.script_load(GATHER.body)
    await client.execute("PING", timeout=1)
    sync_redis.config_resetstat()
    writes = client.write_count
    # Five tasks that run in this order in one loop turn, before its write.
    tasks = [
        asyncio.ensure_future(client.execute("GET", "o", timeout=1)),
        asyncio.ensure_future(in_task(lambda: gathered(client, "o", ["a", "b", "c"]))),
        asyncio.ensure_future(client.execute("GET", "o", timeout=1)),
        asyncio.ensure_future(in_task(lambda: gathered(client, "o", ["d", "e"]))),
        asyncio.ensure_future(client.execute("GET", "o", timeout=1)),
    ]
    before, first, middle, second, after = await asyncio.gather(*tasks)
    assert before is None
    assert await asyncio.gather(*first) == many(["a", "b", "c"])
    assert middle == b"3"  # queued after the first gathering: sealed ahead of it
    assert await asyncio.gather(*second) == many(["d", "e"], first=4)
    assert after == b"5"
    assert client.write_count - writes == 1  # all of it in one write
    assert script_calls(sync_redis) == (2, 0)  # the GET split the calls into two gatherings


async def test_gathered_calls_survive_script_flush(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    assert await client.evalsha_gathered(GATHER, gather_pack, "f", "warm", 1) == [b"warm:1"]
    sync_redis.script_flush()
    sync_redis.config_resetstat()
    tags = [f"t{i}" for i in range(40)]
    assert await asyncio.gather(*gathered(client, "f", tags)) == many(tags, first=2)
    calls = math.ceil(40 / fastredis.FLUSH_AT)
    assert script_calls(sync_redis) == (calls, calls)  # each NOSCRIPT resent once as EVAL
    assert sync_redis.get("f") == b"41"  # each call ran exactly once
    sync_redis.script_flush()  # one call alone: the single form resent
    assert await client.evalsha_gathered(GATHER, gather_pack, "f", "solo", 1) == [b"solo:42"]
    assert sync_redis.script_exists(GATHER.sha.decode()) == [True]


async def test_gathered_error_reply_reaches_every_call(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    sync_redis.mset({"bad": "abc", "bad2": "abc"})  # INCR fails inside the script
    bad = gathered(client, "bad", ["a", "b", "c", "d"])
    good = gathered(client, "good", ["x", "y"])
    [alone] = gathered(client, "bad2", ["z"])
    replies = await asyncio.gather(*bad, alone)
    assert len({id(r) for r in replies[:4]}) == 1  # the one error, given to each
    for r in replies:
        assert isinstance(r, hiredis.ReplyError) and "not an integer" in str(r), r
    assert await asyncio.gather(*good) == many(["x", "y"])  # neighbours unaffected
    assert await client.execute("ECHO", "aligned", timeout=1) == b"aligned"
    assert sync_redis.mget("bad", "good") == [b"abc", b"2"]


async def test_gathered_calls_time_out_on_paused_server(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    sync_redis.script_load(GATHER.body)  # so that the timed-out calls do run after the pause
    await client.execute("PING", timeout=1)
    sync_redis.client_pause(600, all=True)
    t0 = time.monotonic()
    futs = gathered(client, "p", [f"t{i}" for i in range(20)], timeout=0.2)
    futs += gathered(client, "q", ["u", "v"], timeout=0.2)
    outcomes = await asyncio.gather(*futs, return_exceptions=True)
    elapsed = time.monotonic() - t0
    assert all(isinstance(o, RedisUnavailable) and str(o) == "timeout" for o in outcomes)
    assert 0.18 <= elapsed < 0.5, elapsed
    await wait_until_works(client)  # the pause ends; the stale replies are discarded
    assert is_connected(client)
    tags = ["w", "x", "y"]
    assert await asyncio.gather(*gathered(client, "p", tags)) == many(tags, first=21)
    assert sync_redis.mget("p", "q") == [b"23", b"2"]  # a timeout is an unknown outcome


async def test_gathered_calls_fail_on_connection_loss_then_recover(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    await client.execute("PING", timeout=1)
    blocker = asyncio.ensure_future(client.execute("BLPOP", "nothing", 5, timeout=10))
    await asyncio.sleep(0.05)
    futs = gathered(client, "k", [f"t{i}" for i in range(20)], timeout=5)
    await asyncio.sleep(0.05)  # written, queued behind the BLPOP in Redis
    connections = sync_redis.info("stats")["total_connections_received"]
    t0 = time.monotonic()
    assert sync_redis.client_kill_filter(_type="normal", skipme=True) >= 1
    outcomes = await asyncio.gather(blocker, *futs, return_exceptions=True)
    assert all(isinstance(o, RedisUnavailable) and "lost" in str(o) for o in outcomes), outcomes
    assert time.monotonic() - t0 < 1.0
    assert sync_redis.get("k") is None  # never ran
    tags = ["a", "b", "c"]
    assert await asyncio.gather(*gathered(client, "k", tags)) == many(tags)
    assert sync_redis.info("stats")["total_connections_received"] == connections + 1
    # Calls not sealed yet (no write since) fail too when the connection goes.
    unsealed = gathered(client, "k", ["d", "e"])
    await client.close()
    async with asyncio.timeout(1):  # never sealed: no deadline would end them
        outcomes = await asyncio.gather(*unsealed, return_exceptions=True)
    assert all(isinstance(o, RedisUnavailable) and "closed" in str(o) for o in outcomes)
    assert sync_redis.get("k") == b"3"


async def test_gathered_first_call_on_a_new_client(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    assert not is_connected(client)
    log: list[tuple[Any, list[Any]]] = []
    pack = recording_pack(log)
    tags = [f"t{i}" for i in range(20)]
    first = gathered(client, "n", tags, pack)  # queued while connecting
    other = gathered(client, "m", ["x", "y"], pack)
    assert await asyncio.gather(*first) == many(tags)
    assert await asyncio.gather(*other) == many(["x", "y"])
    assert is_connected(client)
    assert [t for key, items in log if key == "n" for t in items] == tags
    assert sync_redis.mget("n", "m") == [b"20", b"2"]


async def test_gathered_calls_of_other_scripts_or_packers_are_never_merged(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    other = Script.from_source(GATHER.body.decode() + "\n-- the same, another sha\n")

    def other_pack(key: Any, items: list[Any]) -> bytes:
        mode = b"one" if len(items) == 1 else b"many"
        return bytes(hiredis.pack_command((b"EVALSHA", other.sha, 1, key, mode, *items)))

    log: list[tuple[Any, list[Any]]] = []
    futs = gathered(client, "k", ["a1", "a2"], recording_pack(log))
    futs += [client.evalsha_gathered(other, other_pack, "k", t, 2) for t in ("b1", "b2")]
    futs += gathered(client, "k", ["a3"], gather_pack)  # same script, another packer
    replies = await asyncio.gather(*futs)
    assert replies[:2] == [[b"a1", 1], [b"a2", 2]] and log == [("k", ["a1", "a2"])]
    assert replies[2:4] == [[b"b1", 3], [b"b2", 4]]
    assert replies[4] == [b"a3:5"]  # alone: the single form


async def test_a_gathered_call_keeps_its_own_shorter_deadline(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    await client.execute("PING", timeout=1)
    sync_redis.client_pause(500, all=True)
    t0 = time.monotonic()
    slow = client.evalsha_gathered(GATHER, gather_pack, "d", "slow", 3)
    fast = client.evalsha_gathered(GATHER, gather_pack, "d", "fast", 0.1)
    with pytest.raises(RedisUnavailable, match="timeout"):
        await fast
    assert time.monotonic() - t0 < 0.4  # not held to the first call's 3 s
    assert not slow.done() or isinstance(slow.exception(), RedisUnavailable)
    await asyncio.gather(slow, return_exceptions=True)


async def test_a_packer_that_raises_fails_only_its_own_calls(
    client: PipelinedRedis, sync_redis: redis.Redis
) -> None:
    def broken(key: Any, items: list[Any]) -> bytes:
        raise ValueError("cannot pack")

    good = gathered(client, "ok", ["a", "b"])
    bad = [client.evalsha_gathered(GATHER, broken, "bad", t, 2) for t in ("x", "y")]
    after = gathered(client, "ok2", ["c", "d"])
    async with asyncio.timeout(2):
        outcomes = await asyncio.gather(*good, *bad, *after, return_exceptions=True)
    assert outcomes[:2] == many(["a", "b"]) and outcomes[4:] == many(["c", "d"])
    assert all(isinstance(o, ValueError) for o in outcomes[2:4]), outcomes
    assert await client.execute("ECHO", "still aligned", timeout=1) == b"still aligned"
    assert sync_redis.mget("ok", "bad", "ok2") == [b"2", None, b"2"]


async def test_max_inflight_counts_every_gathered_call(redis_url: str) -> None:
    c = PipelinedRedis.from_url(redis_url, max_inflight=10)
    try:
        futs = gathered(c, "m", [f"t{i}" for i in range(10)])
        with pytest.raises(RedisUnavailable, match="overloaded"):
            c.evalsha_gathered(GATHER, gather_pack, "m", "one too many", 2)
        with pytest.raises(RedisUnavailable, match="overloaded"):
            await c.execute("PING", timeout=1)
        assert len(await asyncio.gather(*futs)) == 10
        assert await c.execute("PING", timeout=1) == b"PONG"  # room again once answered
    finally:
        await c.close()


# ---------------------------------------------------------------- AUTH / SELECT / unix socket


@pytest.mark.slow
async def test_auth_and_select(make_redis: Callable[..., RedisProcess]) -> None:
    server = make_redis(appendonly=False)
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "+@all")
        admin.config_set("requirepass", "s3cret")
    port = server.port
    assert port is not None

    good = PipelinedRedis.from_url(f"redis://:s3cret@127.0.0.1:{port}/2")
    alice = PipelinedRedis.from_url(f"redis://alice:alicepw@127.0.0.1:{port}/3")
    wrong = PipelinedRedis.from_url(f"redis://:nope@127.0.0.1:{port}/0")
    try:
        assert await good.execute("SET", "where", "db2", timeout=1) == b"OK"
        assert await alice.execute("SET", "who", "alice", timeout=1) == b"OK"
        with redis.Redis(port=port, password="s3cret", db=2) as r2:
            assert r2.get("where") == b"db2"
        with redis.Redis(port=port, password="s3cret", db=3) as r3:
            assert r3.get("who") == b"alice"
        with pytest.raises(RedisUnavailable, match=r"WRONGPASS|invalid"):
            await wrong.execute("PING", timeout=1)
        assert not is_connected(wrong)
        with pytest.raises(RedisUnavailable, match="recently"):  # no hammering
            await wrong.execute("PING", timeout=1)
    finally:
        for c in (good, alice, wrong):
            await c.close()


async def test_failed_select_runs_nothing_on_db0(redis_url: str, sync_redis: redis.Redis) -> None:
    c = PipelinedRedis.from_url(redis_url.rsplit("/", 1)[0] + "/99")
    try:
        outcomes = await asyncio.gather(
            *(c.execute("SET", f"wrongdb{i}", 1, timeout=1) for i in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(o, RedisUnavailable) and "DB index" in str(o) for o in outcomes)
        assert sync_redis.dbsize() == 0
    finally:
        await c.close()


@pytest.mark.slow
async def test_unix_socket(tmp_path: Path) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="lc", dir="/tmp"))  # AF_UNIX paths must be short
    server = RedisProcess(tmp_path / "unix", unix_socket=sock_dir / "r.sock", appendonly=False)
    server.start()
    c = PipelinedRedis.from_url(f"{server.url}?db=2")
    try:
        assert c.path == str(sock_dir / "r.sock") and c.db == 2
        assert await c.execute("SET", "via", "unix", timeout=1) == b"OK"
        assert await c.evalsha(INCR_PLUS, ["n"], [1], timeout=1) == 2
        with redis.Redis(unix_socket_path=str(sock_dir / "r.sock"), db=2) as r:
            assert r.get("via") == b"unix"
    finally:
        await c.close()
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://10.0.0.5:6380/3", {"host": "10.0.0.5", "port": 6380, "db": 3}),
        ("redis://localhost", {"host": "localhost", "port": 6379, "db": 0, "password": None}),
        ("redis://:p%40ss@h/1", {"host": "h", "password": "p@ss", "username": None, "db": 1}),
        ("redis://alice:pw@h:1234", {"username": "alice", "password": "pw", "port": 1234}),
        ("redis://h?db=5", {"db": 5}),
        ("unix:///tmp/x.sock?db=4", {"path": "/tmp/x.sock", "db": 4}),
        ("unix:///var/run/redis.sock", {"path": "/var/run/redis.sock", "db": 0}),
        ("unix://:pw@/tmp/y.sock", {"path": "/tmp/y.sock", "password": "pw"}),
    ],
)
def test_from_url(url: str, expected: dict[str, Any]) -> None:
    c = PipelinedRedis.from_url(url)
    for name, value in expected.items():
        assert getattr(c, name) == value, name


def test_from_url_overrides_and_rejects() -> None:
    c = PipelinedRedis.from_url("redis://h/1", db=2, max_inflight=5, stall_timeout=0.5)
    assert (c.db, c.max_inflight, c.stall_timeout) == (2, 5, 0.5)
    for bad in ("rediss://h:6379/0", "http://h", "unix://"):
        with pytest.raises(ValueError):
            PipelinedRedis.from_url(bad)
    with pytest.raises(ValueError):
        PipelinedRedis.from_url("redis://h/notanumber")


def test_script_sha() -> None:
    s = Script.from_source("return 1")
    assert s.body == b"return 1"
    assert s.sha == b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"


def test_handshake_is_packed() -> None:
    c = PipelinedRedis(password="pw", username="u", db=7)
    assert c._handshake == (
        b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n7\r\n"
    )


# ---------------------------------------------------------------- uvloop (same scenarios)


def run_on_uvloop(scenario: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(scenario)


def test_uvloop_pipelining_and_noscript(redis_url: str, sync_redis: redis.Redis) -> None:
    run_on_uvloop(pipelining_scenario(redis_url, sync_redis))
    sync_redis.flushall()
    run_on_uvloop(noscript_scenario(redis_url, sync_redis))


@pytest.mark.slow
def test_uvloop_outages(make_redis: Callable[..., RedisProcess]) -> None:
    run_on_uvloop(pause_scenario(make_redis(appendonly=False)))
    run_on_uvloop(kill_scenario(make_redis(appendonly=False)))
