"""Request heads cannot make the process hold memory: the bot check only ever sees (and caches) a
bounded prefix of the user agent, and `livecode serve` refuses a request head past its limit
with 431 before buffering it whole (app/httplimits.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from app import bots
from app.httplimits import DEFAULT_MAX_HEAD_BYTES
from tests.test_serve import serve

MB = 1024 * 1024


# --- the bot check's cache -----------------------------------------------------------------


def test_bot_cache_holds_a_bounded_prefix_of_each_user_agent() -> None:
    """4,096 distinct 16 KB user agents (under the head limit) would keep 64 MB alive if the
    cache were keyed on the whole value."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(4096):
            ua = b"Mozilla/5.0 " + f"{i:08d}".encode() * 2048  # 16 KB, distinct
            assert bots.is_bot(ua) is False
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 4 * MB, f"the bot cache holds {held / MB:.1f} MB"


@pytest.mark.parametrize("ua", [
    b"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    b"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    b"WhatsApp/2.23.20.0",
    # Googlebot's smartphone agent, and the agent whose token ends furthest from the start
    # (220 bytes) in the crawler-user-agents list (1.60.0)
    b"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
    b"like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    b"+http://www.google.com/bot.html)",
    b"Mozilla/5.0 (Linux; Android 7.0; SM-G930V Build/NRD90M) AppleWebKit/537.36 (KHTML, like "
    b"Gecko) Chrome/59.0.3071.125 Mobile Safari/537.36 (compatible; Google-Read-Aloud; "
    b"+https://developers.google.com/search/docs/crawling-indexing/overview-google-crawlers)",
])
def test_bots_are_still_bots_with_a_huge_tail(ua: bytes) -> None:
    assert bots.is_bot(ua)
    assert bots.is_bot(ua + b" " + b"x" * MB)


def test_a_token_past_the_prefix_is_not_looked_at() -> None:
    padding = b"Mozilla/5.0 " + b"a" * bots.UA_PREFIX_BYTES
    assert bots.is_bot(b"Mozilla/5.0 Slackbot") is True
    assert bots.is_bot(padding + b" Slackbot") is False


# --- the HTTP layer, against a real `livecode serve` ----------------------------------------


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1))


def _server_pid(log: Path) -> int:
    """uvicorn logs `Started server process [PID]`: with one worker that is `serve` itself."""
    deadline = time.monotonic() + 10
    while True:
        match = re.search(r"Started server process \[(\d+)\]", log.read_text())
        if match:
            return int(match.group(1))
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


async def _request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: (status, headers, body), or status 0 when the
    server dropped the connection before answering."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async def send() -> None:
            try:
                writer.write(raw)
                await writer.drain()
            except (ConnectionError, OSError):
                pass  # the server refused the head and closed: the answer is what counts

        sender = asyncio.create_task(send())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, ConnectionError):
            await sender
            return 0, {}, b""
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        try:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError):
            body = b""
        await sender
        return int(lines[0].split(" ", 2)[1]), headers, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def _get(path: str, *headers: bytes) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: lc.test\r\n".encode() + b"".join(
        h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n")


@pytest.mark.slow
async def test_distinct_huge_user_agents_leave_no_memory_behind(
    redis_url: str, tmp_path: Path
) -> None:
    """200 scans with distinct 1 MB user agents, some of them bots: the worker's RSS stays
    within 20 MB of where it was, and every one is refused with 431."""
    with serve(env={"LIVECODE_REDIS_URL": redis_url}, cwd=tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        pid = _server_pid(tmp_path / "serve.log")
        # warm up what every request allocates once (parser, pages, the allocator's client)
        for i in range(50):
            status, _, _ = await _request(port, _get("/s/poster", f"User-Agent: warm {i}".encode()))
            assert status == 404
        before = _rss_kb(pid)
        statuses = []
        for batch in range(50):
            requests = []
            for j in range(4):
                i = batch * 4 + j
                prefix = b"Slackbot-LinkExpanding 1.0 " if i % 4 == 0 else b"Mozilla/5.0 "
                ua = prefix + os.urandom(MB // 2).hex().encode()  # 1 MB, distinct
                requests.append(_request(port, _get("/s/poster", b"User-Agent: " + ua)))
            statuses += [status for status, _, _ in await asyncio.gather(*requests)]
        grown_mb = (_rss_kb(pid) - before) / 1024
    assert grown_mb < 20, f"RSS grew by {grown_mb:.0f} MB"
    assert statuses == [431] * 200


@pytest.mark.slow
async def test_head_limit_in_the_http_layer(redis_url: str, tmp_path: Path) -> None:
    limit = DEFAULT_MAX_HEAD_BYTES
    with serve(env={"LIVECODE_REDIS_URL": redis_url}, cwd=tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        # just under the limit: served (a scan of an unknown pool: its 404 page)
        fits = b"X-Pad: " + b"a" * (limit - 200)
        status, _, _ = await _request(port, _get("/s/poster", fits))
        assert status == 404

        # past it: 431 in the one error shape, and the connection is closed
        status, headers, body = await _request(port, _get("/s/poster", b"X-Pad: " + b"a" * limit))
        assert status == 431
        assert headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert error["code"] == "request_header_fields_too_large"
        assert error["details"] == {"max_bytes": limit}

        # many headers, each small: the total counts
        many = [f"X-H{i}: {'b' * 1000}".encode() for i in range(limit // 1000 + 2)]
        status, _, _ = await _request(port, _get("/s/poster", *many))
        assert status == 431

        # a head sent a few bytes at a time is refused once its total passes the limit, and
        # the server has not waited for the rest of it (it never comes)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /s/poster HTTP/1.1\r\nHost: lc.test\r\nX-Slow: ")
        refused = False
        for _ in range(limit // 1024 + 64):
            try:
                writer.write(b"c" * 1024)
                await writer.drain()
            except (ConnectionError, OSError):
                break
            try:
                got = await asyncio.wait_for(reader.read(65536), 0.01)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            refused = got.startswith(b"HTTP/1.1 431 ")
            break
        writer.close()
        assert refused, "no 431 for a head that kept growing"

        # a large body after a small head is no head: a 1 MB JSON body in the same write as
        # its head reaches the app (401: no key), it is not taken for a long head
        body_bytes = json.dumps({"id": "p", "name": "x" * MB}).encode()
        raw = (b"POST /api/v1/pools HTTP/1.1\r\nHost: lc.test\r\nContent-Type: application/json\r\n"
               + f"Content-Length: {len(body_bytes)}\r\nConnection: close\r\n\r\n".encode()
               + body_bytes)
        status, _, _ = await _request(port, raw)
        assert status == 401

        # keep-alive: several requests on one connection, each under the limit, all served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        half = b"X-Pad: " + b"d" * (limit // 2)
        for _ in range(5):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: lc.test\r\n" + half + b"\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
        writer.close()
