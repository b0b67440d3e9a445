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
        assert c.write_count == before + math.ceil(302 / fastredis._FLUSH_AT)
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
