"""`python -m bench.headload URL`: a minimal HEAD load generator, for what wrk cannot measure.

wrk's HTTP parser does not know the method of the request a response answers, so on a HEAD
response that carries the Content-Length of the GET (as RFC 9110 allows, and as livecode sends)
it waits for a body that never comes. This generator keeps `-c` keep-alive connections busy,
one request in flight on each like wrk, and treats every response as ending at its blank line
(HEAD responses have no body). It prints wrk's summary lines, so `parse_wrk` reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlsplit

import uvloop


class _Conn(asyncio.Protocol):
    def __init__(self, request: bytes, stats: _Stats) -> None:
        self.request, self.stats = request, stats
        self.buf = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            self.stats.add(time.perf_counter() - self.sent, head[9:12])
            if self.stats.running:
                self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stats.running:
            self.stats.errors += 1


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.bad = self.errors = 0
        self.running = True

    def add(self, seconds: float, status: bytes) -> None:
        if self.running:
            self.latencies.append(seconds)
            if not (b"200" <= status < b"400"):
                self.bad += 1


async def run(url: str, connections: int, duration: float, headers: list[str]) -> str:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    lines = [f"HEAD {u.path or '/'} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    request = "\r\n".join(lines).encode("latin-1")
    stats = _Stats()
    loop = asyncio.get_running_loop()
    conns = [await loop.create_connection(lambda: _Conn(request, stats), host, port)
             for _ in range(connections)]
    started = time.perf_counter()
    await asyncio.sleep(duration)
    stats.running = False
    elapsed = time.perf_counter() - started
    for transport, _ in conns:
        transport.close()
    lat = sorted(stats.latencies)

    def pct(p: float) -> str:
        return f"{lat[min(len(lat) - 1, int(len(lat) * p))] * 1000:.2f}ms" if lat else "0ms"

    out = ["  Latency Distribution", f"     50%  {pct(0.50)}", f"     99%  {pct(0.99)}",
           f"  {len(lat)} requests in {elapsed:.2f}s"]
    if stats.bad:
        out.append(f"  Non-2xx or 3xx responses: {stats.bad}")
    out += [f"  Socket errors: connect 0, read {stats.errors}, write 0, timeout 0",
            f"Requests/sec: {len(lat) / elapsed:.2f}"]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.headload", description=__doc__)
    ap.add_argument("url")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-d", "--duration", type=float, default=8.0)
    ap.add_argument("-H", "--header", action="append", default=[])
    args = ap.parse_args()
    print(uvloop.run(run(args.url, args.connections, args.duration, args.header)))


if __name__ == "__main__":
    main()
