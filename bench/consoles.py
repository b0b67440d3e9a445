"""`python -m bench.consoles URL --key KEY --pool ID`: operator consoles left open on a pool's
page, polling its live fragment as a browser does. The `consoles` scenario runs it as a process
of its own, so that its Python does not run inside the bench's.

Each console is a session of its own, made the way a browser makes one: it signs in through the
console's form (`POST /console/signin`, with the Origin header a browser sends; the session
cookie comes back), loads the pool's page, and reads from it the CSRF token
(`<meta name="csrf-token">`) and the live fragment: `#pool-poller`'s `hx-get` URL and the period
of its `hx-trigger="every Ns"`. Then it polls that URL with the headers htmx sends (HX-Request,
HX-Trigger, HX-Target, HX-Current-URL, and X-CSRF-Token, which console.js adds to every htmx
request), the consoles' phases spread over the period like tabs opened at different moments.
When a poll sends the whole section back (the groups changed shape), the console takes the new
poller's URL, as htmx swaps it in.

It prints `ready` once every console shows its page; it polls until its stdin closes (or
--max-seconds pass), then prints one JSON line: polls, bad answers (anything but a 200 that holds
the pool's figures), latency p50 and p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36")
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_POLLER = re.compile(r'<div id="pool-poller"[^>]*?hx-get="([^"]+)" hx-trigger="every '
                     r'([\d.]+)(ms|s)\b')
_FIGURES = 'id="pool-stats"'  # every fragment carries the pool's status figures


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    bad: int = 0
    running: bool = True


class Console:
    """One signed-in browser tab on a pool's page."""

    def __init__(self, base: str, pool: str) -> None:
        self.base = base.rstrip("/")
        self.page_url = f"{self.base}/console/pools/{pool}"
        self.client = httpx.AsyncClient(base_url=self.base, timeout=30, headers={
            "User-Agent": BROWSER_UA, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
        self.csrf = ""
        self.poll_path = ""
        self.period_s = 0.0

    async def open(self, key: str) -> None:
        signin = await self.client.post(
            "/console/signin", data={"key": key, "next": self.page_url[len(self.base):]},
            headers={"Origin": self.base, "Referer": f"{self.base}/console/signin"})
        if signin.status_code != 303 or "lc_console" not in signin.cookies:
            raise SystemExit(f"sign-in answered {signin.status_code}: {signin.text[:300]}")
        page = await self.client.get(signin.headers["location"])
        csrf, poller = _CSRF.search(page.text), _POLLER.search(page.text)
        if page.status_code != 200 or csrf is None or poller is None:
            raise SystemExit(f"the pool page answered {page.status_code} without its poller")
        self.csrf = html.unescape(csrf.group(1))
        self._take_poller(poller)

    def _take_poller(self, m: re.Match[str]) -> None:
        self.poll_path = html.unescape(m.group(1))
        self.period_s = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)

    async def poll(self) -> bool:
        r = await self.client.get(self.poll_path, headers={
            "HX-Request": "true", "HX-Trigger": "pool-poller", "HX-Target": "pool-poller",
            "HX-Current-URL": self.page_url, "X-CSRF-Token": self.csrf, "Accept": "*/*"})
        poller = _POLLER.search(r.text)
        if poller is not None:  # the whole section came back: htmx swaps in the new poller
            self._take_poller(poller)
        return r.status_code == 200 and _FIGURES in r.text

    async def run(self, phase_s: float, tally: Tally) -> None:
        due = time.monotonic() + phase_s
        while tally.running:
            await asyncio.sleep(max(due - time.monotonic(), 0))
            if not tally.running:
                break
            started = time.perf_counter()
            try:
                ok = await self.poll()
            except httpx.HTTPError:
                ok = False
            if tally.running:
                tally.latencies.append(time.perf_counter() - started)
                tally.bad += not ok
            due = max(due + self.period_s, time.monotonic())


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    consoles = [Console(args.url, args.pool) for _ in range(args.sessions)]
    for c in consoles:  # one after the other, as people open their tabs
        await c.open(args.key)
    print("ready", flush=True)
    tally = Tally()
    period = consoles[0].period_s
    tasks = [asyncio.create_task(c.run(i * period / len(consoles), tally))
             for i, c in enumerate(consoles)]
    with suppress(TimeoutError):
        await asyncio.wait_for(_stdin_closed(), args.max_seconds)
    tally.running = False
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in consoles:
        await c.client.aclose()
    lat = sorted(tally.latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else 0.0

    return {"sessions": len(consoles), "period_s": period, "polls": len(lat), "bad": tally.bad,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def command(url: str, key: str, pool: str, sessions: int) -> list[str]:
    return [sys.executable, "-m", "bench.consoles", url, "--key", key, "--pool", pool,
            "--sessions", str(sessions)]


@dataclass
class Running:
    pid: int
    summary: dict[str, Any] = field(default_factory=dict)


@contextmanager
def open_consoles(url: str, key: str, pool: str, sessions: int, log: Path,
                  cwd: Path) -> Iterator[Running]:
    """The consoles, signed in and on their page, for the length of the block; their summary
    (`Running.summary`) once it ends."""
    with log.open("ab") as err:
        proc = subprocess.Popen(command(url, key, pool, sessions), cwd=cwd, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.wait(30)
            raise SystemExit(f"bench.consoles did not start:\n{log.read_text()[-2000:]}")
        running = Running(proc.pid)
        yield running
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(30)
        running.summary = json.loads(out.strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.consoles", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="the livecode server, e.g. http://127.0.0.1:8000")
    ap.add_argument("--key", required=True, help="an API key to sign in with")
    ap.add_argument("--pool", required=True)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
