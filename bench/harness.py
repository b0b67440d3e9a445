"""What every scenario shares: the load generators (wrk, redis-benchmark), the server processes,
and the interleaved measurement of a figure against its ceiling."""

from __future__ import annotations

import csv
import io
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app import __version__
from app.embedded import RedisProcess, find_redis_server, free_port
from bench.seed import Seeder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PORT = "PORT"  # stands for the random port in the commands the report prints


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def shell(cmd: list[str]) -> str:
    """A command as a user would type it: `python` for this interpreter, paths relative."""
    def word(c: str) -> str:
        if c == sys.executable:
            return "python"
        return c.replace(str(ROOT) + "/", "")
    return " ".join(shlex.quote(word(c)) for c in cmd)


@dataclass
class Sample:
    """One run of a load generator."""

    rate: float  # requests or calls per second
    p50_ms: float
    p99_ms: float
    count: int
    bad: int = 0  # non-2xx/3xx responses and socket errors
    # CPU microseconds per request, by role ("server", "redis", "load generator")
    cpu_us: dict[str, float] = field(default_factory=dict)


# CPU accounting -------------------------------------------------------------------------------

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's workers are children of `serve`)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, all their threads included (/proc/<pid>/stat)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime
    return total


def run_seconds(pids: list[int]) -> float:
    """Time these processes' threads spent on a CPU, from /proc/<pid>/task/*/schedstat
    (nanoseconds): the same as cpu_seconds, without its 10 ms ticks, for short measurements.
    Threads that ended are not in it: use it on long-lived processes."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return total / 1e9


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# wrk ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the load generator sends. GET goes through wrk; HEAD through bench/headload.py,
    because wrk waits for a body after a HEAD response that has a Content-Length."""

    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"


def ensure_tool(binary: str, package: str) -> str:
    """A load tool from PATH, installed with apt-get (Debian's package) when missing."""
    found = shutil.which(binary)
    if found:
        return found
    print(f"{binary} not found: installing {package} with apt-get", flush=True)
    apt = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(apt, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        subprocess.run(apt, capture_output=True, check=True)
    found = shutil.which(binary)
    if not found:
        raise SystemExit(f"could not install {binary}")
    return found


def ensure_wrk() -> str:
    return ensure_tool("wrk", "wrk")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> Sample:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return _ms(*m.groups()) if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    if rps is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        bad += sum(int(x) for x in m.groups())
    return Sample(float(rps.group(1)), latency("50"), latency("99"), int(requests.group(1)), bad)


def wrk_command(url: str, req: Request, duration: float, connections: int,
                threads: int = 1, script: Path | None = None,
                script_args: tuple[str, ...] = ()) -> list[str]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    for k, v in req.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    return [*cmd, url, *(["--", *script_args] if script_args else [])]


def load_command(url: str, req: Request, duration: float, connections: int,
                 threads: int = 1) -> list[str]:
    if req.method == "GET":
        return wrk_command(url, req, duration, connections, threads)
    if req.method == "HEAD":
        headers = [x for k, v in req.headers.items() for x in ("-H", f"{k}: {v}")]
        return [sys.executable, "-m", "bench.headload", url, "-c", str(connections),
                "-d", f"{duration:g}", *headers]
    raise ValueError(f"no load generator for {req.method}")


def run_load(url: str, req: Request, duration: float, connections: int,
            threads: int = 1, script: Path | None = None,
            watch: dict[str, int] | None = None, script_args: tuple[str, ...] = ()) -> Sample:
    """One load run (wrk, or bench/headload.py for HEAD), parsed. `watch` (role -> pid): the
    CPU each of those process trees and the load generator spent per request."""
    cmd = (wrk_command(url, req, duration, connections, threads, script, script_args) if script
           else load_command(url, req, duration, connections, threads))
    trees = {role: process_tree(pid) for role, pid in (watch or {}).items()}
    before = {role: cpu_seconds(pids) for role, pids in trees.items()}
    load_before = _children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                         timeout=duration + 30).stdout
    sample = parse_wrk(out)
    if trees and sample.count:
        spent = {role: cpu_seconds(pids) - before[role] for role, pids in trees.items()}
        spent["load generator"] = _children_cpu() - load_before
        sample.cpu_us = {role: s / sample.count * 1e6 for role, s in spent.items()}
    return sample


# redis-benchmark ------------------------------------------------------------------------------


def redis_benchmark_path() -> str:
    """The redis-benchmark shipped next to the redis-server in use, else the one on PATH."""
    beside = Path(find_redis_server()).with_name("redis-benchmark")
    if beside.exists():
        return str(beside)
    return ensure_tool("redis-benchmark", "redis-tools")


def redis_benchmark_command(port: int | str, calls: int, command: list[str]) -> list[str]:
    """-P 16: 16 commands in flight per connection, so the client is not the limit;
    -r: `__rand_int__` in the command becomes a random 12-digit number per call."""
    return [redis_benchmark_path(), "-h", "127.0.0.1", "-p", str(port), "-c", "50",
            "-n", str(calls), "-P", "16", "-r", "1000000000", "--csv", *command]


def run_redis_benchmark(port: int, calls: int, command: list[str]) -> Sample:
    cmd = redis_benchmark_command(port, calls, command)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise RuntimeError(f"unexpected redis-benchmark output:\n{out}")
    row = rows[-1]
    return Sample(float(row["rps"]), float(row["p50_latency_ms"]),
                  float(row["p99_latency_ms"]), calls)


# processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    pid: int
    seconds: float  # from spawn until ready


@contextmanager
def process(cmd: list[str], env: dict[str, str], ready_url: str, log: Path, *,
            ready: Callable[[int], bool] = lambda status: status < 500,
            poll_s: float = 0.1, timeout_s: float = 30) -> Iterator[Running]:
    """Run a server until the block ends (SIGTERM, then SIGKILL after 15 s); yields its pid and
    the seconds it took from spawn until `ready_url` answered with a status `ready` accepts.
    Its stderr goes to `log`, so a chatty server can never block on a full pipe."""
    with log.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{shell(cmd)} exited:\n{log.read_text(errors='replace')[-2000:]}")
            try:
                if ready(httpx.get(ready_url, timeout=1).status_code):
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > timeout_s:
                raise SystemExit(f"{shell(cmd)} did not become ready in {timeout_s:g} s")
            time.sleep(poll_s)
        yield Running(proc.pid, time.perf_counter() - started)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def clean_env() -> dict[str, str]:
    """This environment without LIVECODE_ settings (but the choice of redis-server binary):
    each server gets only what it is told."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("LIVECODE_") or k == "LIVECODE_REDIS_SERVER"}


@dataclass(frozen=True)
class Server:
    label: str
    port: int
    cmd: list[str]
    pid: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log",
                 "--log-level", "warning"]


def livecode_command(port: int | str, workers: int) -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve", "--port", str(port),
            "--workers", str(workers)]


def ceiling_command(port: int | str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "bench.ceiling:app", "--port", str(port),
            *UVICORN_FLAGS]


class Lab:
    """The processes of one benchmark run, each started on first use, all stopped when the
    `with` block ends. Idle servers cost nothing, so they stay up between scenarios."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._stack = ExitStack()
        self._redis: dict[str, RedisProcess] = {}
        self._servers: dict[str, Server] = {}
        self._seeders: dict[str, Seeder] = {}

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def redis(self, name: str, *, appendonly: bool,
              replica_of: RedisProcess | None = None) -> RedisProcess:
        """A redis-server on loopback TCP, `noeviction`; AOF everysec or no persistence;
        optionally the replica of another."""
        if name not in self._redis:
            extra = ["--repl-diskless-sync-delay", "0"]
            if replica_of is not None:
                extra += ["--replicaof", "127.0.0.1", str(replica_of.port)]
            server = RedisProcess(self.tmp / f"redis-{name}", port=free_port(),
                                  appendonly=appendonly, extra_args=extra)
            server.start()
            self._stack.callback(server.stop)
            self._redis[name] = server
        return self._redis[name]

    def seeder(self, redis: RedisProcess) -> Seeder:
        if redis.url not in self._seeders:
            seeder = Seeder(redis.url)
            self._stack.callback(seeder.close)
            self._seeders[redis.url] = seeder
        return self._seeders[redis.url]

    def _serve(self, key: str, label: str, cmd: list[str], port: int, env: dict[str, str],
               ready_path: str) -> Server:
        if key not in self._servers:
            running = self._stack.enter_context(process(
                cmd, env, f"http://127.0.0.1:{port}{ready_path}", self.tmp / f"{key}.log"))
            self._servers[key] = Server(label, port, cmd, running.pid)
        return self._servers[key]

    def livecode(self, redis: RedisProcess, workers: int = 1, *,
                 wait_replicas: int = 0, settings: dict[str, str] | None = None) -> Server:
        """`livecode serve` on the given Redis (LIVECODE_REDIS_URL), as in production; with
        wait_replicas, in WAIT mode; `settings`: more LIVECODE_ variables."""
        port = free_port()
        extra = dict(sorted((settings or {}).items()))
        env = {**clean_env(), "LIVECODE_REDIS_URL": redis.url, "LIVECODE_LOG_LEVEL": "warning",
               "LIVECODE_REDIS_WAIT_REPLICAS": str(wait_replicas), **extra}
        key = f"livecode-{redis.port}-w{workers}-r{wait_replicas}" + "".join(
            f"-{k}={v}" for k, v in extra.items())
        return self._serve(key, "livecode", livecode_command(port, workers), port, env,
                           "/readyz")

    def ceiling(self) -> Server:
        """bench/ceiling.py under the same uvicorn settings as `livecode serve`."""
        port = free_port()
        return self._serve("ceiling", "ceiling", ceiling_command(port), port, clean_env(), "/")


# interleaved pairs ----------------------------------------------------------------------------


Measure = Callable[[], Sample]


@dataclass
class Case:
    """One figure and its ceiling: two measurements of the same kind."""

    scenario: str
    what: str
    base: Measure
    subject: Measure


@dataclass
class Pair:
    scenario: str
    what: str
    labels: tuple[str, str]  # the ceiling's, the figure's
    base: list[Sample] = field(default_factory=list)
    subject: list[Sample] = field(default_factory=list)

    @property
    def base_rate(self) -> float:
        return median([s.rate for s in self.base])

    @property
    def subject_rate(self) -> float:
        return median([s.rate for s in self.subject])

    @property
    def ratio(self) -> float:
        return self.subject_rate / self.base_rate

    @property
    def base_p99(self) -> float:
        return median([s.p99_ms for s in self.base])

    @property
    def subject_p99(self) -> float:
        return median([s.p99_ms for s in self.subject])

    @property
    def bad(self) -> int:
        return sum(s.bad for s in self.base + self.subject)

    def cpu(self, side: str) -> dict[str, float]:
        """Median CPU microseconds per request by role, for "base" or "subject"."""
        samples = self.base if side == "base" else self.subject
        roles = {role for s in samples for role in s.cpu_us}
        return {role: median([s.cpu_us[role] for s in samples if role in s.cpu_us])
                for role in sorted(roles)}

    def metrics(self) -> dict[str, Any]:
        return {"base": self.labels[0], "subject": self.labels[1],
                "base_cpu_us": self.cpu("base"), "subject_cpu_us": self.cpu("subject"),
                "base_rate": self.base_rate, "subject_rate": self.subject_rate,
                "ratio": self.ratio, "base_p99_ms": self.base_p99,
                "subject_p99_ms": self.subject_p99, "bad": self.bad,
                "base_runs": [s.rate for s in self.base],
                "subject_runs": [s.rate for s in self.subject]}


def interleave(cases: list[Case], rounds: int, labels: tuple[str, str]) -> list[Pair]:
    """Round by round, each case's ceiling and figure back to back, the order alternating
    between rounds, so slow drifts of a shared machine hit both sides alike."""
    pairs = {c.scenario: Pair(c.scenario, c.what, labels) for c in cases}
    for round_no in range(1, rounds + 1):
        for case in cases:
            sides = [(labels[0], case.base, pairs[case.scenario].base),
                     (labels[1], case.subject, pairs[case.scenario].subject)]
            if round_no % 2 == 0:
                sides.reverse()
            for label, measure, into in sides:
                s = measure()
                into.append(s)
                print(f"  round {round_no} {case.scenario:24} {label:16} {s.rate:10.0f}/s "
                      f"p99 {s.p99_ms:7.2f} ms bad {s.bad}", flush=True)
    return list(pairs.values())


# versions -------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import uvicorn

    def out(cmd: list[str]) -> str:
        p = subprocess.run(cmd, capture_output=True, text=True)
        return p.stdout + p.stderr

    redis_v = out([find_redis_server(), "--version"]).split()
    wrk_v = out(["wrk", "-v"]).split()
    return {
        "livecode": __version__,
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "redis-server": redis_v[2].removeprefix("v=") if len(redis_v) > 2 else "?",
        "wrk": wrk_v[1] if len(wrk_v) > 1 else "?",
        "cores": str(os.cpu_count()),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
