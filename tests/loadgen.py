"""A tiny HTTP/1.1 load client for tests: many keep-alive connections on raw asyncio streams,
no cookie jar (each request says who it is). httpx/httpcore pools add milliseconds per request
when thousands of requests queue on them, which turns a 2,000-scan test into a minute."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> Reply:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Reply(status, headers, body)


async def fire(
    host: str,
    port: int,
    path: str,
    n: int,
    *,
    concurrency: int = 100,
    cookies: list[str | None] | None = None,
    headers: dict[str, str] | None = None,
) -> list[Reply]:
    """n GETs of `path` over `concurrency` connections; cookies[i] is sent with request i."""
    replies: list[Reply | None] = [None] * n
    next_index = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in next_index:
                cookie = cookies[i] if cookies else None
                extra = f"Cookie: {cookie}\r\n" if cookie else ""
                extra += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
                request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
                replies[i] = await _exchange(reader, writer, request)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return [r for r in replies if r is not None]
