"""`python -m bench`: the scan path against its ceiling, same server, same load generator.

Every figure is a ratio to a ceiling measured in the same run, rounds interleaved, medians
reported, because these 2-core machines are shared and noisy. The ceiling is a bare ASGI app
that only answers 302 (bench/ceiling.py) under the same uvicorn settings as `livecode serve`.
Load comes from wrk over 127.0.0.1; it is installed with apt-get when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import redis

from app import __version__
from app.embedded import RedisProcess, find_redis_server, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# A real in-app browser UA, so the bot check does its real work on every request.
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; V2183A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 "
    "MicroMessenger/8.0.42.2460(0x28002A3B) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN"
)
STICKY_VISITOR = "benchStickyVisitor0001"  # 22 chars, a valid visitor id


@dataclass
class Scenario:
    name: str
    what: str
    headers: dict[str, str]
    method: str = "GET"
    target: float = 0.6


SCENARIOS = [
    Scenario("scan_new", "new visitor per request: a full allocation each",
             {"User-Agent": WECHAT_UA}),
    Scenario("scan_sticky", "the same visitor re-scanning (cookie): no allocation",
             {"User-Agent": WECHAT_UA, "Cookie": f"lc_vid={STICKY_VISITOR}"}),
    Scenario("bot_preview", "link-preview bot: neutral page, no Redis",
             {"User-Agent": "facebookexternalhit/1.1"}),
]


@dataclass
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx/3xx responses and socket errors


@dataclass
class Result:
    scenario: str
    what: str
    target: float
    ceiling: list[WrkRun] = field(default_factory=list)
    livecode: list[WrkRun] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return median([r.rps for r in self.livecode]) / median([r.rps for r in self.ceiling])


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get", flush=True)
    apt = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(apt, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        subprocess.run(apt, capture_output=True, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("could not install wrk")
    return found


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> WrkRun:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return _ms(*m.groups()) if m else float("nan")

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        bad += sum(int(x) for x in m.groups())
    return WrkRun(rps, latency("50"), latency("99"), requests, bad)


def wrk_command(url: str, s: Scenario, duration: float, connections: int) -> list[str]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for k, v in s.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    return [*cmd, url]


def run_wrk(url: str, s: Scenario, duration: float, connections: int) -> WrkRun:
    out = subprocess.run(
        wrk_command(url, s, duration, connections), capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(out)


@contextmanager
def process(cmd: list[str], env: dict[str, str], ready_url: str) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{cmd} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{cmd} did not become ready")
            time.sleep(0.1)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def seed(url: str, groups: int, capacity: int) -> None:
    """An empty Redis with pool `bench` and the sticky scenario's visitor already placed."""
    import redis.asyncio as aredis

    from app.allocator.engine import Allocator
    from app.schemas import GroupCreate, PoolCreate
    from app.store.fastredis import PipelinedRedis
    from app.store.pools import PoolStore

    async def go() -> None:
        client = aredis.Redis.from_url(url)
        fast = PipelinedRedis.from_url(url)
        try:
            store = await PoolStore.open(client)
            await store.create_pool(PoolCreate(id="bench", name="bench"))
            await store.add_groups("bench", [
                GroupCreate(id=f"g{i}", url=f"https://chat.example.com/g{i}", capacity=capacity)
                for i in range(1, groups + 1)
            ])
            await Allocator(fast, shebang=store.shebang, deadline_s=5).scan("bench", STICKY_VISITOR)
        finally:
            await fast.close()
            await client.aclose()

    with redis.Redis.from_url(url) as r:
        r.flushall()
    asyncio.run(go())


def versions() -> dict[str, str]:
    import uvicorn

    redis_v = subprocess.run([find_redis_server(), "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "livecode": __version__,
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "redis-server": redis_v.removeprefix("v="),
        "wrk": (wrk_v.stdout + wrk_v.stderr).split()[1] if (wrk_v.stdout + wrk_v.stderr) else "?",
        "cores": str(os.cpu_count()),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s: checks the suite runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--json", type=Path, default=HERE / "results.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    ensure_wrk()

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECODE_")}
    results = {s.name: Result(s.name, s.what, s.target) for s in SCENARIOS}
    with tempfile.TemporaryDirectory(prefix="livecode-bench-") as tmp:
        server = RedisProcess(Path(tmp), port=free_port(), appendonly=True)
        server.start()
        try:
            ceiling_port, livecode_port = free_port(), free_port()
            uvicorn_flags = ["--loop", "uvloop", "--http", "httptools", "--no-access-log",
                             "--log-level", "warning"]
            ceiling_cmd = [sys.executable, "-m", "uvicorn", "bench.ceiling:app",
                           "--port", str(ceiling_port), *uvicorn_flags]
            livecode_cmd = [sys.executable, "-m", "app.cli", "serve", "--port",
                            str(livecode_port), "--workers", "1"]
            lc_env = {**env, "LIVECODE_REDIS_URL": server.url, "LIVECODE_LOG_LEVEL": "warning"}
            seed(server.url, groups=20, capacity=100_000)
            with process(ceiling_cmd, env, f"http://127.0.0.1:{ceiling_port}/"), \
                    process(livecode_cmd, lc_env, f"http://127.0.0.1:{livecode_port}/readyz"):
                for round_no in range(1, args.rounds + 1):
                    for s in SCENARIOS:
                        if s.name == "scan_new":
                            seed(server.url, groups=20, capacity=100_000)  # same state each round
                        path = "/s/bench"
                        for label, port in (("ceiling", ceiling_port), ("livecode", livecode_port)):
                            run = run_wrk(f"http://127.0.0.1:{port}{path}", s, args.duration,
                                          args.connections)
                            getattr(results[s.name], label).append(run)
                            print(f"round {round_no} {s.name:12} {label:8} {run.rps:9.0f} req/s "
                                  f"p99 {run.p99_ms:6.2f} ms bad {run.bad}", flush=True)
                with redis.Redis.from_url(server.url) as r:
                    counts = [int(r.hget(f"lc:{{bench}}:g:g{i}", "c") or 0) for i in range(1, 21)]
                    assert max(counts) <= 100_000
        finally:
            server.stop()

    info = versions()
    write_results(args, results, info, ceiling_cmd, livecode_cmd)
    return 0


def write_results(args: argparse.Namespace, results: dict[str, Result], info: dict[str, str],
                  ceiling_cmd: list[str], livecode_cmd: list[str]) -> None:
    def rel(cmd: list[str]) -> str:
        return " ".join(["python" if c == sys.executable else c for c in cmd])

    s0 = SCENARIOS[0]
    lines = [
        "# Benchmark results",
        "",
        f"Command: `python -m bench{' --quick' if args.quick else ''}` "
        f"({args.rounds} round(s) of {args.duration:g} s per run, {args.connections} connections,"
        f" rounds interleaved: ceiling then livecode, per scenario). Medians.",
        "",
        "Machine and versions: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "Ceiling: a bare ASGI app answering 302 (`bench/ceiling.py`), same uvicorn settings as "
        "`livecode serve` (uvloop, httptools, no access log, 1 worker). Redis: a fresh "
        "redis-server with AOF everysec, pool `bench` of 20 groups x 100,000, re-seeded before "
        "each scan_new round.",
        "",
        "| scenario | what | ceiling req/s | livecode req/s | ratio | target | ceiling p99 ms "
        "| livecode p99 ms | bad responses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        c_rps, l_rps = median([x.rps for x in r.ceiling]), median([x.rps for x in r.livecode])
        c_p99, l_p99 = median([x.p99_ms for x in r.ceiling]), median([x.p99_ms for x in r.livecode])
        bad = sum(x.bad for x in r.livecode)
        ok = "met" if r.ratio >= r.target else "**missed**"
        lines.append(f"| {r.scenario} | {r.what} | {c_rps:,.0f} | {l_rps:,.0f} | {r.ratio:.2f} | "
                     f">= {r.target} ({ok}) | {c_p99:.2f} | {l_p99:.2f} | {bad} |")
    lines += [
        "",
        "Load commands (per run):",
        "",
        "```",
        rel(ceiling_cmd),
        rel(livecode_cmd) + "   # with LIVECODE_REDIS_URL set to the bench redis-server",
        " ".join(wrk_command("http://127.0.0.1:PORT/s/bench", s0, args.duration,
                             args.connections)[:5]) + " -H 'User-Agent: <WeChat in-app UA>' URL",
        "```",
        "",
    ]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    args.out.write_text("\n".join(lines))
    args.json.write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "versions": info,
         "results": {k: {**asdict(v), "ratio": v.ratio} for k, v in results.items()}},
        indent=2))
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    sys.exit(main())
