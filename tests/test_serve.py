"""`livecode serve` as a real process: exactness through HTTP with several workers, metrics
across workers, and the embedded default keeping its data across a restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from app.embedded import free_port
from tests.helpers import counts, open_core, seed
from tests.loadgen import fire

pytestmark = pytest.mark.slow


@contextmanager
def serve(*args: str, env: dict[str, str], cwd: Path) -> Iterator[str]:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECODE_")}
    full_env.update(env)
    log = (cwd / "serve.log").open("ab")  # appended across restarts; tests read it
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (cwd / "serve.log").read_text()
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def scan_all(base: str, n: int, path: str = "/s/pool-a") -> list[tuple[int, str]]:
    """n concurrent scans by n distinct visitors (no cookies)."""
    host, port = base.removeprefix("http://").split(":")
    replies = await fire(host, int(port), path, n, concurrency=200)
    assert len(replies) == n
    return [(r.status, r.headers.get("location", "")) for r in replies]


def metric(text: str, outcome: str) -> float:
    m = re.search(rf'livecode_scans_total{{outcome="{outcome}"}} (\S+)', text)
    return float(m.group(1)) if m else 0.0


async def test_2000_concurrent_scans_with_two_workers_are_exact(
    redis_url: str, tmp_path: Path
) -> None:
    async with open_core(redis_url) as core:
        await seed(core.store)  # 3 groups of 200
    with serve("--workers", "2", env={"LIVECODE_REDIS_URL": redis_url}, cwd=tmp_path) as base:
        results = await scan_all(base, 2000)
        # each worker folds its tallies into the shared metric files once a second
        async with httpx.AsyncClient() as client:
            for _ in range(30):
                metrics_text = (await client.get(base + "/metrics")).text
                if metric(metrics_text, "new") + metric(metrics_text, "fallback") >= 2000:
                    break
                await asyncio.sleep(0.2)
    got = Counter(loc if status == 302 else status for status, loc in results)
    assert got == {
        "https://chat.example.com/g1": 200,
        "https://chat.example.com/g2": 200,
        "https://chat.example.com/g3": 200,
        200: 1400,  # the fallback page
    }
    async with open_core(redis_url) as core:
        assert await counts(core.redis) == {"g1": 200, "g2": 200, "g3": 200}
        assert (await core.store.statistics.totals("pool-a")).fallback == 1400
    # /metrics adds up both workers
    assert metric(metrics_text, "new") == 600
    assert metric(metrics_text, "fallback") == 1400


async def test_embedded_default_keeps_data_across_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sock = data / "redis.sock"
    with serve("--demo", "--data-dir", str(data), env={}, cwd=tmp_path) as base:
        results = await scan_all(base, 3, "/s/demo")
        assert [loc for _, loc in results] == ["https://example.com/demo-group-1"] * 3
    assert not sock.exists() or not _pings(sock), "serve must stop the redis-server it started"
    first_log = (tmp_path / "serve.log").read_text()
    key = re.search(r"admin API key \(shown once, store it now\): (lc_\S+)", first_log)
    assert key, first_log
    # no LIVECODE_PUBLIC_URL: posters would encode the loopback address it is bound to
    assert f"warning: the poster URL {base} is a loopback address" in first_log, first_log

    with serve("--data-dir", str(data), env={}, cwd=tmp_path) as base:
        results = await scan_all(base, 3, "/s/demo")
        locations = sorted(loc for _, loc in results)
        assert locations == ["https://example.com/demo-group-1"] * 2 + [
            "https://example.com/demo-group-2"
        ]
        async with httpx.AsyncClient() as client:
            auth = {"Authorization": f"Bearer {key.group(1)}"}
            pool = (await client.get(f"{base}/api/v1/pools/demo", headers=auth)).json()
            assert [g["count"] for g in pool["groups"]] == [5, 1, 0]
        # printed once: the second start found the key already there
        assert (tmp_path / "serve.log").read_text().count("admin API key") == 1
        with redis.Redis(unix_socket_path=str(sock)) as r:
            assert r.config_get("appendonly")["appendonly"] == "yes"
            assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
            assert int(r.hget("lc:{demo}:g:group-1", "c") or 0) == 5


def _pings(sock: Path) -> bool:
    try:
        with redis.Redis(unix_socket_path=str(sock), socket_timeout=1) as r:
            return bool(r.ping())
    except (redis.RedisError, OSError):
        return False
