"""`python -m bench.inprocess`: the scan path's own Python cost, with no sockets and no server.

The endpoint (a new visitor, the common redirect) and the bare ceiling app are driven by a
loop of tasks, 64 at a time, on uvloop. The scan's Redis client is the real one, but its
transport answers every EVALSHA at once with a canned reply that hiredis still parses (one per
scan of a gathered call). CPU
microseconds per request, rounds interleaved. It isolates what the HTTP figures mix with
uvicorn, the kernel, Redis and wrk (see NOTES.md, "Where the time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import uvloop

from app.allocator.engine import Allocator
from app.routes.scan import ScanEndpoint
from app.settings import Settings
from app.store.fastredis import PipelinedRedis
from bench.ceiling import app as ceiling_app
from bench.scenarios import WECHAT_UA

REPLY = b"*5\r\n$3\r\nnew\r\n$2\r\ng1\r\n$27\r\nhttps://chat.example.com/g1\r\n$8\r\nredirect\r\n$5\r\nbench\r\n"
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class _AnsweringTransport:
    """Stands in for the Redis socket: every EVALSHA written is answered on the next turn, a
    gathered one (scan.lua's batch form) with one reply per scan."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver
        self.reader = hiredis.Reader()

    def write(self, data: bytes) -> None:
        self.reader.feed(data)
        answer = []
        while (command := self.reader.gets()) is not False:
            scans = int(command[2]) - 1  # EVALSHA sha numkeys pool sticky...
            answer.append(REPLY if scans == 1 else b"*%d\r\n" % scans + REPLY * scans)
        asyncio.get_running_loop().call_soon(self.deliver, b"".join(answer))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        pass


def scan_app() -> ScanEndpoint:
    client = PipelinedRedis()
    conn = client._connect()  # a connection whose socket never opens: replaced below
    assert conn.connect_task is not None
    conn.connect_task.cancel()
    conn.transport = _AnsweringTransport(conn.data_received)  # type: ignore[assignment]
    conn.ready = True
    endpoint = ScanEndpoint(Settings(redis_url="redis://127.0.0.1:1"))
    endpoint.allocator = Allocator(client, shebang=True, deadline_s=5)
    return endpoint


async def per_request_us(name: str, requests: int, concurrency: int) -> float:
    app: App = ceiling_app if name == "ceiling" else scan_app()
    scope = {"type": "http", "method": "GET", "path": "/s/bench", "query_string": b"",
             "headers": [(b"host", b"bench"), (b"user-agent", WECHAT_UA.encode())],
             "client": ("127.0.0.1", 1)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        pass

    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()
    started = time.process_time()
    for _ in range(requests):
        task: asyncio.Task[None] = loop.create_task(app(dict(scope), receive, send))  # type: ignore[arg-type]
        running.add(task)
        task.add_done_callback(running.discard)
        if len(running) >= concurrency:
            await asyncio.sleep(0)
    await asyncio.gather(*running)
    return (time.process_time() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    results: dict[str, list[float]] = {"ceiling": [], "scan": []}
    for _ in range(args.rounds):
        for name in results:
            results[name].append(uvloop.run(per_request_us(name, args.requests, 64)))
    for name, runs in results.items():
        print(f"{name:8} {min(runs):6.2f} us per request (best of {args.rounds}: "
              + ", ".join(f"{r:.2f}" for r in runs) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
